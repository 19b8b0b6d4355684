"""Offline-to-online fine-tuning of PPL^R (or ReBRAC): an offline checkpoint keeps learning online.

    python recipes/ppl_finetune.py                                  # offline phase first, then online
    python recipes/ppl_finetune.py loss=rebrac seed=1
    python recipes/ppl_finetune.py finetune.offline_checkpoint=runs/ppl/pointmaze-medium-mixed-gen-v0/seed0
    python recipes/ppl_finetune.py finetune.train_potential=false loss.w=4

Config: recipes/config/ppl_finetune.yaml (+ base.yaml, dataset/<id>.yaml, loss/<name>.yaml). The online loop (a
TorchRL collector on the current actor with exploration noise, an online replay buffer, 50/50 batches with the
offline data, the same update as offline, evaluation, logs, checkpoints at episode ends, exact resume) is
ppl_torchrl.training.finetune; this script only picks the config.
"""

from ppl_torchrl.training.recipe import hydra_recipe, train_finetune


@hydra_recipe("ppl_finetune")
def main(cfg):
    return train_finetune(cfg)


if __name__ == "__main__":
    main()
