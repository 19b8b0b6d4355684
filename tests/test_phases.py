"""Runs of several phases (ppl_torchrl/training/phases.py): every phase's config is checked before any phase trains,
each phase starts from the checkpoint of the one before, a finished phase is reused, and the last phase's trainer is
handed back unrun. The phases here are stand-ins that record what they were asked; the real sequences (fine-tuning,
one-step) are trained end to end in tests/test_finetune.py and tests/test_onestep.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ppl_torchrl.errors import ConfigError
from ppl_torchrl.training.phases import Phase, run_phases


class _StandIn:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def run(self):
        self.log.append(("run", self.name))


def _phases(make_cfg, root: Path, log: list, last_overrides=()):
    def build(name):
        def make(cfg, start_from=None):
            log.append(("build", name, None if start_from is None else Path(start_from).relative_to(root).as_posix()))
            return _StandIn(name, log)
        return make

    cfg = {name: make_cfg([f"run_dir={root / name}", "resume=auto"]) for name in ("a", "b")}
    cfg["c"] = make_cfg([f"run_dir={root / 'c'}", *last_overrides])
    return [Phase(name, cfg[name], build(name)) for name in ("a", "b", "c")]


def test_each_phase_trains_from_the_one_before_and_the_last_is_returned_unrun(tmp_path, make_cfg):
    log = []
    last = run_phases(_phases(make_cfg, tmp_path, log), start_from=tmp_path / "given.pt")
    assert log == [("build", "a", "given.pt"), ("run", "a"), ("build", "b", "a/checkpoint.pt"), ("run", "b"),
                   ("build", "c", "b/checkpoint.pt")]
    assert last.name == "c"


def test_a_finished_phase_is_reused_not_trained_again(tmp_path, make_cfg):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps({"steps": 1}))
    log = []
    run_phases(_phases(make_cfg, tmp_path, log))
    assert ("run", "a") not in log and ("build", "b", "a/checkpoint.pt") in log


@pytest.mark.parametrize("bad,words", [(["optim.actor_lr=-1"], "optim.actor_lr"), (["resume=true"], "resume=true")])
def test_a_bad_last_phase_fails_before_any_phase_trains(tmp_path, make_cfg, bad, words):
    log = []
    with pytest.raises(Exception, match=words):
        run_phases(_phases(make_cfg, tmp_path, log, last_overrides=bad))
    assert log == [] and not any(tmp_path.iterdir())


def test_a_phase_check_runs_before_any_phase_trains(tmp_path, make_cfg):
    def refuse(cfg):
        raise ConfigError("not this one")

    log = []
    first, second, third = _phases(make_cfg, tmp_path, log)
    with pytest.raises(ConfigError, match="not this one"):
        run_phases([first, second, Phase(third.name, third.cfg, third.build, check=refuse)])
    assert log == []
