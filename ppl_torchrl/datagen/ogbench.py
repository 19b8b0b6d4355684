"""OGBench's ``play`` and ``navigate`` datasets regenerated here, with OGBench's own environments and oracles.

The procedure is OGBench's ``data_gen_scripts/generate_manipspace.py`` / ``generate_locomaze.py`` with the
flags of its ``data_gen_scripts/commands.sh`` (re-implemented, not copied; ``docs/ogbench.md``):

* manipulation (``cube-*``, ``scene``, ``puzzle-*``, type ``play``): the env in ``mode="data_collection"``,
  ``terminate_at_goal=False``, episodes of 1001 steps; the scripted plan oracles (``CubePlanOracle``,
  ``ButtonPlanOracle``, ``DrawerPlanOracle``, ``WindowPlanOracle``; ``noise=0.1``, ``noise_smoothing=0.5``;
  puzzle buttons with the gripper always closed) pick the next sub-task whenever the current one is done;
  a new target comes from ``env.unwrapped.set_new_target(p_stack)`` with ``p_stack`` drawn per episode
  (single 0, double U(0, 0.25), triple U(0.05, 0.35), quadruple U(0.1, 0.5), scene 0.5); ``scene``
  episodes whose cube leaves the visible area are drawn again;
* ``pointmaze-*-navigate``: start cell uniform over free cells, goal uniform over non-corridor cells, a new
  goal whenever the current one is reached; the action is the unit direction to the env's BFS oracle
  subgoal plus N(0, 0.5^2) noise, clipped to [-1, 1]; 1001-step episodes;
* 1000 training episodes, then 100 (``num_episodes // 10``) validation episodes into ``-val.npz``;
* per step the row stores ``observations``, ``actions``, ``terminals`` (1 on an episode's last row),
  ``qpos``/``qvel`` (and ``button_states``) of the state *before* the action (``info["prev_*"]``).

OGBench sets no seed; here one ``seed`` seeds numpy's global generator (oracles, noise, ``p_stack``, goals)
and the env's own generator (its first ``reset``), so a regenerated file is reproducible and matches the
published one in distribution, not bit for bit. Files are written atomically, in OGBench's layout, under
ids ending in ``-gen`` (``cube-single-play-gen-v0.npz``), so one loader reads both and they are never
mistaken for the published files.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppl_torchrl.atomic import UMASK, atomic_path, atomic_write

__all__ = ["OGBENCH_GENERATED", "GenerationReport", "generate_ogbench_dataset", "ogbench_generated_path"]


@dataclass(frozen=True)
class _Recipe:
    env_id: str  # OGBench's goal-conditioned env the data is collected in
    kind: str  # "play" | "navigate"
    num_episodes: int = 1000
    max_episode_steps: int = 1001
    noise: float = 0.1  # plan-oracle noise (manipulation) or Gaussian action noise (pointmaze)


#: generated dataset name -> how OGBench makes the published one (data_gen_scripts/commands.sh)
OGBENCH_GENERATED: dict[str, _Recipe] = {
    "cube-single-play-gen-v0": _Recipe("cube-single-v0", "play"),
    "cube-double-play-gen-v0": _Recipe("cube-double-v0", "play"),
    "scene-play-gen-v0": _Recipe("scene-v0", "play"),
    "puzzle-3x3-play-gen-v0": _Recipe("puzzle-3x3-v0", "play"),
    "pointmaze-medium-navigate-gen-v0": _Recipe("pointmaze-medium-v0", "navigate", noise=0.5),
    "pointmaze-large-navigate-gen-v0": _Recipe("pointmaze-large-v0", "navigate", noise=0.5),
}
NOISE_SMOOTHING = 0.5


@dataclass
class GenerationReport:
    dataset: str
    train_path: Path
    val_path: Path
    episodes: int
    val_episodes: int
    rows: int
    val_rows: int
    redrawn_episodes: int
    seconds: float


def ogbench_generated_path(name: str, folder: str | Path | None = None) -> Path:
    from ppl_torchrl.data.ogbench import ogbench_data_dir

    return (Path(folder).expanduser() if folder is not None else ogbench_data_dir()) / f"{name}.npz"


def _p_stack(env_id: str) -> float:
    for size, (lo, hi) in {"single": (0.0, 0.0), "double": (0.0, 0.25), "triple": (0.05, 0.35),
                           "quadruple": (0.1, 0.5), "octuple": (0.0, 0.35)}.items():
        if f"cube-{size}" in env_id:
            return 0.0 if lo == hi else float(np.random.uniform(lo, hi))
    return 0.5  # scene (puzzle has no cubes: unused)


def _manip_oracles(env, env_id: str, noise: float) -> dict:
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    kw = dict(env=env, noise=noise, noise_smoothing=NOISE_SMOOTHING)
    if env_id.startswith("cube"):
        return {"cube": CubePlanOracle(**kw)}
    if env_id.startswith("scene"):
        return {"cube": CubePlanOracle(**kw), "button": ButtonPlanOracle(**kw), "drawer": DrawerPlanOracle(**kw),
                "window": WindowPlanOracle(**kw)}
    return {"button": ButtonPlanOracle(**kw, gripper_always_closed=True)}


def _scene_healthy(qpos: np.ndarray) -> bool:
    """OGBench's scene check: the cube never goes too far right, nor too far left outside the drawer."""
    xyz = qpos[:, 14:17]
    if (xyz[:, 1] >= 0.29).any():
        return False
    return not ((xyz[:, 1] <= -0.3) & ((xyz[:, 2] < 0.06) | (xyz[:, 2] > 0.08))).any()


