"""Runs a user can trust (issue 18): resume never loses or duplicates a step, a refused or failed run changes
nothing, user errors print one line, the CUDA message says how to get CUDA, compilation is announced and kept
out of the ETA, recipes write only into their run folder, and no warning or temporary file leaks."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest
import torch

from ppl_torchrl.errors import UserError, is_user_error
from ppl_torchrl.training.recipe import recipe_main, train
from ppl_torchrl.training.build import build_trainer
from ppl_torchrl.training.process import resolve_device

ROOT = Path(__file__).resolve().parents[1]
DATASET = "pointmaze-umaze-gen-v0"
DROP = "train/steps_per_second"  # the only logged value that depends on the machine's speed


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def _recipe(args, cwd, timeout=300, env=None, script="ppl_antmaze.py") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "recipes" / script), *args], cwd=cwd, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


def _rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != DROP}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _csv(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != DROP} for r in csv.DictReader(f)]


def _snapshot(folder: Path) -> dict:
    """Every file and folder under ``folder``: content hash and modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir",
                                         p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _one_error_line(stderr: str, starts: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {starts}"), stderr
    assert "Traceback" not in stderr


# ------------------------------------------------------------------------------ 1. resume at any length
@pytest.mark.slow
@pytest.mark.parametrize("steps,log_every,ckpt_every,every_minutes,evals,seed", [
    (30, 3, 10, None, 15, 1),     # short: step checkpoints only, a kill before the first one, evaluations
    (120, 10, 1000, 1e-6, 0, 2),  # long: time checkpoints only (every_minutes ~ every step boundary)
])
def test_kills_at_random_points_resume_exactly(tmp_path, steps, log_every, ckpt_every, every_minutes, evals, seed, tiny,
                                               make_cfg, assert_same_state):
    """Kill (checkpoint.stop_after) at random points, relaunch with resume=auto each time: the logs (JSON lines
    and CSV) have every step once, and the final state is bit-identical to an uninterrupted run."""
    extra = {"logger.log_every": log_every, "checkpoint.every": ckpt_every,
             "checkpoint.every_minutes": every_minutes if every_minutes else "null",
             "eval.episodes": 1 if evals else 0, "eval.every": evals or steps, "resume": "auto"}
    full, killed = tmp_path / "full", tmp_path / "killed"
    train(make_cfg(tiny(full, steps, **extra)))
    rng = random.Random(seed)
    first_checkpoint = 1 if every_minutes else ckpt_every
    kills = sorted({rng.randrange(1, first_checkpoint)} if first_checkpoint > 1 else set())
    kills = sorted(set(kills) | set(rng.sample(range(first_checkpoint + 1, steps), 2)))
    print("kill points:", kills)
    done = 0
    for kill in kills:
        assert kill > done
        stopped = train(make_cfg(tiny(killed, steps, **extra, **{"checkpoint.stop_after": kill})))
        assert stopped == {"stopped_at": kill}
        ckpt = killed / "checkpoint.pt"
        done = torch.load(ckpt, weights_only=False)["step"] if ckpt.exists() else 0
        if every_minutes:
            assert done == kill  # a time checkpoint at the last step boundary, not at a multiple of `every`
        else:
            assert done == kill - kill % ckpt_every
        assert (killed / "metrics.csv").exists()  # written as the run goes
    train(make_cfg(tiny(killed, steps, **extra)))
    rows, reference = _rows(killed), _rows(full)
    keys = [(r["step"], next(iter(k for k in r if k != "step")).split("/")[0]) for r in rows]
    assert len(keys) == len(set(keys)), "a step was logged twice"
    assert [r["step"] for r in rows if "train/loss_qvalue" in r] == list(range(log_every, steps + 1, log_every))
    assert rows == reference
    csv_rows = _csv(killed)
    assert [int(r["step"]) for r in csv_rows] == sorted({r["step"] for r in reference})  # one row per step
    assert csv_rows == _csv(full)
    sa, sb = assert_same_state(full, killed)
    assert torch.equal(sa["rng"]["torch"], sb["rng"]["torch"])
    if sa["rng"]["buffer"] is not None:
        assert torch.equal(torch.as_tensor(sa["rng"]["buffer"]), torch.as_tensor(sb["rng"]["buffer"]))


def test_resume_true_without_a_checkpoint_says_why_and_what_to_do(tmp_path, tiny, make_cfg):
    train(make_cfg(tiny(tmp_path, 40, **{"checkpoint.every": 30, "checkpoint.stop_after": 15})))
    assert not (tmp_path / "checkpoint.pt").exists()
    with pytest.raises(UserError, match="checkpoint.every=30 steps.*resume=auto"):
        build_trainer(make_cfg(tiny(tmp_path, 40, **{"checkpoint.every": 30, "resume": "true"})))
    # resume=auto starts over: the killed attempt's rows are gone, not appended to
    train(make_cfg(tiny(tmp_path, 40, **{"checkpoint.every": 30, "resume": "auto"})))
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows if any(k.startswith("train/") for k in r)] == [10, 20, 30, 40]
    assert [r["step"] for r in rows if any(k.startswith("probe/") for k in r)] == [40]  # the one evaluation step


