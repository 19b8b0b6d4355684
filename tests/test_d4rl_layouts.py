"""Files laid out like the real D4RL files, written by a plain h5py writer (not ours), through every loading path.

Each layout below copies what D4RL's own generation scripts write (key names, shapes, dtypes,
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
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

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
# A plain h5py writer, the way D4RL's scripts write: create_dataset(..., compression='gzip') for
# arrays, `h5[key] = np.bytes_(...)` / a NumPy scalar for metadata. No dtype is changed.
# ----------------------------------------------------------------------------------------------
def write_plain_h5(path: Path, entries: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        for key, value in entries.items():
            if np.ndim(value) == 0:
                h5[key] = value
            else:
                h5.create_dataset(key, data=value, compression="gzip")
    return path


def flags(episodes: list[tuple[int, str | None]]) -> tuple[np.ndarray, np.ndarray]:
    """terminals, timeouts of episodes laid end to end; each ends in 'terminal', 'timeout' or None (cut)."""
    n = sum(length for length, _ in episodes)
    terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
    end = -1
    for length, how in episodes:
        end += length
        if how == "terminal":
            terminals[end] = True
        elif how == "timeout":
            timeouts[end] = True
    return terminals, timeouts


def rows(rng, n: int, dim: int, dtype=np.float32) -> np.ndarray:
    """Random rows whose first column is the row index, so a transition names its source row."""
    x = rng.normal(size=(n, dim)).astype(dtype)
    x[:, 0] = np.arange(n)
    return x


def policy_weights(hidden: int, obs_dim: int, act_dim: int, rng) -> dict:
    """rlkit/mjrl policy weights as D4RL stores them under metadata/policy/ (get_policy_wts / extract_params)."""
    shapes = {
        "fc0/weight": (hidden, obs_dim), "fc0/bias": (hidden,),
        "fc1/weight": (hidden, hidden), "fc1/bias": (hidden,),
        "last_fc/weight": (act_dim, hidden), "last_fc/bias": (act_dim,),
        "last_fc_log_std/weight": (act_dim, hidden), "last_fc_log_std/bias": (act_dim,),
    }
    return {f"metadata/policy/{k}": rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}


@dataclass
class Layout:
    """A fixture file and what loading it must give (the counts are written out by hand)."""

    dataset_id: str               # a D4RL id of TorchRL's URL table
    recipe: str                   # recipes/<recipe>.py
    recipe_dataset: list[str]     # the dataset overrides of the recipe run
    entries: dict                 # key -> array or scalar, exactly as written to the file
    num_transitions: int          # N - 1 - (timeouts among rows 0..N-2)
    num_terminals: int            # terminal rows among the kept ones
    metadata: dict = field(default_factory=dict)  # scalar entries, as Python values
    ignored: tuple = ()           # non-scalar entries nobody reads (policy weights)

    @property
    def filename(self) -> str:
        return D4RL_URLS[self.dataset_id].rsplit("/", 1)[-1]


def gym_mujoco_v2_medium() -> Layout:
    """hopper-medium-v2: scripts/generation/mujoco/collect_data.py, then mujoco/fix_qpos_qvel.py.

    collect_data.py writes observations, next_observations, actions, rewards (float32), terminals,
    timeouts (bool), infos/action_log_probs, infos/qpos, infos/qvel and, for a trained policy,
    metadata/algorithm b'SAC', metadata/iteration (int32), metadata/policy/nonlinearity b'relu',
    metadata/policy/output_distribution b'tanh_gaussian' and the policy's weights (rlkit SAC,
    256 hidden units: fc0/weight is [256, obs_dim]). fix_qpos_qvel.py (the v2 fix) rewrites every
    key as float32/bool except infos/qpos and infos/qvel, which it writes from the simulator's
    float64 state. The last episode is cut by num_data, so the file's last row has no flag.
    N = 256, like the policy's hidden width: a weight's first axis equals N.
    """
    rng = np.random.default_rng(1)
    terminals, timeouts = flags([(60, "terminal"), (100, "timeout"), (50, "terminal"), (46, None)])
    n, obs_dim, act_dim = len(terminals), 11, 3
    obs = rows(rng, n, obs_dim)
    next_obs = np.concatenate([obs[1:], obs[-1:] + 1])
    ends = terminals | timeouts
    next_obs[ends] = rng.normal(size=(int(ends.sum()), obs_dim)).astype(np.float32)  # true s' before a reset
    meta = {"metadata/algorithm": "SAC", "metadata/iteration": 1_000_000,
            "metadata/policy/nonlinearity": "relu", "metadata/policy/output_distribution": "tanh_gaussian"}
    weights = policy_weights(256, obs_dim, act_dim, rng)
    entries = {
        "observations": obs,
        "next_observations": next_obs,
        "actions": rows(rng, n, act_dim) / 1000,
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
        "infos/action_log_probs": rng.normal(size=n).astype(np.float32),
        "infos/qpos": rng.normal(size=(n, 6)),          # float64
        "infos/qvel": rng.normal(size=(n, 6)),          # float64
        "metadata/algorithm": np.bytes_(b"SAC"),
        "metadata/iteration": np.int32(1_000_000),
        "metadata/policy/nonlinearity": np.bytes_(b"relu"),
        "metadata/policy/output_distribution": np.bytes_(b"tanh_gaussian"),
        **weights,
    }
    # 256 rows, 1 timeout (row 159) among rows 0..254: 254 transitions; terminals at 59 and 209
    return Layout("hopper-medium-v2", "ppl_mujoco", ["dataset=hopper-medium-v2"], entries, 254, 2,
                  meta, tuple(sorted(weights)))


def gym_mujoco_v2_medium_replay() -> Layout:
    """walker2d-medium-replay-v2: scripts/generation/mujoco/convert_buffer.py, then fix_qpos_qvel.py.

    An rlkit replay buffer: the same per-step keys as collect_data.py, but metadata holds only
    metadata/algorithm and metadata/iteration (no policy weights). Many short episodes that end
    in terminals (falls), some in timeouts.
    """
    rng = np.random.default_rng(2)
    terminals, timeouts = flags([(30, "terminal"), (25, "terminal"), (80, "timeout"), (40, "terminal"), (25, None)])
    n, obs_dim, act_dim = len(terminals), 17, 6
    obs = rows(rng, n, obs_dim)
    entries = {
        "observations": obs,
        "next_observations": np.concatenate([obs[1:], obs[-1:]]),
        "actions": rows(rng, n, act_dim) / 1000,
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
        "infos/action_log_probs": rng.normal(size=n).astype(np.float32),
        "infos/qpos": rng.normal(size=(n, 9)),
        "infos/qvel": rng.normal(size=(n, 9)),
        "metadata/algorithm": np.bytes_(b"SAC"),
        "metadata/iteration": np.int32(320),
    }
    # 200 rows, 1 timeout (row 134): 198 transitions; terminals at 29, 54, 174
    return Layout("walker2d-medium-replay-v2", "ppl_mujoco", ["dataset=walker2d-medium-replay-v2"], entries,
                  198, 3, {"metadata/algorithm": "SAC", "metadata/iteration": 320})


def antmaze_v2() -> Layout:
    """antmaze-umaze-v2: scripts/generation/generate_ant_maze_datasets.py, then relabel_antmaze_rewards.py.

    The generator writes observations (the ant's 29 numbers without the goal), actions,
    infos/goal, infos/qpos (15), infos/qvel (14) as float32 and terminals/timeouts as bool; a
    timeout ends each episode after max_episode_steps + 1 steps (``ts >= max_episode_steps``).
    The sparse relabelling then rewrites rewards and terminals as 1 where the next observation
    is within 0.5 of the goal: ``np.concatenate`` of float32 with ``np.array([0])`` makes both
    float64 0/1 arrays, and the episode goes on after such a "terminal". A terminal may fall on
    a timeout row.
    """
    rng = np.random.default_rng(3)
    _, timeouts = flags([(101, "timeout"), (101, "timeout"), (98, None)])
    n, obs_dim, act_dim = len(timeouts), 29, 8
    goal = np.zeros(n)
    goal[[40, 41, 42, 43, 44, 150, 151, 152, 153, 201]] = 1.0   # near the goal; 201 is also a timeout row
    entries = {
        "observations": rows(rng, n, obs_dim),
        "actions": np.clip(rows(rng, n, act_dim) / 1000, -1, 1).astype(np.float32),
        "rewards": goal.copy(),                       # float64
        "terminals": goal.copy(),                     # float64 0/1
        "timeouts": timeouts,
        "infos/goal": np.tile(np.array([[0.75, 8.5]], np.float32), (n, 1)),
        "infos/qpos": rng.normal(size=(n, 15)).astype(np.float32),
        "infos/qvel": rng.normal(size=(n, 14)).astype(np.float32),
    }
    # 300 rows, timeouts at 100 and 201: 297 transitions; 9 terminals kept (201 is dropped)
    return Layout("antmaze-umaze-v2", "ppl_antmaze", ["dataset=antmaze-umaze-v2"], entries, 297, 9)


def adroit_v1_human() -> Layout:
    """pen-human-v1: scripts/generation/hand_dapg_demos.py (v1 since D4RL commit 765b846).

    Replayed human demonstrations: observations, actions, rewards (float32), terminals (always
    False: ``done = False``), timeouts (True on each demo's last step) and one infos/<name> per
    entry of the env's get_env_state(): for pen qpos (30), qvel (30), desired_orien (4). No metadata.
    """
    rng = np.random.default_rng(4)
    _, timeouts = flags([(90, "timeout"), (80, "timeout"), (80, "timeout")])
    n, obs_dim, act_dim = len(timeouts), 45, 24
    entries = {
        "observations": rows(rng, n, obs_dim),
        "actions": np.clip(rows(rng, n, act_dim) / 1000, -1, 1).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": timeouts,
        "infos/qpos": rng.normal(size=(n, 30)).astype(np.float32),
        "infos/qvel": rng.normal(size=(n, 30)).astype(np.float32),
        "infos/desired_orien": rng.normal(size=(n, 4)).astype(np.float32),
    }
    # 250 rows, timeouts at 89, 169 (and 249, the last row): 247 transitions, no terminal
    return Layout("pen-human-v1", "ppl_mujoco", ["dataset=pen-human-v1"], entries, 247, 0)


def adroit_v1_cloned() -> Layout:
    """door-cloned-v1: scripts/generation/hand_dapg_combined.py.

    The first half is a BC policy's rollouts cut after a terminal/timeout; the second half is the
    human demos tiled (``np.tile``) and cut to the remaining length, so the file ends mid-demo.
    Its per-step keys are the BC file's, read from the human file too, hence the human file's keys:
    for door infos/qpos (30), infos/qvel (30), infos/door_body_pos (3). metadata/* is copied from
    the BC file, whose writer (hand_dapg_jax.py) is unfinished in D4RL's repository: what it holds
    is not known; the fixture puts what hand_dapg_policies.py writes there (scalars and weights).
    """
    rng = np.random.default_rng(5)
    bc_terminals, bc_timeouts = flags([(75, "timeout"), (75, "timeout")])
    human = {"obs": rows(rng, 110, 39), "act": rows(rng, 110, 28) / 1000}
    _, human_timeouts = flags([(60, "timeout"), (50, "timeout")])
    tiled = np.r_[np.arange(110), np.arange(40)]      # demo A, demo B, then demo A again, cut at 40 rows
    obs = np.concatenate([rows(rng, 150, 39), human["obs"][tiled]])
    obs[:, 0] = np.arange(len(obs))
    n = len(obs)
    weights = policy_weights(32, 39, 28, rng)
    entries = {
        "observations": obs,
        "actions": np.clip(np.concatenate([rows(rng, 150, 28) / 1000, human["act"][tiled]]), -1, 1).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": np.concatenate([bc_terminals, np.zeros(150, bool)]),
        "timeouts": np.concatenate([bc_timeouts, human_timeouts[tiled]]),
        "infos/qpos": rng.normal(size=(n, 30)).astype(np.float32),
        "infos/qvel": rng.normal(size=(n, 30)).astype(np.float32),
        "infos/door_body_pos": np.tile(np.array([[-0.25, 0.27, 0.25]], np.float32), (n, 1)),
        "metadata/algorithm": np.bytes_(b"BC"),
        "metadata/policy/nonlinearity": np.bytes_(b"tanh"),
        **weights,
    }
    # 300 rows, timeouts at 74, 149, 209, 259: 295 transitions, no terminal
    return Layout("door-cloned-v1", "ppl_mujoco", ["dataset=door-cloned-v1"], entries, 295, 0,
                  {"metadata/algorithm": "BC", "metadata/policy/nonlinearity": "tanh"}, tuple(sorted(weights)))


def adroit_v1_expert() -> Layout:
    """pen-expert-v1: scripts/generation/hand_dapg_policies.py.

    DAPG policy rollouts, an episode ends on the env's done (pen: the pen fell) or on a timeout at
    max_episode_steps. Besides the per-step keys and the get_env_state() infos it writes
    infos/action_mean and infos/action_log_std ([N, act_dim]), metadata/algorithm b'DAPG',
    metadata/policy/nonlinearity b'tanh', metadata/policy/output_distribution b'gaussian' and the
    policy's weights (mjrl MLP, 32 hidden units).
    """
    rng = np.random.default_rng(6)
    terminals, timeouts = flags([(100, "timeout"), (37, "terminal"), (100, "timeout")])
    n, obs_dim, act_dim = len(terminals), 45, 24
    weights = policy_weights(32, obs_dim, act_dim, rng)
    entries = {
        "observations": rows(rng, n, obs_dim),
        "actions": np.clip(rows(rng, n, act_dim) / 1000, -1, 1).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
        "infos/action_mean": rng.normal(size=(n, act_dim)).astype(np.float32),
        "infos/action_log_std": rng.normal(size=(n, act_dim)).astype(np.float32),
        "infos/qpos": rng.normal(size=(n, 30)).astype(np.float32),
        "infos/qvel": rng.normal(size=(n, 30)).astype(np.float32),
        "infos/desired_orien": rng.normal(size=(n, 4)).astype(np.float32),
        "metadata/algorithm": np.bytes_(b"DAPG"),
        "metadata/policy/nonlinearity": np.bytes_(b"tanh"),
        "metadata/policy/output_distribution": np.bytes_(b"gaussian"),
        **weights,
    }
    meta = {"metadata/algorithm": "DAPG", "metadata/policy/nonlinearity": "tanh",
            "metadata/policy/output_distribution": "gaussian"}
    # 237 rows, timeout at 99 (236 is the last row): 235 transitions; terminal at 136
    return Layout("pen-expert-v1", "ppl_mujoco", ["dataset=pen-expert-v1"], entries, 235, 1,
                  meta, tuple(sorted(weights)))


def maze2d_v1() -> Layout:
    """maze2d-umaze-v1: scripts/generation/generate_maze2d_datasets.py + relabel_maze2d_rewards.py.

    observations (qpos 2 + qvel 2), actions, infos/goal, infos/qpos, infos/qvel (float32) and a
    sparse float32 reward. The downloaded files also hold ``timeouts``, which the script in the
    repository does not write (D4RL issue #176 lists the 8 keys of maze2d-large-v1): one
    continuous trajectory with no terminal, ``timeouts`` marking where a navigation goal was
    reached, at irregular intervals (D4RL issue #85).
    """
    rng = np.random.default_rng(7)
    _, timeouts = flags([(31, "timeout"), (45, "timeout"), (85, "timeout"), (80, "timeout"), (9, None)])
    n = len(timeouts)
    obs = rows(rng, n, 4)
    entries = {
        "observations": obs,
        "actions": np.clip(rows(rng, n, 2) / 1000, -1, 1).astype(np.float32),
        "rewards": (rng.random(n) < 0.2).astype(np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": timeouts,
        "infos/goal": np.tile(np.array([[1.0, 1.0]], np.float32), (n, 1)),
        "infos/qpos": obs[:, :2].copy(),
        "infos/qvel": obs[:, 2:].copy(),
    }
    # 250 rows, timeouts at 30, 75, 160, 240: 245 transitions, no terminal
    return Layout("maze2d-umaze-v1", "ppl_antmaze",
                  ["dataset=antmaze-umaze-v2", "dataset.id=maze2d-umaze-v1"], entries, 245, 0)


LAYOUTS = {
    "gym-mujoco-v2-medium": gym_mujoco_v2_medium,
    "gym-mujoco-v2-medium-replay": gym_mujoco_v2_medium_replay,
    "antmaze-v2": antmaze_v2,
    "adroit-v1-human": adroit_v1_human,
    "adroit-v1-cloned": adroit_v1_cloned,
    "adroit-v1-expert": adroit_v1_expert,
    "maze2d-v1": maze2d_v1,
}


def write_layout(name: str, folder: Path) -> tuple[Layout, Path]:
    layout = LAYOUTS[name]()
    return layout, write_plain_h5(folder / layout.filename, layout.entries)


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


def d4rl_qlearning_dataset(dataset: dict) -> dict:
    """d4rl/__init__.py qlearning_dataset (with timeouts) and algorithms/offline/rebrac.py's next_actions."""
    n = dataset["rewards"].shape[0]
    keys = ("observations", "actions", "next_observations", "next_actions", "rewards", "terminals", "rows")
    out = {k: [] for k in keys}
    for i in range(n - 1):
        if dataset["timeouts"][i]:
            continue
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
    ref = d4rl_qlearning_dataset(d4rl_get_dataset(path))
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
    buffer = make_offline_replay_buffer(path, batch_size=8, seed=0, progress=False)
    check_semantics(buffer, layout, path)
    assert buffer.metadata == layout.metadata                  # kept as the dataset's metadata
    batch = buffer.sample()
    assert batch[OBSERVATION].shape == (8, layout.entries["observations"].shape[1])
    # the second call reuses the import, metadata included
    again = make_offline_replay_buffer(path, batch_size=8, progress=False)
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
        ("gym-mujoco-v2-medium", _without("timeouts"), r"lacks the D4RL key\(s\) \['timeouts'\] \(it has \["),
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
