"""Files laid out like the real D4RL files, written by a plain h5py writer (not ours), through every loading path.

Each layout (tests/d4rl_files.py) copies what D4RL's own generation scripts write (key names, shapes, dtypes,
scalar ``metadata/*`` entries, behaviour-policy weights, gzip compression); the D4RL source file
is named in each builder and in docs/data.md ("Real D4RL file layouts"). Only the sizes are cut
down (a few hundred rows, short episodes). Every layout is loaded from a path, from a D4RL id
served over a ``file://`` URL and through a recipe's ``dataset.path=``, and compared with a
transcription of D4RL's ``qlearning_dataset`` loop plus CORL's next action.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from d4rl_files import LAYOUTS, Layout, gym_mujoco_v2_medium, maze2d_v1, write_layout, write_plain_h5
from ppl_torchrl.data import (
    D4RL_URLS,
    D4RLFileError,
    make_offline_replay_buffer,
    read_d4rl_hdf5,
    validate_d4rl_hdf5,
)
from ppl_torchrl.keys import (
    ACTION,
    DONE,
    NEXT_ACTION,
    NEXT_OBSERVATION,
    OBSERVATION,
    REWARD,
    TERMINATED,
    TRUNCATED,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test sees the user's ~/.d4rl or cache folders."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl_cache"))
    monkeypatch.setenv("PPL_TORCHRL_DATA", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------------------------
# The reference: D4RL's get_dataset + qlearning_dataset (terminate_on_end=False), with CORL's next action
# ----------------------------------------------------------------------------------------------
def d4rl_get_dataset(path: Path) -> dict:
    """d4rl/offline_env.py OfflineEnv.get_dataset: every dataset, scalars read with [()]; [N, 1] squeezed."""
    out = {}
    with h5py.File(path, "r") as h5:
        names = []
        h5.visititems(lambda k, v: names.append(k) if isinstance(v, h5py.Dataset) else None)
        for k in names:
            try:
                out[k] = h5[k][:]
            except ValueError:
                out[k] = h5[k][()]
    for k in ("rewards", "terminals"):
        if out[k].ndim == 2 and out[k].shape[1] == 1:
            out[k] = out[k][:, 0]
    return out


def d4rl_qlearning_dataset(dataset: dict, max_episode_steps: int | None = None) -> dict:
    """d4rl/__init__.py qlearning_dataset (``env._max_episode_steps`` is ``max_episode_steps``, used by files without
    timeouts) and algorithms/offline/rebrac.py's next_actions."""
    n = dataset["rewards"].shape[0]
    keys = ("observations", "actions", "next_observations", "next_actions", "rewards", "terminals", "rows")
    out = {k: [] for k in keys}
    episode_step = 0
    for i in range(n - 1):
        if "timeouts" in dataset:
            final_timestep = dataset["timeouts"][i]
        else:
            final_timestep = episode_step == max_episode_steps - 1
        if final_timestep:
            episode_step = 0
            continue
        if dataset["terminals"][i]:
            episode_step = 0
        episode_step += 1
        out["observations"].append(dataset["observations"][i].astype(np.float32))
        out["next_observations"].append(dataset["observations"][i + 1].astype(np.float32))
        out["actions"].append(dataset["actions"][i].astype(np.float32))
        out["next_actions"].append(dataset["actions"][i + 1].astype(np.float32))
        out["rewards"].append(dataset["rewards"][i].astype(np.float32))
        out["terminals"].append(bool(dataset["terminals"][i]))
        out["rows"].append(i)
    return {k: np.array(v) for k, v in out.items()}


