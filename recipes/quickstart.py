"""Quickstart: PPL^R vs ReBRAC on the project's own PointMaze data, offline, in minutes on a CPU.

    python recipes/quickstart.py                      # generate/reuse data, train both, print scores
    python recipes/quickstart.py optim.steps=20000 seed=1

Config: recipes/config/quickstart.yaml. Each loss of `quickstart.losses` is trained by the same
pipeline as the other recipes (ppl_torchrl.training.trainer.build_trainer), then the final scores are tabled.
"""
import hydra

from ppl_torchrl.reporting.tables import format_scores
from ppl_torchrl.training.recipe import compose_variant, recipe_main, train


@hydra.main(config_path="config", config_name="quickstart", version_base="1.3")
@recipe_main
def main(cfg):
    results = [train(compose_variant(f"loss={name}")) for name in cfg.quickstart.losses]
    print("\nFinal evaluation (deterministic actor):")
    print(format_scores(results))
    return results


if __name__ == "__main__":
    main()