def test_resuming_with_another_network_size_is_one_short_line(tmp_path, tiny, make_cfg):
    train(make_cfg(tiny(tmp_path, 40, **{"checkpoint.stop_after": 20})))
    with pytest.raises(UserError) as err:
        build_trainer(make_cfg(tiny(tmp_path, 40, **{"resume": "true", "model.hidden_dim": 8})))
    message = str(err.value)
    assert "was trained with model.hidden_dim=16, this command says 8" in message and "another run_dir" in message
    assert "\n" not in message and len(message) < 400  # not tensordict's repr of the whole parameter tree


def test_a_resumed_run_continues_the_same_wandb_run(tmp_path, monkeypatch, tiny, make_cfg):
    inits = []

    class FakeRun:
        summary: dict = {}

        def log(self, *args, **kwargs):
            pass

        def finish(self):
            pass

    def init(**kwargs):
        inits.append(kwargs)
        return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    extra = {"logger.backend": "wandb", "logger.wandb_mode": "offline"}
    train(make_cfg(tiny(tmp_path, 30, **extra, **{"checkpoint.stop_after": 15})))
    train(make_cfg(tiny(tmp_path, 30, **extra, **{"resume": "true"})))
    assert len(inits) == 2 and inits[0]["id"] and inits[1]["id"] == inits[0]["id"]
    assert all(i["resume"] == "allow" for i in inits)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["logger"]["wandb_id"] == inits[0]["id"]


# ------------------------------------------------------------------------------ 2./3. refused and failed runs
def test_a_refused_relaunch_changes_nothing_and_says_so_in_one_line(tmp_path, tiny, make_cfg):
    run_dir = tmp_path / "run"
    train(make_cfg(tiny(run_dir, 10)))
    (run_dir / "hydra" / ".hydra").mkdir(parents=True)  # as a recipe records it (tests/test_recipes.py checks)
    (run_dir / "hydra" / ".hydra" / "overrides.yaml").write_text("- optim.batch_size=32\n")
    before, cwd_before = _snapshot(run_dir), _snapshot(tmp_path)
    again = _recipe(tiny(run_dir, 10, **{"optim.batch_size": 64}), cwd=tmp_path)
    assert again.returncode == 2
    _one_error_line(again.stderr, f"{run_dir} already holds a checkpoint; nothing was changed")
    assert _snapshot(run_dir) == before and _snapshot(tmp_path) == cwd_before


def test_a_failed_run_leaves_nothing(tmp_path, tiny):
    bad = _recipe(tiny(tmp_path / "run", 10, **{"loss.w": 0.5}), cwd=tmp_path)
    assert bad.returncode == 2
    _one_error_line(bad.stderr, "loss.w must be >= 1 (the unbalance coefficient), got 0.5.")
    assert list(tmp_path.iterdir()) == []  # neither the run folder nor hydra's files


