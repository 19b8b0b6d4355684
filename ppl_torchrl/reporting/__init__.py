"""Results tables and figures from finished runs.

* :mod:`~ppl_torchrl.reporting.tables`: the one ``mean ± std`` formatter, and the table of runs' final evaluations;
* :mod:`~ppl_torchrl.reporting.figures`: the one figure saver, matplotlib without a display, the curve style;
* :mod:`~ppl_torchrl.reporting.metrics`: a run's ``metrics.jsonl``: its name, its one reader, learning curves;
* :mod:`~ppl_torchrl.reporting.aggregate`: a sweep's runs -> the paper's tables (beside the published
  numbers), CSV and plots (``recipes/aggregate.py``).

This project's own experiments (the evidence grids, their reports and verdict rule) live in ``benchmarks/``.
"""
