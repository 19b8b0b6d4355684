"""Generated PointMaze datasets: contents, semantics, reproducibility and the TorchRL load path."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

from ppl_torchrl.datagen import (  # noqa: E402
    GENERATED_IDS,
    ensure_generated_dataset,
    generate_dataset,
    generated_path,
)
from ppl_torchrl.datagen.planner import BEHAVIORS, MazeGraph, WaypointPlanner  # noqa: E402
from ppl_torchrl.datagen.pointmaze import POINTMAZE_DATASETS, episode_behaviors, generate_pointmaze  # noqa: E402
from ppl_torchrl.datagen.writers import array_digest, file_digest  # noqa: E402
from ppl_torchrl.envs.pointmaze import GOAL_RADIUS, MAZES, make_pointmaze_env  # noqa: E402
from ppl_torchrl.registry.datasets import POINTMAZE_REFERENCE, get_dataset_spec  # noqa: E402

MAZE2D_STEPS = {"umaze": 300, "medium": 600, "large": 800}  # D4RL maze2d's time limits
UMAZE = POINTMAZE_DATASETS["pointmaze-umaze-gen-v0"]
PLAY = POINTMAZE_DATASETS["pointmaze-umaze-play-gen-v0"]
MIXED = POINTMAZE_DATASETS["pointmaze-umaze-mixed-gen-v0"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """10 episodes x 300 steps of the mixed dataset, written to HDF5 and read back."""
    from ppl_torchrl.data import read_d4rl_hdf5

    path = tmp_path_factory.mktemp("gen") / "mixed.hdf5"
    out = generate_dataset(MIXED.dataset_id, path, seed=0, num_episodes=10, progress=False)
    return path, out, read_d4rl_hdf5(path)


def test_registry_entries():
    for did in ("pointmaze-umaze-gen-v0", "pointmaze-medium-gen-v0", "pointmaze-large-gen-v0",
                "pointmaze-medium-play-gen-v0", "pointmaze-large-diverse-gen-v0", "pointmaze-umaze-mixed-gen-v0"):
        assert did in GENERATED_IDS
        spec = get_dataset_spec(did)
        assert spec.source == "generated" and spec.suite == "pointmaze-gen"
        assert (spec.max_episode_steps, spec.ref_min, spec.ref_max) == POINTMAZE_REFERENCE[spec.env_name]
        maze = spec.env_name.split("-")[1]
        assert spec.max_episode_steps == POINTMAZE_DATASETS[did].episode_steps == MAZE2D_STEPS[maze]
    assert all(did.endswith("-gen-v0") for did in GENERATED_IDS)


def test_bfs_next_cell_on_umaze():
    # U-maze free cells: row 1 (1,1)(1,2)(1,3); (2,3); row 3 (3,1)(3,2)(3,3). From (3,1) to (1,1)
    # the only path is along the U: 6 moves.
    g = MazeGraph(MAZES["umaze"])
    assert g.distance((3, 1), (1, 1)) == 6
    path, c = [], (3, 1)
    while c != (1, 1):
        c = g.next_cell(c, (1, 1))
        path.append(c)
    assert path == [(3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]
    with pytest.raises(ValueError, match="not a free cell"):
        g.next_cell((0, 0), (1, 1))


def test_episode_behaviors_exact_counts():
    rng = np.random.default_rng(0)
    plan = episode_behaviors(MIXED, 10, rng)  # 3 / 3.5 / 3.5 -> largest remainder, ties to the first listed
    assert (plan.count("planner"), plan.count("wander"), plan.count("detour")) == (3, 4, 3)
    plan = episode_behaviors(MIXED, 20, rng)
    assert (plan.count("planner"), plan.count("wander"), plan.count("detour")) == (6, 7, 7)


def test_contents_shapes_boundaries_and_rewards(mixed):
    _, out, data = mixed
    n, steps = 3000, MIXED.episode_steps
    assert data["observations"].shape == (n, 4) and data["next_observations"].shape == (n, 4)
    assert data["actions"].shape == (n, 2) and data["rewards"].shape == (n,)
    assert data["observations"].dtype == np.float32
    assert np.abs(data["actions"]).max() <= 1.0
    # Fixed-length episodes: a timeout on every 300th step only, never a terminal.
    assert np.flatnonzero(data["timeouts"]).tolist() == list(range(steps - 1, n, steps))
    assert not data["terminals"].any()
    # Inside an episode the next observation is the following row; across a boundary it is not.
    inside = ~data["timeouts"][:-1]
    np.testing.assert_array_equal(data["next_observations"][:-1][inside], data["observations"][1:][inside])
    starts = data["observations"][steps::steps]
    assert np.all(starts[:, 2:] == 0.0)  # episodes start at rest
    # Rewards recomputed from the next positions and the fixed goal (D4RL maze2d sparse reward).
    goal = MAZES["umaze"].goal_xy
    dist = np.linalg.norm(data["next_observations"][:, :2].astype(np.float64) - goal, axis=1)
    np.testing.assert_array_equal(data["rewards"], (dist <= GOAL_RADIUS).astype(np.float32))
    # D4RL info keys agree with the observation; the mixed dataset's goal is the fixed one.
    np.testing.assert_array_equal(data["infos/qpos"], data["observations"][:, :2])
    np.testing.assert_array_equal(data["infos/qvel"], data["observations"][:, 2:])
    np.testing.assert_allclose(data["infos/goal"], np.broadcast_to(goal, (n, 2)))
    # Starts are never in the goal cell; returns per behaviour match the stats.
    maze = MAZES["umaze"]
    assert all(maze.xy_to_cell(s[:2]) != maze.goal_cell for s in data["observations"][::steps])
    for name, r in out.stats["returns"].items():
        label = BEHAVIORS[name].label
        ep_ret = data["rewards"].reshape(-1, steps).sum(1)[data["infos/behavior"][::steps] == label]
        assert r["episodes"] == len(ep_ret) and r["mean"] == pytest.approx(ep_ret.mean())


def test_known_behavior_share_and_quality_order(mixed):
    _, out, data = mixed
    steps = MIXED.episode_steps
    beh = data["infos/behavior"]
    # constant within an episode
    assert (beh.reshape(-1, steps) == beh[::steps, None]).all()
    shares = {name: float(np.mean(beh == BEHAVIORS[name].label)) for name, _ in MIXED.behaviors}
    assert shares == {"planner": 0.3, "wander": 0.4, "detour": 0.3}
    attrs = read_attrs(mixed[0])
    np.testing.assert_allclose(attrs["behavior_shares"], [0.3, 0.4, 0.3])
    r = out.stats["returns"]
    assert r["planner"]["mean"] > r["wander"]["mean"] and r["planner"]["mean"] > r["detour"]["mean"]


def read_attrs(path):
    from ppl_torchrl.data import validate_d4rl_hdf5

    return validate_d4rl_hdf5(path).attrs


def test_same_seed_same_data_different_seed_different(tmp_path, mixed):
    path0, out0, _ = mixed
    again = generate_dataset(MIXED.dataset_id, tmp_path / "again.hdf5", seed=0, num_episodes=10, progress=False)
    assert again.stats["array_sha256"] == out0.stats["array_sha256"]
    assert file_digest(tmp_path / "again.hdf5") == file_digest(path0)  # byte-identical files
    other = generate_pointmaze(MIXED, seed=1, num_episodes=10, progress=False)
    assert array_digest(other.data) != out0.stats["array_sha256"]
    assert not np.array_equal(other.data["observations"], out0.data["observations"])


def test_torchrl_rollout_backend_gives_identical_data():
    a = generate_pointmaze(UMAZE, seed=3, num_episodes=2, episode_steps=50, progress=False)
    b = generate_pointmaze(UMAZE, seed=3, num_episodes=2, episode_steps=50, backend="torchrl", progress=False)
    assert array_digest(a.data) == array_digest(b.data)


def test_noise_free_planner_reaches_goal_on_umaze():
    env = make_pointmaze_env("pointmaze-umaze", seed=0)
    rng = np.random.default_rng(0)
    planner = WaypointPlanner(MAZES["umaze"], "expert", "fixed")
    reached = []
    for _ in range(10):
        obs, _ = env.reset()
        planner.begin_episode(obs[:2], rng)
        done, success = False, False
        while not done:
            obs, r, term, trunc, info = env.step(planner.act(obs, rng))
            success |= info["success"]
            assert r == float(info["success"])
            done = term or trunc
        reached.append(success and info["success"])  # got there and is still there at the time limit
    assert np.mean(reached) >= 0.9


def test_play_planner_visits_several_goals():
    out = generate_pointmaze(PLAY, seed=0, num_episodes=3, progress=False)
    goals = {tuple(MAZES["umaze"].xy_to_cell(g)) for g in out.data["infos/goal"]}
    assert len(goals) >= 3 and goals <= set(MAZES["umaze"].play_goal_cells)


def test_loads_through_torchrl_replay_buffer(tmp_path, mixed):
    pytest.importorskip("torchrl")
    from ppl_torchrl.data.d4rl import CORLD4RLExperienceReplay
    from ppl_torchrl.keys import ACTION, NEXT_ACTION, NEXT_OBSERVATION, OBSERVATION, REWARD, TERMINATED

    path, _, data = mixed
    rb = CORLD4RLExperienceReplay(MIXED.dataset_id, batch_size=64, hdf5_path=path, root=tmp_path, progress=False)
    assert len(rb) == len(data["rewards"]) - 10  # CORL drops each episode's timeout row
    stats = rb.dataset_stats
    assert stats.num_dropped_timeouts + stats.num_dropped_last == 10 and stats.num_terminals == 0
    batch = rb.sample()
    for key in (OBSERVATION, ACTION, NEXT_OBSERVATION, NEXT_ACTION, REWARD, TERMINATED):
        assert key in batch.keys(True), key
    assert batch[OBSERVATION].shape == (64, 4) and batch[ACTION].shape == (64, 2)
    goal = MAZES["umaze"].goal_xy
    dist = np.linalg.norm(batch[NEXT_OBSERVATION][:, :2].double().numpy() - goal, axis=1)
    np.testing.assert_array_equal(batch[REWARD].reshape(-1).numpy(), (dist <= GOAL_RADIUS).astype(np.float32))


def test_ensure_generated_dataset_caches_and_regenerates(tmp_path, monkeypatch):
    import ppl_torchrl.datagen as dg

    small = dict(POINTMAZE_DATASETS)
    small[UMAZE.dataset_id] = type(UMAZE)(**{**UMAZE.__dict__, "num_episodes": 2, "episode_steps": 20})
    monkeypatch.setattr("ppl_torchrl.datagen.pointmaze.POINTMAZE_DATASETS", small)
    monkeypatch.setenv("PPL_TORCHRL_DATA", str(tmp_path))
    path = ensure_generated_dataset(UMAZE.dataset_id, progress=False)
    assert path == tmp_path / "pointmaze-umaze-gen-v0-seed0.hdf5" == generated_path(UMAZE.dataset_id)
    mtime = path.stat().st_mtime_ns
    assert ensure_generated_dataset(UMAZE.dataset_id, progress=False) == path
    assert path.stat().st_mtime_ns == mtime  # reused, not regenerated
    path.write_bytes(b"truncated")  # a broken file is regenerated
    assert ensure_generated_dataset(UMAZE.dataset_id, progress=False) == path
    assert read_attrs(path)["num_episodes"] == 2
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind
    assert dg.generated_path(UMAZE.dataset_id, seed=1) != path


def test_minari_copy_matches_hdf5(tmp_path, mixed, monkeypatch):
    minari = pytest.importorskip("minari")
    path, out, data = mixed
    generate_dataset(MIXED.dataset_id, tmp_path / "m.hdf5", seed=0, num_episodes=10, progress=False,
                     minari=True, minari_root=tmp_path / "minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    ds = minari.load_dataset("ppl-torchrl/pointmaze-umaze-mixed-gen-v0")
    assert ds.total_episodes == 10 and ds.total_steps == 3000
    ep = next(iter(ds.iterate_episodes()))
    np.testing.assert_array_equal(ep.observations[:-1], data["observations"][:300])
    np.testing.assert_array_equal(ep.observations[-1], data["next_observations"][299])
    np.testing.assert_array_equal(ep.rewards, data["rewards"][:300])
    assert ep.truncations[-1] and not ep.terminations.any()
    assert list(ep.infos["behavior"][1:]) == list(data["infos/behavior"][:300])


def test_bad_input_errors(tmp_path):
    with pytest.raises(KeyError, match="not a generated dataset id"):
        ensure_generated_dataset("pointmaze-umaze-v1", root=tmp_path)
    with pytest.raises(ValueError, match="seed"):
        generate_pointmaze(UMAZE, seed=-1)
    with pytest.raises(ValueError, match="backend"):
        generate_pointmaze(UMAZE, backend="jax")
    with pytest.raises(ValueError, match="Unknown PointMaze env name"):
        make_pointmaze_env("pointmaze-huge")
    with pytest.raises(ValueError, match="finite"):
        make_pointmaze_env("pointmaze-umaze").step([np.nan, 0.0])
    with pytest.raises(ValueError, match="sum to 1"):
        type(UMAZE)("x-gen-v0", "umaze", "play", (("planner", 0.5),), 1, 10)


def test_collect_recipe_writes_small_dataset(tmp_path):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    recipes = Path(__file__).resolve().parents[1] / "recipes"
    import importlib.util

    spec = importlib.util.spec_from_file_location("collect_recipe", recipes / "collect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with initialize_config_dir(config_dir=str(recipes / "config"), version_base="1.3"):
        cfg = compose("collect", overrides=[
            "dataset_id=pointmaze-umaze-mixed-gen-v0", "num_episodes=3", f"out_dir={tmp_path}",
            "minari=false", "progress=false"])
    (report,) = module.run(cfg)
    assert report["transitions"] == 900 and sum(r["episodes"] for r in report["returns"].values()) == 3
    assert (tmp_path / "pointmaze-umaze-mixed-gen-v0-seed0.hdf5").is_file()
    with initialize_config_dir(config_dir=str(recipes / "config"), version_base="1.3"):
        cfg = compose("collect", overrides=["dataset_id=pointmaze-nope-gen-v0"])
        bad_seed = compose("collect", overrides=["seed=-1", "num_episodes=2", f"out_dir={tmp_path}"])
    from ppl_torchrl.errors import ConfigError

    with pytest.raises(ConfigError, match="Unknown generated dataset id"):
        module.run(cfg)
    with pytest.raises(ConfigError, match="seed must be an integer"):  # before anything is generated
        module.run(bad_seed)
