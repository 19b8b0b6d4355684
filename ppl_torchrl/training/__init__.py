"""The training harness every recipe shares: config -> data -> algorithm -> loop -> evaluation, logs, checkpoints.

* :mod:`~ppl_torchrl.training.config`: checks of the recipe config and its typed settings (loss, networks,
  optimizers, compile);
* :mod:`~ppl_torchrl.training.algorithms`: networks, loss, optimizers and update step of every ``loss=<name>``;
* :mod:`~ppl_torchrl.training.build`: the one set-up chain of every run, which uses
  :mod:`~ppl_torchrl.training.process` (device, threads, seeds), :mod:`~ppl_torchrl.training.resume` (start,
  continue or refuse), :mod:`~ppl_torchrl.training.data_source` (the ``dataset`` section's data) and
  :mod:`~ppl_torchrl.training.evaluator` (the policy's evaluation);
* :mod:`~ppl_torchrl.training.trainer`: the loop, its checkpoints (with :mod:`~ppl_torchrl.training.rng`'s random
  state) and exact resume;
* :mod:`~ppl_torchrl.training.run_logger`: ``metrics.jsonl`` / ``metrics.csv`` / wandb;
* :mod:`~ppl_torchrl.training.onestep`: the paper's one-step setting (BC -> Q^beta -> PPL policy);
* :mod:`~ppl_torchrl.training.recipe`: the body of the training recipes and their one-line user errors.

The update of PPL^R / ReBRAC itself is :class:`ppl_torchrl.update.ReBRACUpdate`.
"""