def _fails_in_one_line(cfg, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        recipe_main(train)(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_no_network_error_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys, tiny, make_cfg):
    from ppl_torchrl.data import d4rl

    data_root = tmp_path / "data"
    monkeypatch.setenv("PPL_TORCHRL_DATA", str(data_root))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.d4rl/datasets file either
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setitem(d4rl.D4RL_URLS, "hopper-medium-v2", "http://127.0.0.1:9/hopper_medium-v2.hdf5")
    line = _fails_in_one_line(make_cfg(tiny(tmp_path / "run", 10, dataset="hopper-medium-v2"), "ppl_mujoco"), capsys)
    assert "Could not download D4RL dataset 'hopper-medium-v2' from http://127.0.0.1:9/" in line
    assert "hopper_medium-v2.hdf5" in line and "Minari" in line and line.count("Could not download") == 1
    assert not data_root.exists() and not (tmp_path / "run").exists()  # no empty downloads/ folder


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, monkeypatch, capsys, tiny, make_cfg):
    cfg = lambda **kw: make_cfg(tiny(tmp_path / "run", 10, **kw))  # noqa: E731
    assert "dataset.path=/nonexistent.hdf5 does not exist" in _fails_in_one_line(
        cfg(**{"dataset.path": "/nonexistent.hdf5"}), capsys)
    corrupt = tmp_path / "corrupt.hdf5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    assert f"Cannot open {corrupt} as HDF5" in _fails_in_one_line(cfg(**{"dataset.path": str(corrupt)}), capsys)
    assert "Did you mean 'antmaze-umaze-v2'" in _fails_in_one_line(cfg(**{"dataset.id": "antmaze-umaze-v3"}), capsys)
    assert "loss.w must be a number, got 'abc'" in _fails_in_one_line(cfg(**{"loss.w": "abc"}), capsys)
    # a `???` field left unset, read directly or through an interpolation (the default run_dir names dataset.id)
    assert "dataset.id has no value: pass dataset.id=<value>" in _fails_in_one_line(cfg(**{"dataset.id": "???"}),
                                                                                    capsys)
    unset = make_cfg([a for a in tiny(tmp_path / "run", 10, **{"dataset.id": "???"}) if not a.startswith("run_dir=")])
    assert "dataset.id has no value" in _fails_in_one_line(unset, capsys)
    assert "checkpoint.every_minutes must be > 0" in _fails_in_one_line(cfg(**{"checkpoint.every_minutes": 0}),
                                                                         capsys)
    # values that used to fail deep in the run (a traceback, a half-written folder) or to be accepted silently
    for key, value, says in (("compile.updates_per_call", 0, "compile.updates_per_call must be an integer >= 1"),
                             ("compile.mode", "bogus", "compile.mode must be one of default, "),
                             ("compile.backend", "bogus", "compile.backend must be a torch.compile backend"),
                             ("logger.wandb_mode", "bogus", "logger.wandb_mode must be one of offline"),
                             ("checkpoint.stop_after", 0, "checkpoint.stop_after must be an integer >= 1"),
                             ("checkpoint.stop_after", "abc", "checkpoint.stop_after must be an integer >= 1"),
                             ("model.hidden_dim", 0, "model.hidden_dim must be an integer >= 1"),
                             ("dataset.reward_scale", "abc", "dataset.reward_scale must be a number")):
        extra = {"logger.backend": "wandb"} if key == "logger.wandb_mode" else {}
        assert says in _fails_in_one_line(cfg(**{key: value}, **extra), capsys), key
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "device=cuda was requested" in _fails_in_one_line(cfg(device="cuda"), capsys)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ZeroDivisionError):  # a bug: the traceback stays
        recipe_main(lambda: 1 / 0)()
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the debug switch: user errors raise too
    with pytest.raises(ValueError, match="loss.w must be >= 1") as info:
        recipe_main(train)(cfg(**{"loss.w": 0.5}))
    assert is_user_error(info.value)


def test_a_mistyped_config_group_choice_is_one_line_naming_the_closest_ids(tmp_path):
    """Hydra resolves `dataset=<id>` before the recipe's function runs and answers a missing option with its list of
    every one (150+ dataset ids); the recipes' entry point answers in one line with the closest ids, exit status 2."""
    res = _recipe(["dataset=cube-single-play-singletask-task9-v0"], cwd=tmp_path, timeout=120, script="ppl_ogbench.py")
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("error: dataset=cube-single-play-singletask-task9-v0: there is no such option in ")
    assert "Did you mean 'cube-single-play-singletask-task5-v0'" in lines[0] and not res.stdout
    assert not list(tmp_path.iterdir())  # nothing written


