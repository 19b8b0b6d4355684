"""Runs many recipe commands on one machine, a few at a time, each on one CPU thread (the benchmark grids).

Each command is a recipe invocation with ``resume=auto``, so a relaunch of the whole list skips finished runs and
continues interrupted ones; a failing run is reported and the others go on. For a cluster, use the recipes'
hydra multirun with the submitit launcher instead (README, "Scaling out").
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Job:
    name: str             # for messages
    argv: tuple[str, ...]  # the command, e.g. (python, recipes/ppl_antmaze.py, overrides...)
    key: str = ""          # jobs with the same key (segments of one run) never run at the same time; the log file


def run_jobs(jobs: list[Job], parallel: int, log_dir: Path, cwd: Path, nice: int = 10, poll_s: float = 5.0) -> list[str]:
    """Runs ``jobs`` in order, ``parallel`` at a time (``nice``: interactive work keeps the CPU); returns failures.

    A job waits while another job of its ``key`` runs (the next segment of a run waits for the previous one).
    """
    pending, active, failures = list(jobs), [], []
    log_dir.mkdir(parents=True, exist_ok=True)
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
