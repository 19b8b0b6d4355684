"""OGBench single-task data and evaluation: our buffers beside ogbench's own loader and relabelling.

Files are written by a plain numpy helper in OGBench's layouts (the generator's step table, and the compact
layout with ``valids``), never by our writer.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

ogbench = pytest.importorskip("ogbench", reason="ogbench is not installed (on Python 3.13+ it cannot be: no labmaze wheel)")

from ppl_torchrl import keys  # noqa: E402
from ppl_torchrl.data import make_offline_replay_buffer  # noqa: E402
from ppl_torchrl.data.buffer import OGBenchSource  # noqa: E402
from ppl_torchrl.data.ogbench import OGBenchFileError  # noqa: E402
from ppl_torchrl.registry import parse_ogbench_id  # noqa: E402

TASK_ID = "cube-single-play-singletask-task2-v0"
EPISODES, STEPS = 4, 6  # rows per episode (the last row of each is not a transition)


def _cube_target(dataset_id: str) -> np.ndarray:
    env = ogbench.make_env_and_datasets(dataset_id, env_only=True)
    env.reset()
    target = env.unwrapped._data.mocap_pos.copy()[0]
    env.close()
    return target


def _raw_table(seed: int = 0) -> dict[str, np.ndarray]:
    """OGBench's on-disk step table for cube-single: terminals = 1 on the last row of each episode."""
    rng = np.random.default_rng(seed)
    n = EPISODES * STEPS
    terminals = np.zeros(n, dtype=bool)
    terminals[STEPS - 1::STEPS] = True
    qpos = rng.normal(size=(n, 21)).astype(np.float32) * 0.05
    qpos[:, 14:17] = [0.3, -0.1, 0.02]  # the cube, away from every target
    target = _cube_target(TASK_ID)
    qpos[[2, 3, 5, 13], 14:17] = target + 0.01  # solved at rows 2, 3, 5 (an episode's last row) and 13
    return {
        "observations": rng.normal(size=(n, 28)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, 5)).astype(np.float32),
        "terminals": terminals,
        "qpos": qpos,
        "qvel": rng.normal(size=(n, 20)).astype(np.float32),
    }


