"""The one-step setting (recipes/ppl_onestep.py, ppl_torchrl/training/onestep.py): each phase (BC, Q^beta, the PPL
policy on the fixed Q^beta) is a run of the one trainer built by the one set-up chain, so it trains on the data every
other recipe sees (reward scale and bias, state normalisation), logs, checkpoints and resumes exactly after a kill."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ppl_torchrl.training.config import LossConfig, NetworkConfig, OptimConfig
from ppl_torchrl.training.onestep import fixed_q_algorithm, make_onestep_loss
from ppl_torchrl.training.onestep_phases import build_onestep_phase, phase_config, phase_dir
from ppl_torchrl.training.recipe import train_onestep

ROOT = Path(__file__).resolve().parents[1]
DATASET = "pointmaze-umaze-gen-v0"
PHASE_DIRS = ("bc", "qbeta", ".")


def overrides(run_dir, **extra) -> dict:
    over = {"dataset": DATASET, "optim.bc_steps": 20, "optim.qbeta_steps": 30, "optim.policy_steps": 20,
            "optim.batch_size": 16, "model.hidden_dim": 16, "eval.episodes": 1, "eval.num_envs": 1, "eval.every": 10,
            "logger.backend": "", "logger.progress": "false", "logger.log_every": 5, "checkpoint.every": 10,
            "checkpoint.every_minutes": "null", "threads": 1, "probe.size": 32, "run_dir": str(run_dir)}
    over.update(extra)
    return over


@pytest.fixture
def onestep_cfg(make_cfg):
    """``onestep_cfg(run_dir, **overrides)``: the one-step recipe's config at a seconds-long budget."""
    return lambda run_dir, **extra: make_cfg([f"{k}={v}" for k, v in overrides(run_dir, **extra).items()], "onestep")


def _rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "train/steps_per_second"} for r in rows]


@pytest.fixture
def assert_same_phases(assert_same_run):
    """Every phase of run ``b`` equals run ``a``'s bit for bit: weights, optimizer state, logs, evaluations."""
    def check(a: Path, b: Path) -> None:
        for sub in PHASE_DIRS:
            assert_same_run(a / sub, b / sub)
    return check


def test_each_phase_is_a_trainer_run_that_starts_from_the_one_before(tmp_path, onestep_cfg):
    results = train_onestep(onestep_cfg(tmp_path))
    assert results["algorithm"] == "ppl_onestep" and results["steps"] == 20
    assert results["final_eval"]["num_episodes"] == 1
    states = {sub: torch.load(tmp_path / sub / "checkpoint.pt", weights_only=False) for sub in PHASE_DIRS}
    assert [states[s]["step"] for s in PHASE_DIRS] == [20, 30, 20]
    # each phase logs its own losses at logger.log_every
    for sub, key in (("bc", "train/loss_bc"), ("qbeta", "train/loss_qvalue"), (".", "train/loss_potential")):
        rows = [r for r in _rows(tmp_path / sub) if key in r]
        assert [r["step"] for r in rows] == list(range(5, states[sub]["step"] + 1, 5)), sub
    assert any("probe/f_policy" in r for r in _rows(tmp_path))  # the policy phase runs the mechanism probe
    # BC is scored once at its end; Q^beta leaves the actor as it is: not scored
    assert json.loads((tmp_path / "bc" / "results.json").read_text())["final_eval"]["num_episodes"] == 1
    assert json.loads((tmp_path / "qbeta" / "results.json").read_text())["final_eval"] is None
    bc, qbeta, policy = (states[s]["algorithm"]["loss"] for s in PHASE_DIRS)
    actor = [k for k in bc if k.startswith("actor_network_params")]
    critic = [k for k in bc if k.startswith("qvalue_network_params")]
    assert actor and critic
    # Q^beta starts from beta and trains only the critic; the policy phase trains only the actor (and f) on that Q
    assert all(torch.equal(bc[k], qbeta[k]) for k in actor)
    assert not all(torch.equal(bc[k], qbeta[k]) for k in critic)
    assert all(torch.equal(qbeta[k], policy[k]) for k in critic)
    assert not all(torch.equal(qbeta[k], policy[k]) for k in actor)


