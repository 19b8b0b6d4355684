"""PPL^R (or any loss of the `loss` group) on AntMaze: D4RL antmaze-v2 ids, local HDF5 files, Minari ids.

    python recipes/ppl_antmaze.py dataset=antmaze-large-diverse-v2 loss.w=12 seed=3
    python recipes/ppl_antmaze.py dataset=antmaze-umaze-v2 dataset.path=~/.d4rl/datasets/antmaze_umaze_v2.hdf5
    python recipes/ppl_antmaze.py loss=rebrac            # the base algorithm, same harness

Config: recipes/config/ppl_antmaze.yaml (+ base.yaml, dataset/<id>.yaml, loss/<name>.yaml).
The pipeline (data -> networks/loss/optimizers -> loop -> eval/log/checkpoints) is
ppl_torchrl.training.build.build_trainer; this script only picks the config.
"""

from ppl_torchrl.training.recipe import hydra_recipe, train


@hydra_recipe("ppl_antmaze")
def main(cfg):
    return train(cfg)


if __name__ == "__main__":
    main()
