"""The one grid driver of the benchmark scripts: a grid's runs, launched, resumed where they stopped, and timed.

A run of a grid (:class:`GridRun`) is a recipe command with ``resume=auto`` in its own folder, so launching the
grid again skips finished runs and continues interrupted ones from their last checkpoint (exactly, on the same
CPU). A run may advance in segments (``checkpoint.stop_after``, :func:`segment_jobs`), so that an unfinished grid
still compares every seed at one step. How the runs are executed:

* :func:`run_jobs`: as subprocesses, a few at a time, each on one CPU thread under ``nice`` (the long grids);
* :func:`train_in_process`: one after another in this process (the small evidence grid, with a progress bar).

Every invocation's wall time goes to ``<runs-dir>/timing.json`` (:func:`record_invocation`). For a cluster, use
the recipes' hydra multirun with the submitit launcher instead (docs/usage.md, "Scaling out").
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
CONFIG_DIR = RECIPES / "config"
TIMING = "timing.json"


def measured_nowhere(run_dirs: Iterable[Path], root: Path) -> bool:
    """Whether none of ``run_dirs`` holds a logged step or results (printing what to do): the grid's runs were made
    on another machine, or under another ``--runs-dir``, and a report written from here would replace the sections
    they produced with empty ones, so the drivers leave the docs as they are."""
    from ppl_torchrl.reporting.metrics import read_metrics

    if any((d / "results.json").exists() or read_metrics(d) for d in run_dirs):
        return False
    print(f"no run of this grid has logged anything under {root}; the docs are left as they are "
          "(give --runs-dir the folder that holds the runs)")
    return True


def machine() -> str:
    """The CPU and torch of this environment, which trains a grid's runs: ``"2-core AMD EPYC, torch 2.13.0+cpu"``."""
    import torch

    from ppl_torchrl.machine import cpu_model

    return f"{os.cpu_count()}-core {cpu_model()}, torch {torch.__version__}"


@dataclass(frozen=True)
class Job:
    name: str             # for messages
    argv: tuple[str, ...]  # the command, e.g. (python, recipes/ppl_antmaze.py, overrides...)
    key: str = ""          # jobs with the same key (segments of one run) never run at the same time; the log file


@dataclass(frozen=True)
class GridRun:
    """One run of a grid: ``recipe`` with ``overrides`` (which hold ``run_dir`` and ``resume=auto``)."""

    name: str                   # "ppl-seed0": messages, the log file, the key that keeps its segments in order
    recipe: Path
    run_dir: Path
    overrides: tuple[str, ...]
    steps: int                  # the step at which the run is finished

    def argv(self, stop_after: int | None = None) -> tuple[str, ...]:
        """The command that advances the run to ``stop_after`` (to its end when ``None`` or past it)."""
        extra = () if stop_after is None or stop_after >= self.steps else (f"checkpoint.stop_after={stop_after}",)
        return (sys.executable, str(self.recipe), *self.overrides, *extra)

    def reached(self) -> int:
        """The last step the run logged (0 before its first row)."""
        from ppl_torchrl.reporting.metrics import read_metrics

        return max((row["step"] for row in read_metrics(self.run_dir)), default=0)

    def finished(self) -> bool:
        """Whether the run wrote its results or logged its last step."""
        return (self.run_dir / "results.json").exists() or self.reached() >= self.steps


def segment_jobs(order: Iterable[tuple[GridRun, int]]) -> list[Job]:
    """A job for each ``(run, stop)`` the run has not reached, in ``order`` (a run's segments share its key, so each
    waits for the one before); the last segment of a run runs to its end."""
    jobs = []
    for run, stop in order:
        if run.finished() or run.reached() >= stop:
            continue
        jobs.append(Job(f"{run.name} to {_steps(stop)}", run.argv(stop), key=run.name))
    return jobs


def _steps(step: int) -> str:
    return f"{step // 1000}k" if step >= 1000 and step % 1000 == 0 else str(step)


def in_segments(runs: Sequence, segment: int, start: int = 0, end: int | None = None) -> list:
    """``(run, stop)`` for every run to each ``segment``'s end in ``(start, end]`` before any run goes further (each
    run's stops capped at its own ``steps``), the order :func:`segment_jobs` takes. ``runs``: anything with
    ``steps`` (a :class:`GridRun`, or a grid's own description of its runs)."""
    end = max(r.steps for r in runs) if end is None else end
    order = [(r, b) for b in range(start + segment, end + 1, segment) for r in runs]
    return [(r, min(b, r.steps)) for r, b in order if b - segment < r.steps]