def test_onestep_honours_every_dataset_setting(tmp_path, onestep_cfg):
    """reward_scale / reward_bias / normalize_states reach the batches of every phase (the one-step recipe used to
    build its buffer without them, so on AntMaze it trained on unscaled rewards unlike every other recipe)."""
    settings = {"dataset.reward_scale": 3.0, "dataset.reward_bias": -1.0, "dataset.normalize_states": "true"}
    cfg = onestep_cfg(tmp_path / "scaled", **settings)
    for phase in ("bc", "qbeta", "policy"):
        trainer = build_onestep_phase(phase_config(cfg, phase), phase)
        buffer = trainer.buffer
        batch = buffer.sample()
        raw = buffer.storage[batch.get("index")]
        torch.testing.assert_close(batch.get(("next", "reward")), 3.0 * raw.get(("next", "reward")) - 1.0)
        mean, std = buffer.state_mean, buffer.state_std
        assert not torch.equal(std, torch.ones_like(std))
        torch.testing.assert_close(batch.get("observation"), (raw.get("observation") - mean) / std)
        torch.testing.assert_close(batch.get(("next", "observation")),
                                   (raw.get(("next", "observation")) - mean) / std)
    # end to end: the same seed with other reward settings trains another Q^beta, and the saved statistics are the
    # ones the evaluation normalises the environment's observations with
    plain, scaled = tmp_path / "plain", tmp_path / "scaled"
    train_onestep(onestep_cfg(plain))
    train_onestep(cfg)
    qa, qb = (torch.load(p / "qbeta" / "checkpoint.pt", weights_only=False) for p in (plain, scaled))
    critic = [k for k in qa["algorithm"]["loss"] if k.startswith("qvalue_network_params")]
    assert not all(torch.equal(qa["algorithm"]["loss"][k], qb["algorithm"]["loss"][k]) for k in critic)
    for sub in PHASE_DIRS:
        state = torch.load(scaled / sub / "checkpoint.pt", weights_only=False)
        torch.testing.assert_close(state["state_mean"], mean)
        assert state["config"]["dataset"]["reward_scale"] == 3.0


