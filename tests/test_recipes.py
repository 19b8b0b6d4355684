"""Recipes end to end: every loss through the same harness, paper configs, exact resume, clear failures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ppl_torchrl.errors import UserError, error_line, is_user_error
from ppl_torchrl.training.algorithms import LOSSES
from ppl_torchrl.training.checkpoints import load_trained_run
from ppl_torchrl.training.recipe import train
from ppl_torchrl.training.build import build_trainer

ROOT = Path(__file__).resolve().parents[1]
DATASET = "pointmaze-umaze-gen-v0"


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_runs_in_the_same_harness(loss, tmp_path, tiny, make_cfg):
    results = train(make_cfg(tiny(tmp_path, **{"loss": loss, "eval.episodes": 1})))
    assert results["algorithm"] == loss and results["steps"] == 20
    final = results["final_eval"]
    assert final["num_episodes"] == 1 and final["normalized_score_mean"] is not None
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["final_eval"]["return_mean"] == final["return_mean"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if any(k.startswith("train/") for k in r)]
    assert [r["step"] for r in train_rows] == [10, 20]
    losses = {k: v for r in train_rows for k, v in r.items() if k.startswith("train/loss")}
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert (tmp_path / "metrics.csv").exists()


@pytest.mark.slow  # dynamo traces TorchRL's losses: ~1.5-3 min of compilation per loss on 2 shared cores
@pytest.mark.parametrize("loss", ["ppl_td3_bc", "ppl_iql"])
def test_composed_losses_train_compiled(loss, tmp_path, tiny, make_cfg):
    """The potential composed onto TorchRL's losses trains under compile.enabled=true (the eager run is in
    test_every_loss_runs_in_the_same_harness): the same update function, compiled, with the f-step logged."""
    results = train(make_cfg(tiny(tmp_path, **{"loss": loss, "compile.enabled": "true",
                                                "compile.backend": "aot_eager"})))
    assert results["compiled"] and results["steps"] == 20
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    potential = [r["train/loss_potential"] for r in rows if "train/loss_potential" in r]
    assert len(potential) == 2 and all(torch.isfinite(torch.tensor(v)) for v in potential)


# The paper's per-dataset values (CORL ReBRAC configs, tinkoff-ai/CORL: configs/offline/rebrac/...; docs/algorithm.md),
# written out independently of the configs.
BETAS = {
    "halfcheetah-medium-v2": (0.001, 0.01), "halfcheetah-medium-replay-v2": (0.01, 0.001),
    "halfcheetah-medium-expert-v2": (0.01, 0.1), "hopper-medium-v2": (0.01, 0.01),
    "hopper-medium-replay-v2": (0.05, 0.5), "hopper-medium-expert-v2": (0.1, 0.01),
    "walker2d-medium-v2": (0.05, 0.1), "walker2d-medium-replay-v2": (0.05, 0.01),
    "walker2d-medium-expert-v2": (0.01, 0.01),
    "antmaze-umaze-v2": (0.003, 0.002), "antmaze-umaze-diverse-v2": (0.003, 0.001),
    "antmaze-medium-play-v2": (0.001, 0.0005), "antmaze-medium-diverse-v2": (0.001, 0.0),
    "antmaze-large-play-v2": (0.002, 0.001), "antmaze-large-diverse-v2": (0.002, 0.002),
    "pen-human-v1": (0.1, 0.5), "pen-cloned-v1": (0.05, 0.5), "pen-expert-v1": (0.01, 0.01),
    "door-human-v1": (0.1, 0.1), "door-cloned-v1": (0.01, 0.1), "door-expert-v1": (0.05, 0.01),
    "hammer-human-v1": (0.01, 0.5), "hammer-cloned-v1": (0.1, 0.5), "hammer-expert-v1": (0.01, 0.01),
    "relocate-human-v1": (0.1, 0.01), "relocate-cloned-v1": (0.1, 0.01), "relocate-expert-v1": (0.05, 0.01),
}
SUITE = {  # actor lr, critic lr, batch, gamma, eval episodes, eval every
    "antmaze": (3e-4, 5e-5, 256, 0.999, 100, 50_000),
    "mujoco": (1e-3, 1e-3, 1024, 0.99, 10, 5_000),
    "adroit": (3e-4, 3e-4, 256, 0.99, 10, 5_000),
}


@pytest.mark.parametrize("dataset_id", sorted(BETAS))
def test_dataset_configs_carry_the_paper_values(dataset_id, make_cfg):
    recipe = "ppl_antmaze" if dataset_id.startswith("antmaze") else "ppl_mujoco"
    cfg = make_cfg([f"dataset={dataset_id}"], config_name=recipe)
    suite = "antmaze" if dataset_id.startswith("antmaze") else (
        "mujoco" if dataset_id.split("-")[0] in ("halfcheetah", "hopper", "walker2d") else "adroit")
    actor_lr, critic_lr, batch, gamma, episodes, every = SUITE[suite]
    assert cfg.dataset.id == dataset_id
    assert (cfg.loss.actor_bc_coef, cfg.loss.critic_bc_coef) == BETAS[dataset_id]
    assert (cfg.optim.actor_lr, cfg.optim.critic_lr, cfg.optim.batch_size, cfg.optim.gamma) == (
        actor_lr, critic_lr, batch, gamma)
    assert cfg.optim.critic_lr * cfg.optim.potential_lr_scale == pytest.approx(critic_lr / 100)
    assert (cfg.eval.episodes, cfg.eval.every) == (episodes, every)
    assert (cfg.optim.steps, cfg.optim.tau, cfg.optim.policy_freq) == (1_000_000, 5e-3, 2)
    assert cfg.loss.w == (12.0 if dataset_id == "antmaze-large-diverse-v2" else 8.0)
    # a user override wins over the dataset file
    assert make_cfg([f"dataset={dataset_id}", "loss.w=5"], config_name=recipe).loss.w == 5


@pytest.mark.parametrize("loss", LOSSES)
def test_the_typed_loss_settings_default_to_the_loss_files(loss, make_cfg):
    """``LossConfig(name)`` (what a test, a benchmark or a script builds an algorithm from) holds what ``loss=<name>``
    gives a recipe, but the per-dataset hparams (the BC weights, w), and where a file says ``true`` for
    ``potential_uses_target_actor`` the typed default ``None`` means the same: the base loss's target actor."""
    from dataclasses import replace

    from ppl_torchrl.training.config import LossConfig

    typed = LossConfig(loss)
    recipe = LossConfig.from_config(make_cfg(["dataset=hopper-medium-v2", f"loss={loss}"], "ppl_mujoco").loss)
    per_dataset = {k: getattr(typed, k) for k in ("actor_bc_coef", "critic_bc_coef", "w")}
    if recipe.potential_uses_target_actor:
        assert loss in ("ppl", "ppl_stable", "ppl_td3_bc")  # bases that keep a target actor
        per_dataset["potential_uses_target_actor"] = None
    assert replace(recipe, **per_dataset) == (typed if loss != "ppl_stable" else replace(typed, potential_gp=5.0))