def _manip_episode(env, recipe: _Recipe, oracles: dict) -> dict[str, np.ndarray]:
    ob, info = env.reset()
    p_stack = _p_stack(recipe.env_id)
    agent = oracles[info["privileged/target_task"]]
    agent.reset(ob, info)
    rows: dict[str, list] = {k: [] for k in ("observations", "actions", "terminals", "qpos", "qvel")}
    buttons = hasattr(env.unwrapped, "_cur_button_states")
    if buttons:
        rows["button_states"] = []
    done = False
    while not done:
        action = np.clip(np.asarray(agent.select_action(ob, info)), -1, 1)
        next_ob, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if agent.done:  # the sub-task is over: the next one, with this episode's stacking probability
            agent_ob, agent_info = env.unwrapped.set_new_target(p_stack=p_stack)
            agent = oracles[agent_info["privileged/target_task"]]
            agent.reset(agent_ob, agent_info)
        rows["observations"].append(ob)
        rows["actions"].append(action)
        rows["terminals"].append(done)
        rows["qpos"].append(info["prev_qpos"])
        rows["qvel"].append(info["prev_qvel"])
        if buttons:
            rows["button_states"].append(info["prev_button_states"])
        ob = next_ob
    return {k: np.asarray(v) for k, v in rows.items()}


def _maze_cells(maze_map: np.ndarray) -> tuple[list, list]:
    free, vertex = [], []
    for i in range(maze_map.shape[0]):
        for j in range(maze_map.shape[1]):
            if maze_map[i, j] != 0:
                continue
            free.append((i, j))
            vertical = maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0 and maze_map[i, j - 1] == 1 \
                and maze_map[i, j + 1] == 1
            horizontal = maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0 and maze_map[i - 1, j] == 1 \
                and maze_map[i + 1, j] == 1
            if not (vertical or horizontal):  # corridor cells are never goals
                vertex.append((i, j))
    return free, vertex


def _maze_episode(env, recipe: _Recipe, cells: tuple[list, list]) -> dict[str, np.ndarray]:
    free, vertex = cells
    u = env.unwrapped
    init_ij = free[np.random.randint(len(free))]
    goal_ij = vertex[np.random.randint(len(vertex))]
    ob, _ = env.reset(options=dict(task_info=dict(init_ij=init_ij, goal_ij=goal_ij)))
    rows: dict[str, list] = {k: [] for k in ("observations", "actions", "terminals", "qpos", "qvel")}
    done = False
    while not done:
        subgoal_xy, _ = u.get_oracle_subgoal(u.get_xy(), u.cur_goal_xy)
        direction = subgoal_xy - u.get_xy()
        direction = direction / (np.linalg.norm(direction) + 1e-6)  # the point "expert" outputs this direction
        action = np.clip(direction + np.random.normal(0, recipe.noise, direction.shape), -1, 1)
        next_ob, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if info["success"]:  # navigate: a new goal whenever one is reached
            u.set_goal(vertex[np.random.randint(len(vertex))])
        rows["observations"].append(ob)
        rows["actions"].append(action)
        rows["terminals"].append(done)
        rows["qpos"].append(info["prev_qpos"])
        rows["qvel"].append(info["prev_qvel"])
        ob = next_ob
    return {k: np.asarray(v) for k, v in rows.items()}


_DTYPES = {"terminals": bool, "button_states": np.int64}


def _save_npz(path: Path, episodes: list[dict]) -> None:
    arrays = {k: np.concatenate([e[k] for e in episodes]).astype(_DTYPES.get(k, np.float32))
              for k in episodes[0]}
    with atomic_path(path, mode=UMASK) as tmp:  # mkstemp's 0600 would make a shared data folder unreadable to others
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def _rng_state(env) -> dict:
    return {"numpy": np.random.get_state(), "env": env.unwrapped.np_random.bit_generator.state}


