"""Print (and save) the paper-style table of a sweep's finished runs.

    python recipes/aggregate.py runs/antmaze_table1                       # print the Markdown table
    python recipes/aggregate.py runs/antmaze_table1 --out results/table1  # + table.md/csv, bar charts, curves
    python recipes/aggregate.py --wandb-project ppl-torchrl --wandb-sweep antmaze_table1 --out results/t1

Local folders are searched recursively for results.json; wandb runs (online only) are read through
the wandb API. Mean ± std over seeds per dataset, totals per suite, beside the paper's numbers
(ppl_torchrl/evaluation/published.py). See docs/sweeps.md.
"""
from __future__ import annotations

import argparse
import sys

from ppl_torchrl.reporting.aggregate import (
    DEFAULT_METRIC, collect_local, collect_wandb, markdown_tables, summarize, write_outputs,
)
from ppl_torchrl.errors import user_errors
from ppl_torchrl.training.recipe import recipe_main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("roots", nargs="*", help="run folders or sweep roots (searched for results.json)")
    p.add_argument("--out", default=None, help="folder for table.md, table.csv and the plots")
    p.add_argument("--metric", default=DEFAULT_METRIC,
                   help="final_eval key to tabulate (normalized_score_mean, return_mean, success_rate, ...)")
    p.add_argument("--no-plots", action="store_true", help="write only table.md/table.csv")
    p.add_argument("--wandb-project", default=None, help="also read finished runs of this wandb project (online)")
    p.add_argument("--wandb-entity", default=None)
    p.add_argument("--wandb-sweep", default=None, help="only wandb runs whose config.sweep_name is this")
    args = p.parse_args(argv)
    if not args.roots and not args.wandb_project:
        p.error("give at least one run folder or --wandb-project")
    return args


@recipe_main
def main(argv=None) -> int:
    args = parse_args(argv)
    # missing folders, damaged results.json / metrics.jsonl, no wandb access: one line, exit status 2
    with user_errors(FileNotFoundError, KeyError, ValueError, RuntimeError):
        runs = collect_local(args.roots, progress=True) if args.roots else []
        if args.wandb_project:
            runs += collect_wandb(args.wandb_project, entity=args.wandb_entity, sweep=args.wandb_sweep, progress=True)
    cells = summarize(runs, metric=args.metric)
    print(markdown_tables(cells, metric=args.metric))
    if args.out:
        written = write_outputs(cells, args.out, metric=args.metric, plots=not args.no_plots)
        for kind, paths in written.items():
            for path in paths:
                print(f"wrote {path}")
    return 0 if cells else 1


if __name__ == "__main__":
    sys.exit(main())
