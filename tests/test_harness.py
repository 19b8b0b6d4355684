"""The training harness around every recipe: progress that fits where it is shown (a live bar on a terminal, a line
every few percent or minutes in a log), and the one set-up chain (build_run) that every recipe's runs go through."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from ppl_torchrl.progress import LogProgress, progress_bar

ROOT = Path(__file__).resolve().parents[1]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_a_line_every_five_percent_and_no_carriage_returns():
    out = io.StringIO()
    bar = progress_bar(total=2000, desc="train", unit="it", file=out)
    assert isinstance(bar, LogProgress)
    for i in range(2000):
        bar.update(1)
        if i % 50 == 0:
            bar.set_postfix({"loss": i})  # the trainer sets a postfix at each log step: no extra line
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # the first line, one per 5 %, nothing else (the last is the 100 % line)
    assert [line.split("|")[-1].split()[0] for line in lines] == [f"{n}/2000" for n in range(0, 2001, 100)]
    assert all(line.startswith("train:") for line in lines)


def test_a_log_also_gets_a_line_after_every_few_minutes():
    out = io.StringIO()
    with LogProgress(total=10**6, file=out, minutes=1e-9) as bar:  # every update is "minutes" later
        for _ in range(7):
            bar.update(1)
    assert len(out.getvalue().splitlines()) == 8  # the first line and one per update
    out = io.StringIO()
    with LogProgress(total=None, file=out, minutes=60) as bar:  # no total: by time only, and at the end
        bar.update(5)
        bar.update(5)
    assert [line.split()[0] for line in out.getvalue().splitlines()] == ["0it", "10it"]


def test_a_terminal_gets_the_live_bar(monkeypatch):
    out = _Terminal()
    bar = progress_bar(total=100, file=out, mininterval=0)
    assert not isinstance(bar, LogProgress)
    for _ in range(100):
        bar.update(1)
    bar.close()
    assert "\r" in out.getvalue()
    monkeypatch.setenv("PPL_TORCHRL_PROGRESS", "lines")  # forced either way
    assert isinstance(progress_bar(total=1, file=_Terminal()), LogProgress)


@pytest.mark.slow  # ~20 s on 2 cores, most of it the recipe's start-up
def test_a_recipe_logged_to_a_file_writes_a_few_progress_lines(tmp_path):
    """A training run with its stderr in a file (a cluster job): the bar writes ~20 lines, not hundreds of
    carriage-return updates."""
    steps = 600
    args = {"dataset": "pointmaze-umaze-gen-v0", "loss": "bc", "optim.steps": steps, "optim.batch_size": 8,
            "model.hidden_dim": 8, "model.num_hidden": 1, "eval.episodes": 0, "eval.every": steps,
            "logger.backend": "", "logger.progress": "true", "logger.log_every": 100, "checkpoint.every": steps,
            "threads": 1, "probe.size": 0, "run_dir": str(tmp_path / "run")}
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        subprocess.run([sys.executable, str(ROOT / "recipes" / "ppl_antmaze.py"), *(f"{k}={v}" for k, v in
                                                                                  args.items())],
                       check=True, stdout=subprocess.DEVNULL, stderr=stderr, timeout=600)
    text = log.read_text()
    assert "\r" not in text
    bar_lines = [line for line in text.splitlines() if line.startswith("bc:")]
    assert 21 <= len(bar_lines) <= 30, bar_lines  # every 5 % (and a few by time on a slow machine)
    assert bar_lines[-1].startswith("bc: 100%")
