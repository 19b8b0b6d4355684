"""Quickstart: PPL^R vs ReBRAC on the project's own PointMaze data, offline, in minutes on a CPU, then the paper's
toy experiment, where the potential's effect is visible.

    python recipes/quickstart.py                      # generate/reuse data, train both, print scores, run the toy
    python recipes/quickstart.py optim.steps=20000 seed=1 quickstart.toy=false

Config: recipes/config/quickstart.yaml. Each loss of `quickstart.losses` is trained by the same
pipeline as the other recipes (ppl_torchrl.training.build.build_trainer), then the final scores are tabled. The
toy runs at recipes/config/toy.yaml's settings (ppl_torchrl.toy, as recipes/ppl_toy.py; its figure:
benchmarks/toy_report.py).
"""
import sys
from pathlib import Path

from omegaconf import OmegaConf

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks/ is not installed

from ppl_torchrl.reporting.tables import format_scores
from ppl_torchrl.training.recipe import compose_variant, hydra_recipe, train

TOY_CONFIG = Path(__file__).resolve().parent / "config" / "toy.yaml"


def run_toy_demo(cfg) -> None:
    """The toy of the paper's Fig. 1: PPL (w = 8) follows the best stitched behaviour, the BC-regularised baseline
    averages three crossing experts. Prints the distance of each policy to that behaviour and saves the figure."""
    import torch

    from benchmarks.toy_report import plot_toy
    from ppl_torchrl.toy import ToyConfig, run_toy, toy_metrics

    toy = OmegaConf.to_container(OmegaConf.load(TOY_CONFIG).toy, resolve=True)
    if cfg.quickstart.toy_steps:
        toy.update(critic_steps=int(cfg.quickstart.toy_steps), policy_steps=int(cfg.quickstart.toy_steps))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: fastest, and reproducible, on one thread
    try:
        result = run_toy(ToyConfig.from_mapping(toy), progress=cfg.logger.progress)
    finally:
        torch.set_num_threads(threads)
    rows = {r["key"]: r for r in toy_metrics(result)}
    figure = plot_toy(result, Path(str(cfg.quickstart.toy_dir)) / "toy.png")
    ppl, base = rows["ppl"]["gap_stitched"], rows["baseline"]["gap_stitched"]
    print("\nWhat the potential does (the paper's toy, Fig. 1; three crossing sub-optimal experts):")
    print(f"  mean |y - y_beta*| to the best stitched behaviour beta*: PPL (w = {result.config.w:g}) {ppl:.3f}, "
          f"TD3+BC-like baseline {base:.3f}" + (" -> PPL follows beta*, the baseline averages the experts"
                                                  if ppl < base else ""))
    print(f"  figure: {figure}")


@hydra_recipe("quickstart")
def main(cfg):
    results = [train(compose_variant(f"loss={name}")) for name in cfg.quickstart.losses]
    print("\nFinal evaluation (deterministic actor):")
    print(format_scores(results))
    print("At this budget PPL^R and ReBRAC coincide on this clean data (README, Results).")
    if cfg.quickstart.toy:
        run_toy_demo(cfg)
    return results


if __name__ == "__main__":
    main()
