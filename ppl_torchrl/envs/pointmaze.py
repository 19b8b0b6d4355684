"""PointMaze evaluation environment for the generated ``pointmaze-*-gen-v0`` datasets.

The generated PointMaze datasets follow D4RL's maze2d: the observation is the 4-dim
``(x, y, vx, vy)`` of the ball (float32), there is ONE fixed goal per maze (D4RL maze2d's
target cell), the reward is sparse (``1.0`` when the ball is within :data:`GOAL_RADIUS` = 0.5 m
of the goal after the step, else ``0.0``) and an episode **never terminates**: it ends only at
the time limit (``max_episode_steps`` of the dataset spec; 300/600/800 as in maze2d). The return
therefore counts the steps spent at the goal, so it measures how fast a policy gets there and
whether it stays, which is what makes efficient and inefficient behaviour distinguishable in
the data. The datasets are written with the very same reward and termination rule, and with
starts drawn as here (a uniformly random free cell other than the goal cell, plus uniform noise
of +-0.25 m), so an agent trained on them is evaluated on the task the data describes.

The physics is Gymnasium-Robotics' ``PointMaze`` (v3 mazes ``UMaze``/``Medium``/``Large``);
this class only fixes the goal, the start distribution, the reward and the observation.

    >>> env = make_pointmaze_env("pointmaze-umaze", seed=0)
    >>> obs, info = env.reset()
    >>> obs.shape, info["success"]
    ((4,), False)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import gymnasium as gym
import numpy as np

from ppl_torchrl.registry import get_dataset_spec

__all__ = [
    "GOAL_RADIUS",
    "MazeSpec",
    "MAZES",
    "PointMazeGoalEnv",
    "make_pointmaze_env",
    "sparse_reward",
    "time_limit",
    "GYM_IDS",
]

#: Distance (m) to the goal within which the reward is 1 (D4RL maze2d's sparse threshold).
GOAL_RADIUS = 0.5
#: Half-width (m) of the uniform noise added to cell centres for starts and random goals.
POSITION_NOISE = 0.25


@dataclass(frozen=True)
class MazeSpec:
    """One maze layout and its fixed evaluation goal.

    Attributes:
        name: ``"umaze"``, ``"medium"`` or ``"large"``.
        maze_map: Gymnasium-Robotics map (1 = wall, 0 = free), rows top to bottom.
        goal_cell: (row, col) of the fixed goal; D4RL maze2d's ``G`` cell of the same maze.
        play_goal_cells: hand-picked goal cells for the "play" behaviour (includes the goal cell).
    """

    name: str
    maze_map: tuple[tuple[int, ...], ...]
    goal_cell: tuple[int, int]
    play_goal_cells: tuple[tuple[int, int], ...]

    @property
    def free_cells(self) -> tuple[tuple[int, int], ...]:
        return tuple(
            (i, j) for i, row in enumerate(self.maze_map) for j, v in enumerate(row) if v == 0
        )

    def cell_to_xy(self, cell) -> np.ndarray:
        """Centre of cell ``(row, col)`` in the simulator's coordinates (1 m cells, centred map)."""
        rows, cols = len(self.maze_map), len(self.maze_map[0])
        return np.array([cell[1] + 0.5 - cols / 2.0, rows / 2.0 - (cell[0] + 0.5)], dtype=np.float64)

    def xy_to_cell(self, xy) -> tuple[int, int]:
        """The (row, col) cell containing position ``xy`` (inverse of :meth:`cell_to_xy`)."""
        rows, cols = len(self.maze_map), len(self.maze_map[0])
        return int(np.floor(rows / 2.0 - xy[1])), int(np.floor(xy[0] + cols / 2.0))

    @property
    def goal_xy(self) -> np.ndarray:
        return self.cell_to_xy(self.goal_cell)


def _parse(rows: str) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(1 if ch == "#" else 0 for ch in row) for row in rows.split())


