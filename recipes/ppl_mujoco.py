"""PPL^R (or any loss of the `loss` group) on Gym-MuJoCo-v2 and Adroit-v1: D4RL ids, local HDF5 files, Minari ids.

    python recipes/ppl_mujoco.py dataset=hopper-medium-replay-v2 seed=3
    python recipes/ppl_mujoco.py dataset=pen-human-v1 dataset.path=~/.d4rl/datasets/pen-human-v1.hdf5
    python recipes/ppl_mujoco.py loss=td3_bc            # a TorchRL baseline, same harness

Config: recipes/config/ppl_mujoco.yaml (+ base.yaml, dataset/<id>.yaml, loss/<name>.yaml).
The pipeline (data -> networks/loss/optimizers -> loop -> eval/log/checkpoints) is
ppl_torchrl.training.build.build_trainer; this script only picks the config.
"""

from ppl_torchrl.training.recipe import hydra_recipe, train


@hydra_recipe("ppl_mujoco")
def main(cfg):
    return train(cfg)


if __name__ == "__main__":
    main()