def _set_rng_state(env, state: dict) -> None:
    np.random.set_state(state["numpy"])
    env.unwrapped.np_random.bit_generator.state = state["env"]


def generate_ogbench_dataset(name: str, folder: str | Path | None = None, *, seed: int = 0,
                             num_episodes: int | None = None, chunk: int = 25,
                             progress: bool = True) -> GenerationReport:
    """Generates ``name`` (a key of :data:`OGBENCH_GENERATED`) into ``folder/name.npz`` and ``name-val.npz``.

    ``num_episodes`` (default: OGBench's 1000) training episodes, then ``num_episodes // 10`` validation ones.
    Every ``chunk`` episodes the episodes so far and both random generators' states go to
    ``folder/.name.partial/``; an interrupted run called again with the same arguments continues from there
    and writes the same files as an uninterrupted one. Both files appear only when complete.
    """
    import pickle

    import gymnasium as gym
    from tqdm.auto import tqdm

    from ppl_torchrl.errors import ConfigError
    from ppl_torchrl.registry.ogbench_ids import import_ogbench

    import_ogbench()  # registers the envs

    if name not in OGBENCH_GENERATED:
        raise ConfigError(f"unknown OGBench dataset to generate {name!r}; choose from {sorted(OGBENCH_GENERATED)}.")
    recipe = OGBENCH_GENERATED[name]
    n_train = recipe.num_episodes if num_episodes is None else int(num_episodes)
    n_val = n_train // 10
    train_path = ogbench_generated_path(name, folder)
    val_path = train_path.with_name(f"{name}-val.npz")
    partial = train_path.with_name(f".{name}.partial")
    partial.mkdir(parents=True, exist_ok=True)
    manip = recipe.kind == "play"
    kwargs = dict(terminate_at_goal=False, max_episode_steps=recipe.max_episode_steps)
    env = gym.make(recipe.env_id, mode="data_collection", **kwargs) if manip else gym.make(recipe.env_id, **kwargs)
    np.random.seed(seed)
    env.reset(seed=seed)
    helper = _manip_oracles(env, recipe.env_id, recipe.noise) if manip else _maze_cells(env.unwrapped.maze_map)
    key = {"name": name, "seed": seed, "episodes": n_train, "chunk": chunk, "ogbench": _ogbench_version()}
    done_eps, redrawn, seconds = 0, 0, 0.0
    state_file = partial / "state.pkl"
    if state_file.is_file():
        state = pickle.loads(state_file.read_bytes())
        if state["key"] == key:
            done_eps, redrawn, seconds = state["episodes_done"], state["redrawn"], state["seconds"]
            _set_rng_state(env, state["rng"])
    total = n_train + n_val
    bar = tqdm(total=total, initial=done_eps, desc=f"generating {name}", unit="episode", disable=not progress,
               mininterval=30)
    episodes: list[dict] = []
    t0 = time.perf_counter()
    while done_eps < total:
        while True:
            ep = _manip_episode(env, recipe, helper) if manip else _maze_episode(env, recipe, helper)
            if not recipe.env_id.startswith("scene") or _scene_healthy(ep["qpos"]):
                break
            redrawn += 1  # OGBench draws an unhealthy scene episode again
        episodes.append(ep)
        done_eps += 1
        bar.update(1)
        if len(episodes) == chunk or done_eps == total:
            _save_npz(partial / f"chunk_{done_eps - len(episodes):06d}.npz", episodes)
            now = time.perf_counter()
            seconds, t0 = seconds + now - t0, now
            atomic_write(state_file, pickle.dumps({"key": key, "episodes_done": done_eps, "redrawn": redrawn,
                                                   "seconds": seconds, "rng": _rng_state(env)}))
            episodes = []
    bar.close()
    env.close()
    chunks = []
    for f in sorted(partial.glob("chunk_*.npz")):
        with np.load(f) as z:
            starts = np.flatnonzero(np.concatenate([[True], z["terminals"][:-1]]))
            ends = np.flatnonzero(z["terminals"]) + 1
            chunks += [{k: z[k][a:b] for k in z.files} for a, b in zip(starts, ends)]
    assert len(chunks) == total, (len(chunks), total)
    if n_val:
        _save_npz(val_path, chunks[n_train:])
    _save_npz(train_path, chunks[:n_train])  # after the val file: its presence marks a complete generation
    import shutil

    shutil.rmtree(partial, ignore_errors=True)
    return GenerationReport(name, train_path, val_path, n_train, n_val,
                            sum(len(e["actions"]) for e in chunks[:n_train]),
                            sum(len(e["actions"]) for e in chunks[n_train:]), redrawn, seconds)


def _ogbench_version() -> str:
    from importlib.metadata import version

    return version("ogbench")
