"""Results tables and figures from finished runs.

* :mod:`~ppl_torchrl.reporting.tables`: the one ``mean ± std`` formatter, and the table of runs' final evaluations;
* :mod:`~ppl_torchrl.reporting.figures`: the one figure saver, matplotlib without a display, the curve style;
* :mod:`~ppl_torchrl.reporting.metrics`: a run's ``metrics.jsonl``, its name and its one reader;
* :mod:`~ppl_torchrl.reporting.aggregate`: a sweep's runs -> the paper's tables (beside the published
  numbers), CSV and plots (``recipes/aggregate.py``);
* :mod:`~ppl_torchrl.reporting.verdict`: beat / matched / lost of one group of seeds against another (2 standard errors);
* :mod:`~ppl_torchrl.reporting.markdown`: generated sections of a hand-written Markdown file, replaced in place.

This project's own experiment reports (the evidence grids) live beside their scripts in ``benchmarks/``.
"""