@pytest.mark.parametrize("loss", ["cql", "ppl_cql"])
@pytest.mark.parametrize("recipe, dataset_id", [("ppl_antmaze", "antmaze-umaze-v2"), ("ppl_mujoco", "hopper-medium-v2")])
def test_cql_settings_have_one_home(recipe, dataset_id, loss, make_cfg):
    """CQL's learning rates and discount (CORL: policy_lr 1e-4, qf_lr 3e-4, discount 0.99) live in optim: they win
    over the dataset file's, and the command line wins over them; the built optimizers use what the config says."""
    from ppl_torchrl.training.algorithms import algorithm_from_config

    def built(*extra):
        cfg = make_cfg([f"dataset={dataset_id}", f"loss={loss}", "model.hidden_dim=8", *extra], config_name=recipe)
        assert not ({"actor_lr", "critic_lr", "gamma"} & set(cfg.loss)), "a second home for optim settings"
        alg = algorithm_from_config(cfg, obs_dim=3, act_dim=2)
        lrs = {name: opt.param_groups[0]["lr"] for name, opt in alg.optimizers.items()}
        return cfg, lrs, float(alg.loss.value_estimator.gamma)

    cfg, lrs, gamma = built()
    assert (cfg.optim.actor_lr, cfg.optim.critic_lr, cfg.optim.gamma) == (1e-4, 3e-4, 0.99)
    assert (lrs["actor"], lrs["alpha"], lrs["critic"], lrs["alpha_prime"]) == (1e-4, 1e-4, 3e-4, 3e-4)
    assert gamma == pytest.approx(0.99)
    if loss == "ppl_cql":
        assert lrs["potential"] == pytest.approx(3e-4 / 100)
    cfg, lrs, gamma = built("optim.critic_lr=1e-3", "optim.actor_lr=2e-4", "optim.gamma=0.95")
    assert (lrs["actor"], lrs["alpha"], lrs["critic"], lrs["alpha_prime"]) == (2e-4, 2e-4, 1e-3, 1e-3)
    assert gamma == pytest.approx(0.95)
    # the other losses keep the dataset file's values
    other = make_cfg([f"dataset={dataset_id}", "loss=rebrac"], config_name=recipe)
    expected = (3e-4, 5e-5, 0.999) if dataset_id.startswith("antmaze") else (1e-3, 1e-3, 0.99)
    assert (other.optim.actor_lr, other.optim.critic_lr, other.optim.gamma) == expected