def check_semantics(buffer, layout: Layout, path: Path) -> None:
    """The buffer's storage equals the reference, field by field, and the counts written by hand."""
    assert len(buffer) == layout.num_transitions
    stats = buffer.dataset_stats
    n = len(layout.entries["rewards"])
    counts = (stats.num_steps, stats.num_transitions, stats.num_terminals)
    assert counts == (n, layout.num_transitions, layout.num_terminals)
    ref = d4rl_qlearning_dataset(d4rl_get_dataset(path), layout.max_episode_steps)
    assert len(ref["rows"]) == layout.num_transitions
    td = buffer[: len(buffer)]
    kept = ref["rows"]
    np.testing.assert_array_equal(td[OBSERVATION][:, 0].numpy(), kept)  # column 0 is the row index
    np.testing.assert_array_equal(td[OBSERVATION].numpy(), ref["observations"])
    np.testing.assert_array_equal(td[ACTION].numpy(), ref["actions"])
    np.testing.assert_array_equal(td[NEXT_OBSERVATION].numpy(), ref["next_observations"])
    np.testing.assert_array_equal(td[REWARD][:, 0].numpy(), ref["rewards"])
    # ("next", "action") = actions[i + 1] of each kept row i
    actions = layout.entries["actions"].astype(np.float32)
    np.testing.assert_array_equal(td[NEXT_ACTION].numpy(), actions[kept + 1])
    np.testing.assert_array_equal(td[NEXT_ACTION].numpy(), ref["next_actions"])
    # ("next", "terminated") from terminals only; nothing is truncated once timeout rows are gone
    terminals = layout.entries["terminals"].astype(bool)
    np.testing.assert_array_equal(td[TERMINATED][:, 0].numpy(), terminals[kept])
    np.testing.assert_array_equal(td[TERMINATED][:, 0].numpy(), ref["terminals"])
    np.testing.assert_array_equal(td[DONE].numpy(), td[TERMINATED].numpy())
    assert not td[TRUNCATED].any()
    assert int(td[TERMINATED].sum()) == layout.num_terminals


# ----------------------------------------------------------------------------------------------
# The three ways users load a file
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_loads_from_a_path(name, tmp_path):
    layout, path = write_layout(name, tmp_path / "files")
    info = validate_d4rl_hdf5(path)
    assert info.metadata == layout.metadata
    assert info.ignored == layout.ignored                       # behaviour-policy weights: not read, not checked
    assert set(info.infos) == {k for k in layout.entries if k.startswith("infos/")}
    buffer = make_offline_replay_buffer(path, batch_size=8, seed=0, progress=False,
                                        max_episode_steps=layout.max_episode_steps)
    check_semantics(buffer, layout, path)
    assert buffer.metadata == layout.metadata                  # kept as the dataset's metadata
    batch = buffer.sample()
    assert batch[OBSERVATION].shape == (8, layout.entries["observations"].shape[1])
    # the second call reuses the import, metadata included
    again = make_offline_replay_buffer(path, batch_size=8, progress=False, max_episode_steps=layout.max_episode_steps)
    assert len(again) == layout.num_transitions and again.metadata == layout.metadata


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_loads_from_a_d4rl_id_over_a_file_url(name, tmp_path, monkeypatch):
    layout, path = write_layout(name, tmp_path / "server")
    monkeypatch.setitem(D4RL_URLS, layout.dataset_id, path.as_uri())
    buffer = make_offline_replay_buffer(layout.dataset_id, batch_size=8, seed=0, progress=False)
    check_semantics(buffer, layout, path)
    assert buffer.metadata == layout.metadata
    assert (tmp_path / "cache" / "d4rl" / layout.dataset_id / "ppl_dataset.json").is_file()
    assert not list((tmp_path / "cache" / "downloads").iterdir())  # the download is removed once imported


def _recipe_overrides(layout: Layout, path: Path, run_dir: Path) -> list[str]:
    return [*layout.recipe_dataset, f"dataset.path={path}", "optim.steps=4", "optim.batch_size=16",
            "model.hidden_dim=16", "eval.episodes=0", "logger.backend=", "logger.progress=false",
            "logger.log_every=2", "checkpoint.every=4", f"run_dir={run_dir}", "compile.enabled=false"]


def _imported_stats(cache: Path) -> dict:
    markers = list((cache / "hdf5").glob("*/ppl_dataset.json"))
    assert len(markers) == 1, markers
    return json.loads(markers[0].read_text())


@pytest.mark.parametrize("name", sorted(set(LAYOUTS) - {"antmaze-v2"}))
def test_layout_trains_through_a_recipe_dataset_path(name, tmp_path):
    """recipes/<recipe>.py dataset=<id> dataset.path=<file>, composed by Hydra and run in-process (a few steps)."""
    from ppl_torchrl.training.recipe import train

    layout, path = write_layout(name, tmp_path / "files")
    with initialize_config_dir(str(ROOT / "recipes" / "config"), version_base="1.3"):
        cfg = compose(config_name=layout.recipe, overrides=_recipe_overrides(layout, path, tmp_path / "run"))
    results = train(cfg)
    assert results["steps"] == 4
    stats = _imported_stats(tmp_path / "cache")
    assert (stats["num_transitions"], stats["num_terminals"]) == (layout.num_transitions, layout.num_terminals)
    assert stats["metadata"] == layout.metadata