# Layouts are Gymnasium-Robotics' U_MAZE / MEDIUM_MAZE / LARGE_MAZE (identical to D4RL maze2d's);
# 'G' in D4RL's maze2d strings is the goal cell we fix here.
MAZES: dict[str, MazeSpec] = {
    "umaze": MazeSpec(
        "umaze",
        _parse("##### #...# ###.# #...# #####"),
        goal_cell=(1, 1),
        play_goal_cells=((1, 1), (1, 3), (3, 1), (3, 3)),
    ),
    "medium": MazeSpec(
        "medium",
        _parse("######## #..##..# #..#...# ##...### #..#...# #.#..#.# #...#..# ########"),
        goal_cell=(6, 6),
        play_goal_cells=((6, 6), (1, 1), (1, 6), (4, 1), (6, 3), (3, 4)),
    ),
    "large": MazeSpec(
        "large",
        _parse(
            "############ #....#.....# #.##.#.#.#.# #......#...# #.####.###.# "
            "#..#.#.....# ##.#.#.#.### #..#...#...# ############"
        ),
        goal_cell=(7, 9),
        play_goal_cells=((7, 9), (1, 1), (1, 10), (3, 4), (5, 4), (7, 1), (7, 5), (3, 8)),
    ),
}

#: Gymnasium ids of the evaluation envs (registered on import; Minari stores them as env specs).
GYM_IDS = {name: f"ppl_torchrl/PointMazeGen-{name}-v0" for name in MAZES}


def sparse_reward(xy: np.ndarray, goal_xy: np.ndarray) -> np.ndarray:
    """``1.0`` where ``||xy - goal|| <= GOAL_RADIUS``, else ``0.0`` (works on ``[..., 2]`` batches)."""
    dist = np.linalg.norm(np.asarray(xy, dtype=np.float64) - np.asarray(goal_xy, dtype=np.float64), axis=-1)
    return (dist <= GOAL_RADIUS).astype(np.float32)


class PointMazeGoalEnv(gym.Env):
    """Gymnasium env: PointMaze with a fixed goal, sparse reward, 4-dim float32 observation.

    Never terminates (D4RL maze2d semantics); wrap with ``gymnasium.wrappers.TimeLimit`` (as
    :func:`make_pointmaze_env` does) for the evaluation time limit. ``info["success"]`` is true
    when the ball is within :data:`GOAL_RADIUS` of the goal. ``reset(options={"reset_cell": (i, j)})``
    starts in a chosen cell; otherwise the start cell is uniform over the free cells except the goal
    cell. All randomness comes from ``self.np_random`` (seeded by ``reset(seed=...)``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 100}

    def __init__(self, maze: str = "umaze", render_mode: str | None = None):
        if maze not in MAZES:
            raise ValueError(f"Unknown maze {maze!r}; choose one of {sorted(MAZES)}.")
        # Imported here so that importing this module (e.g. for MAZES) does not need mujoco.
        from ppl_torchrl.envs.gym_suites import import_robotics, private_tempdir

        import_robotics("PointMaze")  # without the Adroit notice
        from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv

        self.spec_maze = MAZES[maze]
        with private_tempdir():  # the maze's MJCF file is deleted once MuJoCo has read it
            self._inner = PointMazeEnv(
                maze_map=[list(r) for r in self.spec_maze.maze_map],
                render_mode=render_mode,
                reward_type="sparse",
                continuing_task=True,
                reset_target=False,
            )
        self.render_mode = render_mode
        self.goal = self.spec_maze.goal_xy
        self.start_cells = tuple(c for c in self.spec_maze.free_cells if c != self.spec_maze.goal_cell)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._state = np.zeros(4, dtype=np.float64)

    # -- helpers -----------------------------------------------------------------------------
    def _observe(self) -> np.ndarray:
        data = self._inner.point_env.data
        self._state = np.concatenate([data.qpos, data.qvel]).astype(np.float64)
        return self._state.astype(np.float32)

    def _info(self) -> dict:
        return {"success": bool(np.linalg.norm(self._state[:2] - self.goal) <= GOAL_RADIUS)}

    @property
    def position(self) -> np.ndarray:
        """The ball's (x, y) in float64 (the observation is its float32 rounding)."""
        return self._state[:2].copy()

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        cell = (options or {}).get("reset_cell")
        if cell is None:
            cell = self.start_cells[int(self.np_random.integers(len(self.start_cells)))]
        elif tuple(cell) not in self.spec_maze.free_cells:
            raise ValueError(f"reset_cell {tuple(cell)} is a wall or outside the maze; free cells: {self.spec_maze.free_cells}.")
        xy = self.spec_maze.cell_to_xy(cell) + self.np_random.uniform(-POSITION_NOISE, POSITION_NOISE, size=2)
        # The inner env's own reset only builds its state; we then place the ball ourselves so that
        # every random number comes from self.np_random.
        self._inner.reset(seed=None if seed is None else int(seed), options={
            "goal_cell": np.array(self.spec_maze.goal_cell), "reset_cell": np.array(cell)})
        self._inner.goal = self.goal.copy()
        self._inner.update_target_site_pos()
        self._inner.point_env.set_state(xy, np.zeros(2))
        return self._observe(), self._info()

    def step(self, action):
        action = np.asarray(action, dtype=np.float64).reshape(2)
        if not np.all(np.isfinite(action)):
            raise ValueError(f"PointMaze action must be finite, got {action}.")
        self._inner.point_env.step(np.clip(action, -1.0, 1.0))
        obs = self._observe()
        reward = float(sparse_reward(self._state[:2], self.goal))
        return obs, reward, False, False, self._info()

    def render(self):
        return self._inner.render()

    def close(self):
        self._inner.close()