def test_resume_after_stop_is_bit_identical(tmp_path, tiny, make_cfg, assert_same_run):
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(make_cfg(tiny(full, steps=40, **{"eval.every": 20, "eval.episodes": 1})))
    stopped = train(make_cfg(tiny(cut, steps=40, **{"eval.every": 20, "eval.episodes": 1,
                                                    "checkpoint.stop_after": 25})))
    assert stopped == {"stopped_at": 25}
    train(make_cfg(tiny(cut, steps=40, **{"eval.every": 20, "eval.episodes": 1, "resume": "true"})))
    assert_same_run(full, cut)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cudagraphs", [False, True])
def test_a_cuda_run_resumes_on_the_cpu(tmp_path, tiny, make_cfg, cudagraphs):
    """A run trained on a GPU (eager, or compiled and replayed as CUDA graphs) stops, and the same run folder resumes
    on a machine without one: the checkpoint's tensors and Adam's step counters come back to the CPU, the logs go on
    from the stop, and the run ends with its evaluation."""
    run = tmp_path / "run"
    on_gpu = {"eval.every": 20, "eval.episodes": 1, "device": "cuda"}
    if cudagraphs:
        on_gpu.update({"compile.enabled": "true", "compile.cudagraphs": "true"})
    assert train(make_cfg(tiny(run, steps=40, **on_gpu, **{"checkpoint.stop_after": 20}))) == {"stopped_at": 20}
    assert torch.load(run / "checkpoint.pt", weights_only=False)["config"]["device"] == "cuda"
    on_cpu = {**on_gpu, "device": "cpu", "compile.enabled": "false", "compile.cudagraphs": "false", "resume": "true"}
    train(make_cfg(tiny(run, steps=40, **on_cpu)))
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    assert state["step"] == 40
    assert all(v.device.type == "cpu" for v in state["algorithm"]["loss"].values())
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 40 and steps.count(10) == 1  # continued, not restarted
    assert json.loads((run / "results.json").read_text())["final_eval"]["returns"]


def _recipe_cmd(tiny, run_dir, steps):
    # one thread: two OpenMP threads on a shared 2-core machine slow these tiny networks down many-fold
    args = tiny(run_dir, steps=steps, **{"eval.every": steps, "eval.episodes": 1, "checkpoint.every": 50,
                                         "resume": "auto"})
    return [sys.executable, str(ROOT / "recipes" / "ppl_antmaze.py"), *args]


