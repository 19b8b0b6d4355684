"""PPL in the one-step setting (paper Table 4): BC of beta -> SARSA Q^beta -> PPL policy on that Q^beta.

    python recipes/ppl_onestep.py dataset=hopper-medium-v2 seed=2
    python recipes/ppl_onestep.py dataset=hopper-medium-v2 resume=auto   # continues an interrupted phase
    python recipes/ppl_onestep.py dataset=hopper-medium-v2 optim.policy_steps=200000 \
        run_dir=runs/onestep/hopper-long phases_dir=runs/onestep/hopper-medium-v2/seed0   # reuses BC and Q^beta

Each phase is a run of the same trainer as every recipe (logs, checkpoints, exact resume, progress) on the same data
(every ``dataset`` setting applies): BC in ``phases_dir/bc``, Q^beta in ``phases_dir/qbeta`` (``phases_dir``
defaults to ``run_dir``), the policy in ``run_dir``. Budgets are in recipes/config/onestep.yaml.
"""

from ppl_torchrl.training.recipe import hydra_recipe, train_onestep


@hydra_recipe("onestep")
def main(cfg):
    return train_onestep(cfg)


if __name__ == "__main__":
    main()