def _maze_of(env_name: str) -> str:
    prefix = "pointmaze-"
    maze = env_name[len(prefix):] if env_name.startswith(prefix) else None
    if maze not in MAZES:
        raise ValueError(
            f"Unknown PointMaze env name {env_name!r}; expected one of "
            f"{[prefix + m for m in MAZES]} (the env_name of the pointmaze-*-gen-v0 dataset specs)."
        )
    return maze


def time_limit(maze: str) -> int:
    """The evaluation time limit of ``maze`` (D4RL maze2d's: 300 / 600 / 800 steps), as the dataset registry
    states it for the maze's generated datasets."""
    return get_dataset_spec(f"pointmaze-{maze}-gen-v0").max_episode_steps


def make_pointmaze_env(env_name: str, seed: int | None = 0, *, max_episode_steps: int | None = None) -> gym.Env:
    """The evaluation env of ``env_name`` (``"pointmaze-umaze"``, ``"pointmaze-medium"``, ``"pointmaze-large"``).

    Wrapped in ``TimeLimit(max_episode_steps)`` (default: the maze's maze2d limit, the same as the
    generated datasets' ``DatasetSpec.max_episode_steps``) and seeded with ``seed`` (its first
    ``reset()`` without a seed uses it). Returns a plain ``gymnasium.Env``; wrap it with TorchRL's
    ``GymWrapper`` for TorchRL rollouts.
    """
    maze = _maze_of(env_name)
    steps = time_limit(maze) if max_episode_steps is None else int(max_episode_steps)
    env = gym.wrappers.TimeLimit(PointMazeGoalEnv(maze), max_episode_steps=steps)
    if seed is not None:
        env.reset(seed=int(seed))
    return env


def _register() -> None:
    """Registers the gymnasium ids and (when the envs package offers it) the eval-env factories."""
    for maze, gym_id in GYM_IDS.items():
        if gym_id not in gym.registry:
            gym.register(
                gym_id,
                entry_point="ppl_torchrl.envs.pointmaze:PointMazeGoalEnv",
                kwargs={"maze": maze},
                max_episode_steps=time_limit(maze),
            )
    try:
        from ppl_torchrl.envs import register_eval_env
    except ImportError:  # the envs package API is not there: the factory is still importable here
        return
    for maze in MAZES:
        # The envs package calls factories with no arguments and adds the time limit itself.
        register_eval_env(f"pointmaze-{maze}", partial(PointMazeGoalEnv, maze), reports_success=True, overwrite=True)


_register()