@pytest.mark.slow
def test_resume_after_a_real_kill_is_bit_identical(tmp_path, tiny, assert_same_run, kill_at_step):
    """Kill a training process mid-way with SIGKILL; relaunching with resume=auto reproduces the full run."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    full, killed = tmp_path / "full", tmp_path / "killed"
    steps = 600
    subprocess.run(_recipe_cmd(tiny, full, steps), check=True, env=env, capture_output=True, timeout=600)
    proc = subprocess.Popen(_recipe_cmd(tiny, killed, steps), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    kill_at_step(proc, killed / "checkpoint.pt", 100)
    assert not (killed / "results.json").exists(), "the run finished before it could be killed; raise `steps`"
    step_at_kill = torch.load(killed / "checkpoint.pt", weights_only=False)["step"]
    assert 100 <= step_at_kill < steps
    subprocess.run(_recipe_cmd(tiny, killed, steps), check=True, env=env, capture_output=True, timeout=600)
    assert_same_run(full, killed)
    # hydra's record of the command, written by the recipe once the run was accepted
    assert "resume=auto" in (killed / "hydra" / ".hydra" / "overrides.yaml").read_text()


def test_a_second_process_on_a_run_folder_in_training_is_refused_in_one_line(tmp_path, tiny):
    """A relaunch while the first process still trains the folder (a grid driver started twice, a double submit)
    must not interleave its checkpoints and logs with the first's: it fails in one line and changes nothing; the
    folder is free again once the first process is gone (even killed)."""
    from ppl_torchrl.atomic import exclusive

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    run = tmp_path / "run"
    first = subprocess.Popen(_recipe_cmd(tiny, run, 1_000_000), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (run / "checkpoint.pt").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert (run / "checkpoint.pt").exists(), "the first run never wrote a checkpoint"
        second = subprocess.run(_recipe_cmd(tiny, run, 1_000_000), env=env, capture_output=True, text=True,
                                timeout=600)
        assert first.poll() is None, "the first run ended before the second could be refused"
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert second.stderr.strip().splitlines()[-1].startswith(f"error: {run} is in use by another process")
        assert "resume=auto" in second.stderr
    finally:
        first.kill()
        first.wait()
    with exclusive(run, wait=False):  # the lock went with the killed process
        pass


def test_bad_config_fails_before_training(tmp_path, tiny, make_cfg):
    with pytest.raises(ValueError, match="loss.w must be >= 1"):
        build_trainer(make_cfg(tiny(tmp_path, **{"loss.w": 0.5})))
    with pytest.raises(ValueError, match="loss.actor_bc_coef must be >= 0"):
        build_trainer(make_cfg(tiny(tmp_path, **{"loss.actor_bc_coef": -1})))
    with pytest.raises(KeyError, match="Did you mean 'antmaze-umaze-v2'"):
        build_trainer(make_cfg(tiny(tmp_path, **{"dataset.id": "antmaze-umaze-v3"})))
    with pytest.raises(FileNotFoundError, match="dataset.path"):
        build_trainer(make_cfg(tiny(tmp_path, **{"dataset.path": str(tmp_path / "missing.hdf5")})))
    for key, value, match in (("seed", -1, "seed must be an integer in"), ("eval.seed", 2**32, "eval.seed"),
                              ("seed", 1.5, "seed must be an integer"), ("eval.num_envs", 0, "eval.num_envs"),
                              ("eval.episodes", -1, "eval.episodes"), ("threads", 0, "threads")):
        with pytest.raises(ValueError, match=match):
            build_trainer(make_cfg(tiny(tmp_path, **{key: value})))
    assert not (tmp_path / "checkpoint.pt").exists()


def test_refuses_to_overwrite_a_run_without_resume(tmp_path, tiny, make_cfg):
    train(make_cfg(tiny(tmp_path, steps=10)))
    with pytest.raises(FileExistsError, match="resume=true"):
        build_trainer(make_cfg(tiny(tmp_path, steps=10)))


def test_evaluate_recipe_scores_a_checkpoint(tmp_path, tiny, make_cfg):
    results = train(make_cfg(tiny(tmp_path / "run", steps=10, **{"eval.episodes": 1})))
    # as a GPU run's checkpoint, scored on this CPU machine: evaluation builds no compiled / CUDA-graph update
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    state["config"]["compile"].update(enabled=True, cudagraphs=True)
    torch.save(state, path)
    out = tmp_path / "eval.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "evaluate.py"), f"checkpoint={tmp_path / 'run' / 'checkpoint.pt'}",
         "episodes=1", "num_envs=1", "seed=42", f"output={out}"],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(out.read_text())["final_eval"]["returns"] == list(results["final_eval"]["returns"])
    wrong_task = subprocess.run(  # a PointMaze checkpoint scored on Hopper: one line, no traceback
        [sys.executable, str(ROOT / "recipes" / "evaluate.py"), f"checkpoint={path}", "eval_id=hopper-medium-v2",
         "episodes=1", "num_envs=1"], capture_output=True, text=True, timeout=600)
    assert wrong_task.returncode == 2 and "Traceback" not in wrong_task.stderr
    assert "4-dim observations" in wrong_task.stderr and "pass eval_id=" in wrong_task.stderr


def test_a_checkpoint_is_rebuilt_with_its_weights_and_bad_files_say_what_they_are(tmp_path, tiny, make_cfg):
    trainer = build_trainer(make_cfg(tiny(tmp_path / "run", steps=10)))
    trainer.run()
    path = tmp_path / "run" / "checkpoint.pt"
    state, cfg, algorithm = load_trained_run(tmp_path / "run")  # the run folder, or its checkpoint.pt
    assert load_trained_run(path).state["step"] == 10
    assert state["step"] == 10 and cfg.loss.name == "ppl" and not cfg.compile.enabled
    rebuilt, trained = algorithm.loss.state_dict(), trainer.algorithm.loss.state_dict()
    assert rebuilt.keys() == trained.keys() and all(torch.equal(rebuilt[k], trained[k]) for k in trained)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    not_a_run = tmp_path / "weights.pt"
    torch.save({"actor": torch.zeros(3)}, not_a_run)
    for bad, says in ((tmp_path / "missing.pt", "does not exist"), (tmp_path, "holds no checkpoint.pt"), (truncated, "not a readable checkpoint.pt"),
                      (not_a_run, "no config/dims/algorithm")):
        with pytest.raises(Exception) as err:
            load_trained_run(bad)
        assert is_user_error(err.value) and says in error_line(err.value), (bad, error_line(err.value))
    other = torch.load(path, weights_only=False)
    other["config"]["model"]["hidden_dim"] = 8  # the weights no longer fit the networks the config builds
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(UserError, match="another version of ppl-torchrl.*size of tensor a"):
        load_trained_run(tmp_path / "other.pt")


@pytest.mark.slow
def test_quickstart_command_prints_a_score_table(tmp_path):
    """The README's main job (recipes/quickstart.py), with its budget cut for CI."""
    res = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "quickstart.py"), "optim.steps=60", "eval.every=60",
         "eval.episodes=2", "eval.num_envs=2", "model.hidden_dim=32", "logger.progress=false",
         f"run_dir={tmp_path}/${{loss.name}}", "quickstart.toy_steps=200", f"quickstart.toy_dir={tmp_path}/toy"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    table = res.stdout.split("Final evaluation (deterministic actor):", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ppl ") or line.startswith("| rebrac ")]
    assert len(rows) == 2 and all(f"| {DATASET} | 0 | 60 |" in r for r in rows), table
    for name in ("ppl", "rebrac"):
        assert json.loads((tmp_path / name / "results.json").read_text())["steps"] == 60
    toy = res.stdout.split("What the potential does", 1)[1]
    assert "PPL (w = 8)" in toy and "TD3+BC-like baseline" in toy and (tmp_path / "toy" / "toy.png").exists()