def _compact(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The layout of ``ogbench.load_dataset(compact_dataset=True)``, saved as is (README, "Dataset APIs")."""
    t = table["terminals"].astype(np.float32)
    out = dict(table)
    out["valids"] = 1.0 - t
    out["terminals"] = np.minimum(t + np.concatenate([t[1:], [1.0]]), 1.0)
    return out


def _write(folder, name, table):
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{name}.npz", **table)
    return folder / f"{name}.npz"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OGBENCH_DATASET_DIR", str(tmp_path / "ogbench"))
    monkeypatch.setenv("PPL_TORCHRL_DATA", str(tmp_path / "cache"))
    return tmp_path / "ogbench"


def _storage(buffer):
    return buffer.storage._storage


def test_ids_parse():
    p = parse_ogbench_id("cube-single-play-singletask-v0")
    assert (p.family, p.kind, p.task, p.generated) == ("cube-single", "play", 2, False)
    assert p.env_id == "cube-single-singletask-task2-v0" and p.dataset_name == "cube-single-play-v0"
    g = parse_ogbench_id("puzzle-3x3-play-gen-singletask-v0")
    assert (g.task, g.generated, g.dataset_name) == (4, True, "puzzle-3x3-play-gen-v0")
    assert parse_ogbench_id("pointmaze-medium-navigate-singletask-task5-v0").env_id == \
        "pointmaze-medium-singletask-task5-v0"
    for bad in ("cube-single-play-v0", "cube-single-navigate-singletask-v0", "cube-single-play-singletask-task7-v0",
                "hopper-medium-v2", "antmaze-giant-explore-singletask-task1-v0"):  # OGBench has no giant explore
        assert parse_ogbench_id(bad) is None
    assert parse_ogbench_id("antmaze-teleport-explore-singletask-task1-v0") is not None


def test_regular_file_matches_ogbench_loader_and_relabelling(data_dir):
    table = _raw_table()
    path = _write(data_dir, "cube-single-play-v0", table)
    _write(data_dir, "cube-single-play-v0-val", table)  # ogbench's loader reads both splits
    rb = make_offline_replay_buffer(TASK_ID, batch_size=8, seed=0, progress=False)
    s = _storage(rb)
    env, ref, _ = ogbench.make_env_and_datasets(TASK_ID, dataset_path=str(path))
    env.close()
    n = EPISODES * (STEPS - 1)
    assert len(s) == n == len(ref["observations"])  # the last row of each episode is not a transition
    np.testing.assert_array_equal(s[keys.OBSERVATION].numpy(), ref["observations"])
    np.testing.assert_array_equal(s[keys.NEXT_OBSERVATION].numpy(), ref["next_observations"])
    np.testing.assert_allclose(s[keys.ACTION].numpy(), np.clip(ref["actions"], -1 + 1e-5, 1 - 1e-5))
    np.testing.assert_array_equal(s[keys.REWARD].numpy()[:, 0], ref["rewards"])
    # bootstrapping stops exactly where ogbench's mask is 0 (task solved), never at an episode's end
    np.testing.assert_array_equal(s[keys.TERMINATED].numpy()[:, 0], ref["masks"] == 0)
    assert s[keys.TERMINATED].numpy()[:, 0].tolist() == [i in (2, 3, 11) for i in range(n)]  # rows 2, 3, 13
    assert not s[keys.TRUNCATED].any() and torch.equal(s[keys.DONE], s[keys.TERMINATED])
    assert set(np.unique(ref["rewards"])) == {-1.0, 0.0}
    # the next action is the data's action at s' -- also at an episode's last transition, where it is the
    # action kept on the episode's last row (FQL's actions[i + 1] would be the next episode's first action)
    rows = np.flatnonzero(~table["terminals"])
    np.testing.assert_allclose(s[keys.NEXT_ACTION].numpy(),
                               np.clip(table["actions"][rows + 1], -1 + 1e-5, 1 - 1e-5))
    last = STEPS - 2  # episode 0's last transition
    assert not np.allclose(s[keys.NEXT_ACTION][last].numpy(), s[keys.ACTION][last + 1].numpy())
    batch = rb.sample()
    assert batch.batch_size == torch.Size([8]) and all(k in batch.keys(True) for k in keys.BATCH_KEYS)


def test_compact_layout_loads_the_same_transitions(data_dir, tmp_path):
    table = _raw_table(1)
    regular = _write(data_dir, "cube-single-play-v0", table)
    compact = _write(tmp_path / "elsewhere", "mine", _compact(table))
    a = _storage(make_offline_replay_buffer(OGBenchSource(TASK_ID, regular), batch_size=4, progress=False))
    b = _storage(make_offline_replay_buffer(OGBenchSource(TASK_ID, compact), batch_size=4, progress=False))
    assert len(a) == len(b) == EPISODES * (STEPS - 1)
    for k in (keys.OBSERVATION, keys.ACTION, keys.NEXT_OBSERVATION, keys.NEXT_ACTION, keys.REWARD, keys.TERMINATED):
        assert torch.equal(a[k], b[k]), k


def test_val_split_reads_the_val_file(data_dir):
    _write(data_dir, "cube-single-play-v0", _raw_table(0))
    val = _raw_table(2)
    _write(data_dir, "cube-single-play-v0-val", val)
    s = _storage(make_offline_replay_buffer(OGBenchSource(TASK_ID, split="val"), batch_size=4, progress=False))
    np.testing.assert_array_equal(s[keys.OBSERVATION].numpy(), val["observations"][~val["terminals"]])


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("damage, expected", [
    (lambda t: t.pop("qpos"), "missing key"),
    (lambda t: t.update(actions=t["actions"][:-1]), "different numbers of rows"),
    (lambda t: t["observations"].__setitem__((3, 0), np.nan), "NaN"),
    (lambda t: t["terminals"].__setitem__(-1, False), "truncated"),
])
def test_bad_files_give_one_line(data_dir, damage, expected):
    table = _raw_table()
    damage(table)
    _write(data_dir, "cube-single-play-v0", table)
    with pytest.raises(OGBenchFileError) as err:
        make_offline_replay_buffer(TASK_ID, batch_size=4, progress=False)
    assert expected in _one_line(err)


def test_truncated_and_missing_files_give_one_line(data_dir):
    path = _write(data_dir, "cube-single-play-v0", _raw_table())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(OGBenchFileError) as err:
        make_offline_replay_buffer(TASK_ID, batch_size=4, progress=False)
    assert "truncated or corrupt" in _one_line(err)
    with pytest.raises(FileNotFoundError) as err:
        make_offline_replay_buffer("scene-play-singletask-v0", batch_size=4, progress=False, download=False)
    assert f"put scene-play-v0.npz in {data_dir}" in _one_line(err)
    with pytest.raises(FileNotFoundError) as err:
        make_offline_replay_buffer("scene-play-gen-singletask-v0", batch_size=4, progress=False)
    assert "recipes/collect.py dataset_id=scene-play-gen-v0" in _one_line(err)


def test_cache_fingerprint_keeps_the_entries_earlier_versions_compared(tmp_path):
    """An import cached by an earlier version is reused: the entries compared are the ones it recorded."""
    from ppl_torchrl.data.ogbench import _fingerprint

    path = tmp_path / "cube-single-play-v0.npz"
    path.write_bytes(b"PK")
    assert set(_fingerprint(path, 1e-5)) == {"file", "size", "mtime_ns", "action_clip_eps", "ogbench"}


def test_episode_steps_are_the_installed_registrations():
    """The registry's time limits (so that specs need no OGBench) are OGBench's own, for every single-task env."""
    import gymnasium as gym

    from ppl_torchrl.registry.ogbench_ids import EPISODE_STEPS, ogbench_single_task_ids

    ids = ogbench_single_task_ids()
    assert {parse_ogbench_id(i).family for i in ids} == set(EPISODE_STEPS)
    for dataset_id in ids:
        parsed = parse_ogbench_id(dataset_id)
        assert gym.registry[parsed.env_id].max_episode_steps == EPISODE_STEPS[parsed.family], dataset_id


def test_eval_specs_and_success_scored_env():
    from ppl_torchrl.envs import make_eval_env
    from ppl_torchrl.evaluation import evaluate_policy
    from ppl_torchrl.registry import get_dataset_spec

    spec = get_dataset_spec("cube-single-play-gen-singletask-v0@post")
    assert (spec.env_name, spec.max_episode_steps, spec.score) == \
        ("ogbench/cube-single-singletask-task2-v0@post", 200, "success")
    assert get_dataset_spec("puzzle-3x3-play-singletask-v0@pre").env_name == "ogbench/puzzle-3x3-singletask-task4-v0@pre"
    env = make_eval_env("pointmaze-medium-navigate-singletask-task1-v0@pre", num_envs=2, seed=0)
    assert env.action_spec.shape[-1] == 2

    from tensordict.nn import TensorDictModule

    still = TensorDictModule(lambda obs: torch.zeros(*obs.shape[:-1], 2), [keys.OBSERVATION], [keys.ACTION])
    out = evaluate_policy(still, env, 2, seed=0)
    assert out["success_rate"] == 0.0 and out["normalized_score_mean"] == 0.0
    assert (out["lengths"] == 1000).all()  # ran to OGBench's time limit


def _recipe_cfg(overrides):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    config_dir = Path(__file__).resolve().parents[1] / "recipes" / "config"
    with initialize_config_dir(str(config_dir), version_base="1.3"):
        return compose(config_name="ppl_ogbench", overrides=overrides)


def _tiny(run_dir, **extra):
    o = {"optim.steps": 10, "optim.batch_size": 8, "model.hidden_dim": 16, "model.num_hidden": 2,
         "eval.episodes": 1, "eval.num_envs": 1, "eval.every": 10, "logger.backend": "", "logger.progress": "false",
         "logger.log_every": 5, "checkpoint.every": 10, "probe.size": 0, "compile.enabled": "false",
         "run_dir": str(run_dir)}
    o.update(extra)
    return [f"{k}={v}" for k, v in o.items()]


@pytest.mark.parametrize("layout", ["regular", pytest.param("compact", marks=pytest.mark.slow)])  # compact = regular: tested above
def test_recipe_trains_and_evaluates_a_file_end_to_end(data_dir, tmp_path, layout):
    from ppl_torchrl.training.recipe import train

    table = _raw_table()
    path = _write(tmp_path / "files", "mine", table if layout == "regular" else _compact(table))
    cfg = _recipe_cfg(_tiny(tmp_path / "run", dataset="cube-single-play-singletask-task2-v0",
                            **{"dataset.path": str(path), "loss": "rebrac", "dataset.success_timing": "post"}))
    assert cfg.model.hidden_dim == 16 and cfg.optim.gamma == 0.99 and cfg.eval.episodes == 1
    results = train(cfg)
    final = results["final_eval"]
    assert results["steps"] == 10 and final["num_episodes"] == 1
    assert final["success_rate"] in (0.0, 1.0) and final["normalized_score_mean"] == 100 * final["success_rate"]
    assert 1 <= final["lengths"][0] <= 200  # cube-single's time limit


def test_fql_settings_compose():
    cfg = _recipe_cfg(["dataset=humanoidmaze-medium-navigate-singletask-v0", "loss=rebrac"])
    assert (cfg.model.hidden_dim, cfg.model.num_hidden, cfg.optim.gamma) == (512, 4, 0.995)
    assert (cfg.optim.actor_lr, cfg.optim.critic_lr, cfg.eval.episodes) == (3e-4, 3e-4, 50)
    assert (cfg.hparams.actor_bc_coef, cfg.hparams.critic_bc_coef) == (0.01, 0.01)  # FQL paper Table 6
    cfg = _recipe_cfg([])
    assert cfg.dataset.id == "cube-single-play-gen-singletask-v0" and cfg.optim.gamma == 0.99
    assert (cfg.hparams.actor_bc_coef, cfg.hparams.critic_bc_coef) == (1.0, 0.0)  # cube-single's


@pytest.mark.parametrize("dataset, alphas", [
    ("antmaze-large-navigate-singletask-task3-v0", (0.003, 0.01)), ("cube-double-play-singletask-v0", (0.1, 0.0)),
    ("scene-play-gen-singletask-task1-v0", (0.1, 0.01)), ("puzzle-4x4-play-singletask-task5-v0", (0.3, 0.01))])
def test_rebrac_bc_coefficients_are_the_fql_papers_per_environment(dataset, alphas):
    for loss in ("rebrac", "ppl"):  # PPL^R's actor keeps ReBRAC's BC term and coefficient
        cfg = _recipe_cfg([f"dataset={dataset}", f"loss={loss}"])
        assert (cfg.hparams.actor_bc_coef, cfg.hparams.critic_bc_coef) == alphas
        assert (cfg.loss.actor_bc_coef, cfg.loss.critic_bc_coef) == alphas


def test_data_env_mismatch_fails_before_training(data_dir, tmp_path):
    from ppl_torchrl.errors import is_user_error
    from ppl_torchrl.training.recipe import train

    path = _write(tmp_path / "files", "mine", _raw_table())
    cfg = _recipe_cfg(_tiny(tmp_path / "run", dataset="cube-single-play-singletask-task2-v0",
                            **{"dataset.path": str(path), "dataset.eval_id": "pointmaze-medium-navigate-singletask-v0@pre"}))
    with pytest.raises(Exception) as err:
        train(cfg)
    assert is_user_error(err.value) and "28" in str(err.value)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("sweep, runs", [("ogbench_fql_rebrac", 400), ("ogbench_fql_ppl", 1200)])
def test_fql_table_sweeps(sweep, runs):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    config_dir = Path(__file__).resolve().parents[1] / "recipes" / "config"
    with initialize_config_dir(str(config_dir), version_base="1.3"):
        cfg = compose(config_name="ppl_ogbench", overrides=[f"+sweep={sweep}"], return_hydra_config=True)
        params = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
        params["seed"] = [str(s) for s in range(8)]
        assert np.prod([len(v) for v in params.values()]) == runs
        for d in params["dataset"]:
            assert (config_dir / "dataset" / f"{d}.yaml").exists() and parse_ogbench_id(d) is not None
        job = compose(config_name="ppl_ogbench", overrides=[f"+sweep={sweep}", f"dataset={params['dataset'][-1]}",
                                                            "seed=7", f"loss={params['loss'][0]}"])
        assert job.run_dir.startswith(f"runs/{sweep}/") and job.run_dir.endswith("seed7") and job.resume == "auto"


def test_regenerated_dataset_is_resumable_and_trains_end_to_end(data_dir, tmp_path, monkeypatch):
    """pointmaze-medium-navigate-gen: OGBench's procedure, interrupted and resumed = uninterrupted; then a recipe run."""
    import ppl_torchrl.datagen.ogbench as gen
    from ppl_torchrl.training.recipe import train

    name = "pointmaze-medium-navigate-gen-v0"
    whole = gen.generate_ogbench_dataset(name, tmp_path / "whole", seed=3, num_episodes=4, chunk=2, progress=False)
    calls, episode = [0], gen._maze_episode

    def interrupted(*args):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return episode(*args)

    monkeypatch.setattr(gen, "_maze_episode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gen.generate_ogbench_dataset(name, data_dir, seed=3, num_episodes=4, chunk=2, progress=False)
    assert not (data_dir / f"{name}.npz").exists() and (data_dir / f".{name}.partial" / "state.pkl").exists()
    monkeypatch.setattr(gen, "_maze_episode", episode)
    resumed = gen.generate_ogbench_dataset(name, data_dir, seed=3, num_episodes=4, chunk=2, progress=False)
    a, b = np.load(whole.train_path), np.load(resumed.train_path)
    assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    assert b["observations"].shape == (4 * 1001, 2) and b["terminals"].sum() == 4  # OGBench's 1001-step episodes
    assert not (data_dir / f".{name}.partial").exists()

    cfg = _recipe_cfg(_tiny(tmp_path / "run", dataset="pointmaze-medium-navigate-gen-singletask-v0"))
    results = train(cfg)
    assert results["steps"] == 10 and results["final_eval"]["lengths"][0] <= 1000


def test_fql_networks_are_module_options():
    """FQL's ReBRAC networks (utils/networks.py): GELU (tanh approximation), variance_scaling(fan_avg, uniform)
    weights with zero biases, the actor's last layer at scale 0.01, LayerNorm after each critic activation."""
    import math

    from torch import nn

    from ppl_torchrl.modules import make_actor, make_qvalue_ensemble

    torch.manual_seed(0)
    actor = make_actor(28, 5, hidden_dim=512, num_hidden=4, activation="gelu", init="fan_avg").module
    linears = [m for m in actor.net if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(512, 28)] + [(512, 512)] * 3 + [(5, 512)]
    for lin, scale in zip(linears, [1.0] * 4 + [0.01]):
        bound = math.sqrt(3 * scale / ((lin.in_features + lin.out_features) / 2))
        assert 0.95 * bound < lin.weight.abs().max() <= bound and not lin.bias.any()
    x = torch.linspace(-4, 4, 101)
    gelu = [m for m in actor.net if not isinstance(m, nn.Linear)][0]
    flax_gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(gelu(x), flax_gelu)
    critic = make_qvalue_ensemble(28, 5, hidden_dim=512, num_hidden=4, activation="gelu", init="fan_avg").module
    kinds = [type(m).__name__ for m in critic.net]
    assert kinds == ["EnsembleLinear", "GELU", "EnsembleLayerNorm"] * 4 + ["EnsembleLinear"]
    last = critic.net[-1]
    assert last.weight.abs().max() <= math.sqrt(3 / ((512 + 1) / 2)) and not last.bias.any()
    with pytest.raises(ValueError, match="activation must be one of"):
        make_actor(3, 2, activation="tanh")


def test_the_harness_builds_fql_networks_from_the_ogbench_suites(make_cfg):
    """model.activation / model.init reach every ReBRAC-family network: GELU with zero biases (fan_avg) on OGBench,
    ReLU with CORL's 0.1 biases everywhere else."""
    from ppl_torchrl.training.algorithms import algorithm_from_config

    def layers(cfg):
        alg = algorithm_from_config(cfg, 28, 5, device="cpu")
        nets = (alg.loss.actor_network, alg.loss.qvalue_network, alg.loss.potential_network)
        return [{type(m).__name__ for m in net.modules()} for net in nets], alg.loss.actor_network_params

    cfg = _recipe_cfg(["loss=ppl", "model.hidden_dim=16", "model.num_hidden=2"])
    assert (cfg.model.activation, cfg.model.init) == ("gelu", "fan_avg")
    kinds, actor = layers(cfg)
    assert all("GELU" in k and "ReLU" not in k for k in kinds)
    assert not any(v.any() for k, v in actor.items(True, True) if k[-1] == "bias")
    kinds, actor = layers(make_cfg(["loss=ppl", "model.hidden_dim=16", "model.num_hidden=2"]))
    assert all("ReLU" in k and "GELU" not in k for k in kinds)
    assert any((v == 0.1).all() for k, v in actor.items(True, True) if k[-1] == "bias")
