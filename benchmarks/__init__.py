"""This project's experiments: benchmark scripts, evidence grids and their reports (a package of the repository, not
installed with ``ppl_torchrl``).

The scripts run from the repository root as ``python benchmarks/<script>.py`` (a script that imports a neighbour
puts the repository root on the path in place of its own folder, and imports it as ``benchmarks.<module>``) or as
``python -m benchmarks.<script>``:

* grid drivers: ``evidence.py``, ``long_evidence.py``, ``ogbench_evidence.py``, ``compose_evidence.py``,
  ``potential_evidence.py``, ``finetune.py``; their grid, run and resume logic is :mod:`benchmarks.grid` (one for
  all); ``--report-only`` rewrites a driver's generated sections from its runs, and leaves them as they are where
  ``--runs-dir`` holds none of them (runs made on another machine);
* their reports: ``evidence_report.py``, ``long_evidence_report.py``, and the shared pieces ``verdict.py`` (beat /
  matched / lost at 2 standard errors: the one rule), ``markdown.py`` (generated sections of a docs file),
  ``potential_units.py`` (dead units of a run's potential), ``toy_report.py`` (the toy's figure and metrics file,
  also written by ``recipes/ppl_toy.py``);
* measurements: ``speed.py`` (steps/s against the plain loop, JAX and the GEMM limit), ``profile_update.py`` (where
  the compiled update's time goes), ``env_speed.py``, ``data_memory.py``, ``ogbench_data.py``.

Scripts never import each other as top-level modules (``tests/test_layout.py`` checks it).
"""