@pytest.mark.parametrize("phase", ["bc", "qbeta", "policy"])
def test_a_stopped_phase_resumes_exactly(tmp_path, phase, onestep_cfg, assert_same_phases):
    """Stop (as if killed) inside one phase, relaunch with resume=auto: every phase equals an uninterrupted run."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_onestep(onestep_cfg(full))
    kill = {"bc": 13, "qbeta": 17, "policy": 12}[phase]
    cfg = onestep_cfg(cut)
    if phase == "policy":
        stopped = train_onestep(onestep_cfg(cut, **{"checkpoint.stop_after": kill}))
    else:  # the earlier phases always run with resume=auto: stop one of them on its own
        start = None
        if phase == "qbeta":  # BC first, as the recipe runs it
            build_onestep_phase(phase_config(cfg, "bc"), "bc").run()
            start = phase_dir(cfg, "bc") / "checkpoint.pt"
        stopped_cfg = phase_config(cfg, phase)
        stopped_cfg.checkpoint.stop_after = kill
        stopped = build_onestep_phase(stopped_cfg, phase, start).run()
    assert stopped == {"stopped_at": kill}
    assert not (phase_dir(onestep_cfg(cut), phase) / "results.json").exists()
    train_onestep(onestep_cfg(cut, resume="auto"))
    assert_same_phases(full, cut)


def _recipe(run_dir) -> list[str]:
    over = overrides(run_dir, **{"optim.bc_steps": 100, "optim.qbeta_steps": 600, "optim.policy_steps": 100,
                                 "checkpoint.every": 50, "logger.log_every": 50, "eval.every": 100, "resume": "auto"})
    return [sys.executable, str(ROOT / "recipes" / "ppl_onestep.py"), *(f"{k}={v}" for k, v in over.items())]


@pytest.mark.slow
def test_onestep_recipe_resumes_exactly_after_a_real_kill(tmp_path, assert_same_phases, kill_at_step):
    """SIGKILL the recipe inside its Q^beta phase; relaunched, it continues that phase and reproduces the full run."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_recipe(full), check=True, env=env, capture_output=True, timeout=600)
    proc = subprocess.Popen(_recipe(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "qbeta" / "checkpoint.pt"
    kill_at_step(proc, ckpt, 100)
    assert not (killed / "qbeta" / "results.json").exists(), "Q^beta finished before the kill; raise its steps"
    assert 100 <= torch.load(ckpt, weights_only=False)["step"] < 600
    relaunch = subprocess.run(_recipe(killed), env=env, capture_output=True, text=True, timeout=600)
    assert relaunch.returncode == 0, relaunch.stderr[-2000:]
    assert "phase bc: finished" in relaunch.stdout + relaunch.stderr
    assert_same_phases(full, killed)


def test_finished_phases_are_reused_by_another_policy_run(tmp_path, onestep_cfg):
    first, second = tmp_path / "first", tmp_path / "second"
    train_onestep(onestep_cfg(first))
    before = {sub: (first / sub / "checkpoint.pt").stat().st_mtime_ns for sub in ("bc", "qbeta")}
    results = train_onestep(onestep_cfg(second, phases_dir=str(first), **{"optim.policy_steps": 30}))
    assert results["steps"] == 30
    assert {sub: (first / sub / "checkpoint.pt").stat().st_mtime_ns for sub in ("bc", "qbeta")} == before
    assert not (second / "bc").exists() and not (second / "qbeta").exists()
    critic = torch.load(first / "qbeta" / "checkpoint.pt", weights_only=False)["algorithm"]["loss"]
    policy = torch.load(second / "checkpoint.pt", weights_only=False)["algorithm"]["loss"]
    assert all(torch.equal(v, policy[k]) for k, v in critic.items() if k.startswith("qvalue_network_params"))


@pytest.mark.slow
def test_runs_started_together_on_one_phases_dir_take_turns_on_its_phases(tmp_path, assert_same_run):
    """Two policy runs launched at once, sharing their BC and Q^beta phases: one trains each phase, the other waits
    and reuses it, so each shared phase equals the same phase trained alone (interleaved writers would not)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    alone, shared = tmp_path / "alone", tmp_path / "shared"
    subprocess.run(_recipe(alone), check=True, env=env, capture_output=True, timeout=600)
    procs = [subprocess.Popen([*_recipe(tmp_path / name), f"phases_dir={shared}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for name in ("a", "b")]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    for phase in ("bc", "qbeta"):
        assert sum(f"phase {phase}: finished in {shared / phase}; reused" in out for out in outputs) == 1, outputs
        assert_same_run(alone / phase, shared / phase)


def test_bad_onestep_settings_fail_before_training(tmp_path, onestep_cfg):
    for key, value, match in (("optim.qbeta_steps", 0, "optim.qbeta_steps must be a positive integer"),
                              ("loss.conservative_weight", -1, "conservative_weight must be >= 0"),
                              ("compile.enabled", "true", "run eagerly"),
                              ("optim.steps", 40, "optim.steps=40: the one-step recipe's phases train")):
        with pytest.raises(ValueError, match=match):
            train_onestep(onestep_cfg(tmp_path, **{key: value}))
    assert not tmp_path.joinpath("bc").exists() and not tmp_path.joinpath("checkpoint.pt").exists()


def test_fixed_q_policy_steps_actor_then_potential_and_never_the_critic():
    """One update of the fixed-Q PPL algorithm (the one-step policy phase and the toy's): the actor's step is taken
    on the loss before the potential moves, the potential's after; the critic does not change."""
    torch.manual_seed(0)
    loss = make_onestep_loss(LossConfig("ppl", actor_bc_coef=0.0),
                             NetworkConfig(hidden_dim=16, num_hidden=1, num_qvalue_nets=2, activation="relu",
                                           init="corl"),
                             OptimConfig(actor_lr=1e-3, critic_lr=1e-3, potential_lr_scale=1.0, tau=5e-3,
                                         policy_freq=2, gamma=0.99), 3, 2, "cpu")
    algorithm = fixed_q_algorithm(loss, actor_lr=1e-2, potential_lr=1e-2)
    from tensordict import TensorDict

    n = 8
    batch = TensorDict({"observation": torch.randn(n, 3), "action": torch.rand(n, 2) * 2 - 1,
                        ("next", "observation"): torch.randn(n, 3), ("next", "action"): torch.rand(n, 2) * 2 - 1,
                        ("next", "reward"): torch.randn(n, 1), ("next", "done"): torch.zeros(n, 1, dtype=torch.bool),
                        ("next", "terminated"): torch.zeros(n, 1, dtype=torch.bool)}, batch_size=[n])
    before = loss.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    expected_actor_loss = loss.actor_loss(batch.clone())[0].detach()
    out = algorithm.update(batch.clone(), 0)
    assert torch.equal(out["loss_actor"], expected_actor_loss)
    after = loss.state_dict()
    changed = {k.split(".")[0] for k, v in after.items() if not torch.equal(v, before[k])}
    assert changed == {"actor_network_params", "potential_network_params"}


def test_a_onestep_checkpoint_is_rebuilt_for_evaluation(tmp_path, onestep_cfg):
    """recipes/evaluate.py's loader rebuilds each phase's own algorithm from its checkpoint, with its weights."""
    from ppl_torchrl.training.checkpoints import load_trained_run

    train_onestep(onestep_cfg(tmp_path, **{"optim.bc_steps": 5, "optim.qbeta_steps": 5, "optim.policy_steps": 5}))
    for sub, name in (("bc", "onestep_bc"), ("qbeta", "onestep_qbeta"), (".", "ppl_onestep")):
        state, _, algorithm = load_trained_run(tmp_path / sub)
        assert algorithm.name == name
        for key, value in algorithm.loss.state_dict().items():
            assert torch.equal(value, state["algorithm"]["loss"][key]), (sub, key)
