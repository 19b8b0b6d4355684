"""Behaviour policies for PointMaze data: a BFS waypoint planner with a PD controller.

This is D4RL maze2d's data-collection recipe (``WaypointController``: shortest path over the
maze grid, then ``action = kp * (waypoint - pos) - kd * vel``, Gaussian action noise, clip to
[-1, 1]), rewritten for the Gymnasium-Robotics mazes, plus the deliberately inefficient
behaviours that the mixed-quality datasets need (:data:`BEHAVIORS`).

Everything random draws from a ``numpy.random.Generator`` passed in by the caller, so one
seed determines a whole dataset.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ppl_torchrl.envs.pointmaze import GOAL_RADIUS, POSITION_NOISE, MazeSpec

__all__ = ["BEHAVIORS", "BehaviorSpec", "MazeGraph", "WaypointPlanner"]

# (row, col) steps in a fixed order, so that ties in BFS resolve the same way on every run.
_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))


class MazeGraph:
    """Shortest paths between the free cells of a maze (4-connected grid, BFS).

    ``next_cell(cell, goal)`` is the neighbour of ``cell`` one step closer to ``goal``; tables
    are built once per goal cell and cached.
    """

    def __init__(self, maze: MazeSpec):
        self.maze = maze
        self.free = set(maze.free_cells)
        self._next: dict[tuple[int, int], dict[tuple[int, int], tuple[int, int]]] = {}
        self._dist: dict[tuple[int, int], dict[tuple[int, int], int]] = {}

    def _build(self, goal: tuple[int, int]) -> None:
        if goal not in self.free:
            raise ValueError(f"Goal cell {goal} is not a free cell of maze {self.maze.name!r}.")
        dist = {goal: 0}
        queue = deque([goal])
        while queue:
            c = queue.popleft()
            for di, dj in _MOVES:
                n = (c[0] + di, c[1] + dj)
                if n in self.free and n not in dist:
                    dist[n] = dist[c] + 1
                    queue.append(n)
        nxt = {}
        for c in dist:
            if c == goal:
                continue
            nxt[c] = next(
                (c[0] + di, c[1] + dj) for di, dj in _MOVES if dist.get((c[0] + di, c[1] + dj)) == dist[c] - 1
            )
        self._dist[goal], self._next[goal] = dist, nxt

    def distance(self, cell, goal) -> int:
        """Number of cell-to-cell moves on a shortest path from ``cell`` to ``goal``."""
        goal, cell = tuple(goal), tuple(cell)
        if goal not in self._dist:
            self._build(goal)
        return self._dist[goal][cell]

    def next_cell(self, cell, goal) -> tuple[int, int]:
        goal, cell = tuple(goal), tuple(cell)
        if goal not in self._next:
            self._build(goal)
        if cell == goal:
            return goal
        try:
            return self._next[goal][cell]
        except KeyError:
            raise ValueError(f"Cell {cell} is not a free cell of maze {self.maze.name!r} (ball outside the maze?).") from None


@dataclass(frozen=True)
class BehaviorSpec:
    """How one behaviour acts.

    Attributes:
        label: the integer stored in ``infos/behavior``.
        noise_std: std of the Gaussian added to the PD action before clipping.
        detour: first visit a random far-away cell, then head for the goal.
        random_actions: ignore the planner; act uniformly at random in [-1, 1] (reference minimum).
        wander_prob: every ``wander_steps`` steps, with this probability the next ``wander_steps``
            actions are one uniformly random action held fixed instead of the planner's
            (temporally correlated noise: Gaussian noise alone barely slows a saturated PD
            controller, measured in docs/datagen.md).
        wander_steps: length of a wandering segment.
    """

    label: int
    noise_std: float = 0.0
    detour: bool = False
    random_actions: bool = False
    wander_prob: float = 0.0
    wander_steps: int = 20


#: Behaviour name -> spec. Labels are stable (they are stored in files); names go in the file attrs.
BEHAVIORS: dict[str, BehaviorSpec] = {
    "planner": BehaviorSpec(0, noise_std=0.2),
    "wander": BehaviorSpec(1, noise_std=0.2, wander_prob=0.5, wander_steps=20),
    "detour": BehaviorSpec(2, noise_std=0.2, detour=True),
    "expert": BehaviorSpec(3, noise_std=0.0),
    "random": BehaviorSpec(4, random_actions=True),
}


class WaypointPlanner:
    """PD controller that follows BFS waypoints to a goal position, with Gaussian action noise.

    Per step: find the ball's cell; if it is the goal's cell, steer at the goal position, else at
    the centre of the next cell on the shortest path. ``action = clip(kp * (target - pos) - kd * vel
    + noise, -1, 1)``. The gains are D4RL maze2d's (``p_gain=10, d_gain=-1``).

    Goal modes (``goal_mode``):
        * ``"fixed"``: always the env's goal; once there, hover (PD on the goal).
        * ``"play"``: a goal drawn from ``maze.play_goal_cells``; a new one when reached.
        * ``"diverse"``: a uniformly random free cell; a new one when reached.
    Goal positions are cell centres plus uniform +-0.25 m noise, except the fixed goal.
    """

    def __init__(self, maze: MazeSpec, behavior: str = "planner", goal_mode: str = "fixed",
                 kp: float = 10.0, kd: float = 1.0, graph: MazeGraph | None = None):
        if behavior not in BEHAVIORS:
            raise ValueError(f"Unknown behaviour {behavior!r}; choose one of {sorted(BEHAVIORS)}.")
        if goal_mode not in ("fixed", "play", "diverse"):
            raise ValueError(f"goal_mode must be 'fixed', 'play' or 'diverse', got {goal_mode!r}.")
        self.maze, self.behavior, self.spec = maze, behavior, BEHAVIORS[behavior]
        self.goal_mode, self.kp, self.kd = goal_mode, kp, kd
        self.graph = graph or MazeGraph(maze)
        self.goal_xy = maze.goal_xy
        self.goal_cell = maze.goal_cell
        self._detour_cell: tuple[int, int] | None = None
        self._t = 0
        self._held: np.ndarray | None = None

    # -- goals ---------------------------------------------------------------------------------
    def _draw_goal(self, rng: np.random.Generator, avoid: tuple[int, int] | None) -> None:
        if self.goal_mode == "fixed":
            self.goal_cell, self.goal_xy = self.maze.goal_cell, self.maze.goal_xy
            return
        cells = self.maze.play_goal_cells if self.goal_mode == "play" else self.maze.free_cells
        cells = [c for c in cells if c != avoid] or list(cells)
        self.goal_cell = tuple(cells[int(rng.integers(len(cells)))])
        self.goal_xy = self.maze.cell_to_xy(self.goal_cell) + rng.uniform(-POSITION_NOISE, POSITION_NOISE, 2)

    def begin_episode(self, start_xy: np.ndarray, rng: np.random.Generator) -> None:
        """Chooses this episode's first goal (and detour cell) for a ball starting at ``start_xy``."""
        start = self.maze.xy_to_cell(start_xy)
        self._draw_goal(rng, avoid=start)
        self._detour_cell = None
        self._t, self._held = 0, None
        if self.spec.detour:
            # The farthest-from-goal half of the free cells: a real detour, not a shortcut.
            cells = sorted(self.maze.free_cells, key=lambda c: (-self.graph.distance(c, self.goal_cell), c))
            cells = cells[: max(1, len(cells) // 2)]
            self._detour_cell = tuple(cells[int(rng.integers(len(cells)))])

    # -- acting --------------------------------------------------------------------------------
    def target(self, xy: np.ndarray) -> np.ndarray:
        """The position the PD controller steers at from ``xy``."""
        cell = self.maze.xy_to_cell(xy)
        goal_cell = self._detour_cell if self._detour_cell is not None else self.goal_cell
        if cell == goal_cell:
            return self.maze.cell_to_xy(goal_cell) if self._detour_cell is not None else self.goal_xy
        return self.maze.cell_to_xy(self.graph.next_cell(cell, goal_cell))

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One action (float32, in [-1, 1]) for observation ``obs = (x, y, vx, vy)``."""
        obs = np.asarray(obs, dtype=np.float64)
        xy, vel = obs[:2], obs[2:4]
        if self.spec.random_actions:
            return rng.uniform(-1.0, 1.0, 2).astype(np.float32)
        if self.spec.wander_prob > 0 and self._t % self.spec.wander_steps == 0:
            wander, held = rng.random() < self.spec.wander_prob, rng.uniform(-1.0, 1.0, 2)
            self._held = held.astype(np.float32) if wander else None
        self._t += 1
        if self._detour_cell is not None and self.maze.xy_to_cell(xy) == self._detour_cell:
            self._detour_cell = None  # detour visited: now head for the goal
        elif self.goal_mode != "fixed" and np.linalg.norm(xy - self.goal_xy) <= GOAL_RADIUS:
            self._draw_goal(rng, avoid=self.goal_cell)
        if self._held is not None:  # the planner still tracks goals, but its action is overridden
            return self._held.copy()
        action = self.kp * (self.target(xy) - xy) - self.kd * vel
        if self.spec.noise_std > 0:
            action = action + rng.normal(0.0, self.spec.noise_std, 2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)