def test_group_choices_are_checked_in_sweeps_and_left_to_hydra_where_it_knows_more():
    from ppl_torchrl.errors import ConfigError
    from ppl_torchrl.training.recipe import check_group_choices

    config = ROOT / "recipes" / "config"
    check_group_choices(config, ["-m", "--cfg", "job", "loss=ppl,rebrac", "+sweep=smoke", "dataset=null", "~loss",
                                 "dataset=glob(antmaze-*)", "hydra/launcher=basic", "optim.steps=3", "x=${a"])
    with pytest.raises(ConfigError, match="loss=rebrax: .* Did you mean 'rebrac'"):
        check_group_choices(config, ["-m", "loss=ppl,rebrax"])
    with pytest.raises(ConfigError, match="The options are the files of"):
        check_group_choices(config, ["dataset=zzzz"])
    check_group_choices(config, ["dataset=zzzz", "--config-dir=/elsewhere"])  # hydra looks there too


def test_a_mistyped_key_is_one_line_naming_the_closest_keys(tmp_path):
    """Hydra answers an override of a key the config lacks with several lines and status 1; the recipes' entry point
    answers in one line, with the closest keys and how to add a new one, status 2, writing nothing."""
    from ppl_torchrl.errors import ConfigError
    from ppl_torchrl.training.recipe import check_override_keys

    config = ROOT / "recipes" / "config"
    with pytest.raises(ConfigError, match=r"optim.stepz=10: the config has no key optim.stepz. Did you mean "
                                          r"'optim.steps'.* write \+optim.stepz=10"):
        check_override_keys(config, "ppl_antmaze", ["dataset=pointmaze-umaze-gen-v0", "optim.stepz=10"])
    for fine in (["optim.steps=3", "+new.key=1", "~seed", "hydra.run.dir=x"],  # real keys, additions, deletions
                 ["optim.stepz=1,2"], ["-m", "optim.stepz=1"], ["x=${a"]):      # sweeps, flags, unparsable: hydra's
        check_override_keys(config, "ppl_antmaze", fine)
    res = _recipe(["dataset=pointmaze-umaze-gen-v0", "optim.stepz=10"], cwd=tmp_path, timeout=120)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: optim.stepz=10"), res.stderr
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------ 4. CUDA
def test_cuda_message_says_how_to_get_a_cuda_build(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(UserError) as info:
        resolve_device("cuda")
    message = str(info.value)
    assert "CPU-only build" in message and "==2.13.0" in message
    assert "pip install --force-reinstall torch" in message and "https://pytorch.org/get-started/locally/" in message
    monkeypatch.setattr(torch.version, "cuda", "12.8")  # a CUDA build without a visible GPU
    with pytest.raises(UserError, match="sees no CUDA device: check the GPU driver"):
        resolve_device("cuda:0")


# ------------------------------------------------------------------------------ 5. compile
def test_compilation_is_announced_and_kept_out_of_the_eta_and_steps_per_second(tmp_path, capsys, tiny, make_cfg):
    import re
    import time

    trainer = build_trainer(make_cfg(tiny(tmp_path, 20, **{"logger.progress": "true"})))
    update, calls = trainer.algorithm.update, []

    def slow_first_call(batch, step):  # what a compiled update does: its first call compiles
        if not calls:
            time.sleep(2.0)
        calls.append(step)
        return update(batch, step)

    trainer.algorithm.update = slow_first_call
    trainer.algorithm.compiled = True
    trainer.run()
    out, err = capsys.readouterr()
    assert "compiling the update" in out and "about 30 s on a small CPU" in out and "compiled in" in out
    elapsed = re.findall(r"\| 20/20 \[(\d\d):(\d\d)<", err)
    assert elapsed and elapsed[-1] == ("00", "00"), err[-500:]  # the bar's clock starts after compilation
    rows = map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
    rates = [r["train/steps_per_second"] for r in rows if "train/steps_per_second" in r]
    assert len(rates) == 2 and min(rates) > 10  # with the compilation, the first 10 steps took more than 2 s
    assert json.loads((tmp_path / "results.json").read_text())["compile_time_s"] >= 2.0


# ------------------------------------------------------------------------------ 6. the toy recipe
def test_toy_recipe_writes_into_its_run_folder_only(tmp_path, monkeypatch, make_cfg):
    import importlib.util

    tracked = [ROOT / "docs" / "figures" / "toy.png", ROOT / "docs" / "toy_metrics.md"]
    before = {p: p.read_bytes() for p in tracked}
    spec = importlib.util.spec_from_file_location("ppl_toy_recipe", ROOT / "recipes" / "ppl_toy.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    monkeypatch.chdir(tmp_path)  # relative out_dir: from the current folder, as every recipe's run_dir
    overrides = ["toy.critic_steps=20", "toy.policy_steps=20", "output.progress=false"]
    recipe.main.__wrapped__(make_cfg(overrides, "toy"))  # the recipe's body without hydra's launcher
    assert {p: p.read_bytes() for p in tracked} == before
    out = tmp_path / "runs" / "toy" / "seed0"
    assert (out / "figures" / "toy.png").stat().st_size > 0
    assert "(seed 0, 20 critic steps, 20 policy steps" in (out / "toy_metrics.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_readme_gives_the_toy_numbers_as_measured_ranges():
    readme = (ROOT / "README.md").read_text()
    assert "0.029-0.040" in readme and "python recipes/ppl_toy.py out_dir=docs" in readme


# ------------------------------------------------------------------------------ 7. warnings, temp files, plots
def test_the_adroit_notice_shows_only_for_adroit_envs():
    code = ("import sys; from ppl_torchrl.envs.pointmaze import PointMazeGoalEnv; PointMazeGoalEnv('umaze'); "
            "from ppl_torchrl.envs import make_env, make_eval_env; make_env('gr-antmaze-umaze', 5); "
            "print('--adroit--', file=sys.stderr); make_eval_env('door-human-v1'); make_eval_env('pen-human-v1')")
    res = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    others, adroit = res.stderr.split("--adroit--")
    assert "AdroitHand" not in others  # PointMaze and AntMaze import gymnasium-robotics too
    assert adroit.count("AdroitHandRelocateDense-v1") == 1 and "restores D4RL's reward sign" in adroit


def test_maze_envs_leave_no_temporary_files(tmp_path, monkeypatch):
    from ppl_torchrl.envs import make_env
    from ppl_torchrl.envs.pointmaze import PointMazeGoalEnv

    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    PointMazeGoalEnv("umaze").reset(seed=0)
    make_env("gr-antmaze-umaze", 5).rollout(2)
    assert list(system_tmp.iterdir()) == []
    assert tempfile.gettempdir() == str(system_tmp)


def test_a_curve_with_one_evaluation_point_is_drawn(tmp_path, monkeypatch):
    from ppl_torchrl.reporting import aggregate
    from ppl_torchrl.reporting.aggregate import Cell

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 100, "eval/normalized_score_mean": 42.0}) + "\n")
    figures = []

    def keep(fig, path):
        figures.append(fig)
        return path

    monkeypatch.setattr(aggregate, "save_figure", keep)
    cell = Cell(suite="pointmaze-gen", dataset=DATASET, method="ppl", values=[42.0], seeds=[0], run_dirs=[run_dir])
    aggregate.plot_curves([cell], tmp_path)
    (fig,) = figures
    ax = fig.axes[0]
    drawn = [line for line in ax.get_lines() if line.get_marker() not in (None, "None", "", " ")
             and list(line.get_xdata()) == [100]]
    assert drawn and list(drawn[0].get_ydata()) == [42.0]