def run_jobs(jobs: list[Job], parallel: int, log_dir: Path, cwd: Path = REPO, nice: int = 10,
             poll_s: float = 5.0) -> list[str]:
    """Runs ``jobs`` in order, ``parallel`` at a time (``nice``: interactive work keeps the CPU); returns failures.

    A job waits while another job of its ``key`` runs (the next segment of a run waits for the previous one). A
    failing job is reported and the others go on. One driver at a time per ``log_dir``: a second one exits at once
    (status 2, one line) instead of starting every job a second time.
    """
    from ppl_torchrl.atomic import exclusive
    from ppl_torchrl.errors import BusyError

    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive(log_dir, wait=False, busy=" (another driver is running this grid's jobs): watch it with "
                       "--plan, or stop it and relaunch; its runs continue from their checkpoints."):
            return _run_jobs(jobs, parallel, log_dir, cwd, nice, poll_s)
    except BusyError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _run_jobs(jobs: list[Job], parallel: int, log_dir: Path, cwd: Path, nice: int, poll_s: float) -> list[str]:
    pending, active, failures = list(jobs), [], []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    while pending or active:
        while pending and len(active) < max(1, parallel):
            busy = {a[0].key or a[0].name for a in active}
            ready = [j for j in pending if (j.key or j.name) not in busy]
            if not ready:
                break
            job = ready[0]
            pending.remove(job)
            cmd = (["nice", "-n", str(nice)] if nice else []) + list(job.argv)
            log = open(log_dir / f"{job.key or job.name}.log", "a")
            log.write(f"\n$ {shlex.join(cmd)}\n")
            log.flush()
            active.append((job, subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT), log,
                           time.time()))
            print(f"started {job.name}", flush=True)
        time.sleep(poll_s)
        for item in list(active):
            job, proc, log, started = item
            if proc.poll() is None:
                continue
            active.remove(item)
            log.close()
            if proc.returncode != 0:
                failures.append(f"{job.name}: exit {proc.returncode} (log: {log_dir / ((job.key or job.name) + '.log')})")
                print("FAILED " + failures[-1], file=sys.stderr, flush=True)
            else:
                print(f"finished {job.name} in {(time.time() - started) / 60:.1f} min", flush=True)
    return failures


def compose_config(config_name: str, overrides: Sequence[str]):
    """A recipe's config (``recipes/config/<config_name>.yaml``) with ``overrides``, as the recipe would compose it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def train_in_process(runs: Sequence[GridRun], config_name: str, *, extra: Sequence[str] = (),
                     check_finished: Callable[[dict, GridRun], None] | None = None, progress: bool = True,
                     desc: str = "grid") -> tuple[int, list[str]]:
    """Trains every unfinished run one after another in this process (``extra``: overrides appended to every run);
    returns (trained, failures).

    ``check_finished(results, run)`` sees each finished run's ``results.json`` before it is reused (and may refuse
    it). A failing run is reported and skipped so that the rest of the grid still runs; rerunning the command
    retries it (finished runs are not retrained).
    """
    from tqdm import tqdm

    from ppl_torchrl.training.recipe import train
    from ppl_torchrl.training.resume import finished_results

    trained, failures = 0, []
    bar = tqdm(runs, desc=desc, disable=not progress)
    for run in bar:
        bar.set_postfix_str(run.name)
        done = finished_results(run.run_dir)
        if done is not None:
            if check_finished is not None:
                check_finished(done, run)
            continue
        try:
            train(compose_config(config_name, [*run.overrides, *extra]))
            trained += 1
        except Exception:  # keep going: one broken run must not lose the hours spent on the others
            failures.append(f"{run.run_dir}: {traceback.format_exc(limit=3)}")
            print(f"FAILED {run.run_dir}\n{failures[-1]}", file=sys.stderr)
    return trained, failures


def read_invocations(root: Path) -> list[dict]:
    """The invocations recorded in ``root/timing.json`` (also read in the formats of earlier versions: a list, or
    ``{"wall_s": total}``); ``[]`` without the file."""
    path = Path(root) / TIMING
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        print(f"warning: {path} is unreadable; starting a new timing history.", file=sys.stderr)
        return []
    if isinstance(data, dict) and isinstance(data.get("invocations"), list):
        return data["invocations"]
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and "wall_s" in data:
        return [{"wall_s": data["wall_s"]}]
    print(f"warning: {path} is not a timing history; starting a new one.", file=sys.stderr)
    return []


def record_invocation(root: Path, entry: dict) -> list[dict]:
    """Appends this invocation (its ``wall_s`` and whatever else the report states) to ``root/timing.json``,
    atomically; returns every invocation."""
    from ppl_torchrl.atomic import atomic_write

    history = [*read_invocations(root), entry]
    atomic_write(Path(root) / TIMING, json.dumps({"invocations": history}, indent=2))
    return history


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces a report: ``python benchmarks/<script>`` with the arguments, less
    ``--report-only``."""
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--report-only"]
    return " ".join(["python", f"benchmarks/{script}", *(shlex.quote(a) for a in args)])


def plan(runs: Sequence[GridRun]) -> list[str]:
    """One line per run: how far it got (``--plan``)."""
    return [f"  {r.name:24s} {r.reached():>7d}/{r.steps}" + ("  finished" if r.finished() else "") for r in runs]


def add_grid_arguments(parser, *, runs_dir: Path, jobs: int | None = 2, plan: bool = True) -> None:
    """The options every grid shares: ``--runs-dir``, ``--report-only`` and (where given) ``--jobs``, ``--plan``."""
    parser.add_argument("--runs-dir", type=Path, default=runs_dir, help="the grid's run folders")
    parser.add_argument("--report-only", action="store_true", help="no training: report the runs as they are")
    if jobs is not None:
        parser.add_argument("--jobs", type=int, default=jobs, help="runs at a time (each uses one CPU core)")
    if plan:
        parser.add_argument("--plan", action="store_true", help="print the grid and its progress; train nothing")