def test_antmaze_layout_trains_through_the_recipe_script(tmp_path):
    """The command a user types: python recipes/ppl_antmaze.py dataset=antmaze-umaze-v2 dataset.path=<file>."""
    layout, path = write_layout("antmaze-v2", tmp_path / "files")
    env = dict(os.environ, PPL_TORCHRL_DATA=str(tmp_path / "cache"))
    cmd = [sys.executable, str(ROOT / "recipes" / "ppl_antmaze.py"), *_recipe_overrides(layout, path, tmp_path / "run")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps"] == 4
    stats = _imported_stats(tmp_path / "cache")
    assert (stats["num_transitions"], stats["num_terminals"]) == (297, 9)


# ----------------------------------------------------------------------------------------------
# What is read, and what is not
# ----------------------------------------------------------------------------------------------
def test_read_returns_per_step_arrays_not_metadata(tmp_path):
    layout, path = write_layout("gym-mujoco-v2-medium", tmp_path)
    data = read_d4rl_hdf5(path)
    assert set(data) == {"observations", "next_observations", "actions", "rewards", "terminals", "timeouts",
                         "infos/action_log_probs", "infos/qpos", "infos/qvel"}
    assert data["infos/qpos"].dtype == np.float64 and data["terminals"].dtype == bool
    assert set(read_d4rl_hdf5(path, infos=["infos/qpos"])) == {
        "observations", "next_observations", "actions", "rewards", "terminals", "timeouts", "infos/qpos"}
    # AntMaze's float64 0/1 terminals come back as bool, rewards as they are
    _, path = write_layout("antmaze-v2", tmp_path / "ant")
    data = read_d4rl_hdf5(path)
    assert data["terminals"].dtype == bool and int(data["terminals"].sum()) == 10
    assert data["rewards"].dtype == np.float64 and data["rewards"].shape == (300,)


def test_entries_nobody_reads_are_not_checked(tmp_path):
    """Metadata, an infos/* of another length, NaN in infos, an extra group: the file still loads."""
    layout = gym_mujoco_v2_medium()
    entries = dict(layout.entries)
    entries["infos/qpos"] = entries["infos/qpos"][:-5]                 # another length: listed as ignored
    entries["infos/qvel"] = entries["infos/qvel"].copy()
    entries["infos/qvel"][3, 2] = np.nan                               # not read, so not checked
    entries["extra/notes"] = np.arange(7)
    entries["metadata/seed"] = np.float64(3.5)
    path = write_plain_h5(tmp_path / layout.filename, entries)
    info = validate_d4rl_hdf5(path)
    assert "infos/qpos" in info.ignored and "extra/notes" in info.ignored
    assert info.metadata["metadata/seed"] == 3.5
    assert len(make_offline_replay_buffer(path, batch_size=4, progress=False)) == 254
    # ... unless a caller reads them
    with pytest.raises(D4RLFileError, match=r"every key must have 256 rows .*'infos/qpos': \(251, 6\)"):
        validate_d4rl_hdf5(path, infos=["infos/qpos"])
    with pytest.raises(D4RLFileError, match=r"'infos/qvel' holds NaN or inf \(first at row 3\)"):
        validate_d4rl_hdf5(path, infos=["infos/qvel"])
    with pytest.raises(D4RLFileError, match=r"lacks \['infos/goal'\], which the caller reads"):
        validate_d4rl_hdf5(path, infos=["infos/goal"])


def test_column_rewards_and_flags_are_squeezed(tmp_path):
    """[N, 1] rewards and terminals, which D4RL's get_dataset squeezes, load as [N]."""
    layout = maze2d_v1()
    entries = dict(layout.entries)
    entries["rewards"] = entries["rewards"][:, None]
    entries["terminals"] = entries["terminals"][:, None]
    path = write_plain_h5(tmp_path / layout.filename, entries)
    check_semantics(make_offline_replay_buffer(path, batch_size=4, progress=False), layout, path)


# ----------------------------------------------------------------------------------------------
# Bad files: clear errors, nothing imported
# ----------------------------------------------------------------------------------------------
def _without(key):
    return lambda e: e.pop(key)


def _set(key, value):
    return lambda e: e.__setitem__(key, value)


def _nan(key, index):
    def mutate(e):
        e[key] = e[key].copy()
        e[key][index] = np.nan
    return mutate


@pytest.mark.parametrize(
    "name, mutate, match",
    [
        ("gym-mujoco-v2-medium", _without("rewards"), r"lacks the D4RL key\(s\) \['rewards'\] \(it has \["),
        ("adroit-v1-expert", _without("actions"), r"lacks the D4RL key\(s\) \['actions'\]"),
        ("gym-mujoco-v2-medium", lambda e: e.__setitem__("actions", e["actions"][:-1]),
         r"every key must have 256 rows \(the length of 'rewards'\), but got \{'actions': \(255, 3\)\}"),
        ("antmaze-v2", lambda e: e.__setitem__("timeouts", e["timeouts"][:-10]),
         r"every key must have 300 rows .*'timeouts': \(290,\)"),
        ("gym-mujoco-v2-medium", lambda e: e.__setitem__("next_observations", e["next_observations"][:-1]),
         r"every key must have 256 rows .*'next_observations': \(255, 11\)"),
        ("gym-mujoco-v2-medium", _nan("observations", (17, 4)), r"'observations' holds NaN or inf \(first at row 17\)"),
        ("gym-mujoco-v2-medium", _nan("next_observations", (30, 1)), r"'next_observations' holds NaN or inf .*row 30"),
        ("antmaze-v2", _nan("rewards", 120), r"'rewards' holds NaN or inf \(first at row 120\)"),
        ("adroit-v1-human", _nan("actions", (5, 0)), r"'actions' holds NaN or inf \(first at row 5\)"),
        ("antmaze-v2", _set("terminals", np.full(300, 0.5)), r"'terminals' must hold only 0 and 1 .*row 0"),
        ("maze2d-v1", _set("rewards", np.array([b"x"] * 250)), r"'rewards' has dtype \|S1"),
        ("maze2d-v1", _set("observations", np.zeros(250, np.float32)), r"'observations' must be 2-D"),
    ],
)
def test_bad_layouts_raise_clear_errors(name, mutate, match, tmp_path):
    layout = LAYOUTS[name]()
    entries = dict(layout.entries)
    mutate(entries)
    path = write_plain_h5(tmp_path / layout.filename, entries)
    with pytest.raises(D4RLFileError, match=match):
        validate_d4rl_hdf5(path)
    with pytest.raises(D4RLFileError, match=match):
        make_offline_replay_buffer(path, batch_size=2, progress=False)
    assert not (tmp_path / "cache" / "hdf5").exists() or not any((tmp_path / "cache" / "hdf5").iterdir())


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_real_layout_says_truncated(fraction, tmp_path, monkeypatch):
    layout, path = write_layout("gym-mujoco-v2-medium", tmp_path / "full")
    raw = path.read_bytes()
    cut = tmp_path / "cut" / layout.filename
    cut.parent.mkdir()
    cut.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(D4RLFileError, match="truncated"):
        validate_d4rl_hdf5(cut)
    with pytest.raises(D4RLFileError, match="truncated"):
        make_offline_replay_buffer(cut, batch_size=2, progress=False)
    # served as a D4RL id: the broken download is removed and nothing is imported
    monkeypatch.setitem(D4RL_URLS, layout.dataset_id, cut.as_uri())
    with pytest.raises(D4RLFileError, match="truncated.*removed; call again to retry"):
        make_offline_replay_buffer(layout.dataset_id, batch_size=2, progress=False)
    assert not list((tmp_path / "cache" / "downloads").iterdir())
    assert not (tmp_path / "cache" / "d4rl" / layout.dataset_id).exists()


def test_a_file_without_timeouts_needs_its_time_limit_and_the_import_follows_it(tmp_path):
    """D4RL's older layout (kitchen, maze2d, v0): from a path, the time limit is asked for in one line; a
    different limit imports again, as the transitions differ."""
    layout, path = write_layout("kitchen-v0", tmp_path / "files")
    with pytest.raises(D4RLFileError, match=r"has no 'timeouts' .*pass max_episode_steps=<the limit> "
                                            r"\(recipes: dataset.max_episode_steps="):
        make_offline_replay_buffer(path, batch_size=2, progress=False)
    assert not (tmp_path / "cache" / "hdf5").exists() or not any((tmp_path / "cache" / "hdf5").iterdir())
    assert len(make_offline_replay_buffer(path, batch_size=2, progress=False, max_episode_steps=280)) == 508
    # a limit of 100 cuts rows 99, 218 (the counter is 1 at row 120, after the terminal row 119), 318 and 418
    shorter = make_offline_replay_buffer(path, batch_size=2, progress=False, max_episode_steps=100)
    ref = d4rl_qlearning_dataset(d4rl_get_dataset(path), 100)
    np.testing.assert_array_equal(shorter[: len(shorter)][OBSERVATION][:, 0].numpy(), ref["rows"])
    assert len(shorter) == 509 - 4 and not {99, 218, 318, 418} & set(ref["rows"].tolist())
    assert len(make_offline_replay_buffer(path, batch_size=2, progress=False, max_episode_steps=280)) == 508


def test_time_limit_timeouts_equal_d4rls_counter():
    """The vectorised rule against D4RL's loop, on random flags and limits (a terminal on a final step included)."""
    from ppl_torchrl.data.transitions import corl_transition_rows, time_limit_timeouts

    rng = np.random.default_rng(0)
    for _ in range(500):
        n, limit = int(rng.integers(2, 60)), int(rng.integers(1, 8))
        terminals = rng.random(n) < rng.choice([0.0, 0.05, 0.3, 0.9])
        dataset = {"rewards": np.zeros(n), "terminals": terminals, "observations": np.zeros((n, 1)),
                   "actions": np.zeros((n, 1))}
        rows = corl_transition_rows(time_limit_timeouts(terminals, limit))
        np.testing.assert_array_equal(rows, d4rl_qlearning_dataset(dataset, limit)["rows"])
    with pytest.raises(ValueError, match="max_episode_steps must be >= 1"):
        time_limit_timeouts(np.zeros(3, bool), 0)


def test_the_recipes_time_limit_comes_from_the_config_else_d4rl_else_the_eval_task(tmp_path):
    from omegaconf import OmegaConf

    from ppl_torchrl.errors import ConfigError
    from ppl_torchrl.training.data_source import dataset_time_limit

    _, path = write_layout("kitchen-v0", tmp_path / "files")
    cfg = lambda **dataset: OmegaConf.create({"dataset": {"max_episode_steps": None, **dataset}})  # noqa: E731
    assert dataset_time_limit(cfg(id="kitchen-complete-v0"), str(path), None) == 280       # D4RL's own
    assert dataset_time_limit(cfg(id=str(path)), str(path), "hopper-medium-v2") == 1000    # the eval task's
    assert dataset_time_limit(cfg(id=str(path)), str(path), None) is None                  # none: the file says
    assert dataset_time_limit(cfg(id="kitchen-complete-v0", max_episode_steps=50), str(path), None) == 50
    for bad in (0, "280", 2.5):
        with pytest.raises(ConfigError, match="must be a positive number of steps"):
            dataset_time_limit(cfg(id=str(path), max_episode_steps=bad), str(path), None)
    with pytest.raises(ConfigError, match="D4RL's kitchen-complete-v0 ends its episodes at 280 steps"):
        dataset_time_limit(cfg(id="kitchen-complete-v0", max_episode_steps=50), "kitchen-complete-v0", None)
    assert dataset_time_limit(cfg(id="kitchen-complete-v0", max_episode_steps=280), "kitchen-complete-v0", None) == 280
    ogbench = "cube-single-play-singletask-task2-v0"
    assert dataset_time_limit(cfg(id=ogbench), ogbench, ogbench) is None
    with pytest.raises(ConfigError, match="applies to D4RL-format files without timeouts.*leave it unset"):
        dataset_time_limit(cfg(id=ogbench, max_episode_steps=100), ogbench, ogbench)