def test_a_resume_that_would_not_continue_the_same_training_is_refused(tmp_path, tiny, make_cfg):
    """A checkpoint's optimizer keeps the learning rate it was trained with, so a changed lr on resume would be
    ignored while results.json recorded it; a run already past the steps asked for would be rewritten as finished
    at a budget it never had. Both are one line, and leave the folder as it was."""
    from ppl_torchrl.errors import ConfigError

    train(make_cfg(tiny(tmp_path, 40, **{"checkpoint.stop_after": 20})))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file())
    with pytest.raises(ConfigError, match=r"was trained with optim.actor_lr=.*this command says 0.3.*another run_dir"):
        build_trainer(make_cfg(tiny(tmp_path, 40, **{"resume": "true", "optim.actor_lr": 0.3})))
    with pytest.raises(ConfigError, match=r"is at step 20, past the 10 steps this command asks for"):
        build_trainer(make_cfg(tiny(tmp_path, 10, **{"resume": "true"})))
    assert sorted((p.name, p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()) == before
    # what a resume may change: how far, how it is evaluated, logged and checkpointed
    trainer = build_trainer(make_cfg(tiny(tmp_path, 60, **{"resume": "true", "eval.every": 30,
                                                           "checkpoint.every": 30, "logger.log_every": 30})))
    assert trainer.step == 20 and trainer.run()["steps"] == 60
