"""PPL^R (or any loss of the `loss` group) on OGBench single-task datasets: published files or regenerated here.

    python recipes/ppl_ogbench.py                                          # regenerated cube-single, default task
    python recipes/ppl_ogbench.py dataset=cube-double-play-singletask-task3-v0 loss=rebrac seed=2
    python recipes/ppl_ogbench.py dataset=scene-play-singletask-v0 dataset.path=/data/scene-play-v0.npz
    python recipes/ppl_ogbench.py dataset=puzzle-3x3-play-singletask-v0 dataset.success_timing=post  # as ogbench 1.1.0

Config: recipes/config/ppl_ogbench.yaml (+ base.yaml, dataset/<id>.yaml with its dataset_suite/ogbench_*.yaml,
loss/<name>.yaml). Data semantics: ppl_torchrl/data/ogbench.py and docs/ogbench.md; the score is the success
rate x 100 on the id's own task (FQL's protocol: deterministic actor, 50 episodes). The pipeline is
ppl_torchrl.training.build.build_trainer; this script only picks the config.
"""

from ppl_torchrl.training.recipe import hydra_recipe, train


@hydra_recipe("ppl_ogbench")
def main(cfg):
    return train(cfg)


if __name__ == "__main__":
    main()
