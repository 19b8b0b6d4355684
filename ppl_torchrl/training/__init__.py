"""The training harness every recipe shares: config -> data -> algorithm -> loop -> evaluation, logs, checkpoints.

* :mod:`~ppl_torchrl.training.config`: checks of the recipe config and typed views of its sections;
* :mod:`~ppl_torchrl.training.data_source`: what a config's ``dataset`` section points at (file, eval id);
* :mod:`~ppl_torchrl.training.algorithms`: networks, loss, optimizers and update step of every ``loss=<name>``;
* :mod:`~ppl_torchrl.training.trainer`: the loop, evaluation, checkpoints and exact resume;
* :mod:`~ppl_torchrl.training.run_logger`: ``metrics.jsonl`` / ``metrics.csv`` / wandb;
* :mod:`~ppl_torchrl.training.onestep`: the paper's one-step setting (BC -> Q^beta -> PPL policy);
* :mod:`~ppl_torchrl.training.recipe`: the body of the training recipes and their one-line user errors.

The update of PPL^R / ReBRAC itself is :class:`ppl_torchrl.update.ReBRACUpdate`.
"""
