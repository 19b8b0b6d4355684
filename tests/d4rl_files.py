"""Files laid out like the real D4RL files, written by a plain h5py writer (not ours): the layouts of
tests/test_d4rl_layouts.py, also used by other tests through the ``d4rl_layout`` fixture (tests/conftest.py).

Each layout copies what D4RL's own generation scripts write (key names, shapes, dtypes, scalar ``metadata/*``
entries, behaviour-policy weights, gzip compression); the D4RL source file is named in each builder and in
docs/data.md ("Real D4RL file layouts"). Only the sizes are cut down (a few hundred rows, short episodes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ppl_torchrl.data import D4RL_URLS


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
    max_episode_steps: int | None = None  # a file without timeouts: D4RL's time limit of its environment

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


def kitchen_v0() -> Layout:
    """kitchen-complete-v0: scripts/generation/generate_kitchen_datasets.py.

    observations (60), actions (9), rewards and terminals as float32 (each demonstration's last step is terminal),
    and a top-level int ``infos`` holding the demonstration's index; no ``timeouts``, so D4RL's
    ``qlearning_dataset`` ends episodes at the environment's time limit (280 steps: d4rl/kitchen/__init__.py).
    The second demonstration is longer than the limit, so the limit cuts it once.
    """
    rng = np.random.default_rng(11)
    lengths = (120, 300, 90)
    terminals, _ = flags([(length, "terminal") for length in lengths])
    n = len(terminals)
    entries = {
        "observations": rows(rng, n, 60),
        "actions": np.clip(rows(rng, n, 9) / 1000, -1, 1).astype(np.float32),
        "rewards": rng.integers(0, 5, size=n).astype(np.float32),
        "terminals": terminals.astype(np.float32),
        "infos": np.repeat(np.arange(len(lengths)), lengths),
    }
    # 510 rows; D4RL's counter restarts at 1 after the terminal row 119, so it reaches 279 at row 120 + 278 = 398,
    # a timeout; terminals at 119, 419 and 509 (the last row, dropped): 509 - 1 = 508 transitions, 2 terminals
    return Layout("kitchen-complete-v0", "ppl_mujoco", ["dataset=hopper-medium-v2", "dataset.id=kitchen-complete-v0"],
                  entries, 508, 2, ignored=("infos",), max_episode_steps=280)


LAYOUTS = {
    "gym-mujoco-v2-medium": gym_mujoco_v2_medium,
    "gym-mujoco-v2-medium-replay": gym_mujoco_v2_medium_replay,
    "antmaze-v2": antmaze_v2,
    "adroit-v1-human": adroit_v1_human,
    "adroit-v1-cloned": adroit_v1_cloned,
    "adroit-v1-expert": adroit_v1_expert,
    "maze2d-v1": maze2d_v1,
    "kitchen-v0": kitchen_v0,
}


def write_layout(name: str, folder: Path) -> tuple[Layout, Path]:
    layout = LAYOUTS[name]()
    return layout, write_plain_h5(folder / layout.filename, layout.entries)
