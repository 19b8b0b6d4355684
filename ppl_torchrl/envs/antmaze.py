"""A D4RL-equivalent ``antmaze-*-v2`` evaluation environment on the ``mujoco`` bindings.

D4RL's AntMaze needs mujoco-py and gym 0.23, which no longer install; Gymnasium-Robotics'
``AntMaze_*`` is a different task (world frame centred on the maze with y flipped, its own ant
model and control rate, success radius 0.45, no termination at the goal, symmetric goal noise).
This module rebuilds the D4RL task from the facts in D4RL's ``d4rl/locomotion/`` (``ant.py``,
``maze_env.py``, ``goal_reaching_env.py``, ``wrappers.py``, ``assets/ant.xml`` and the
``antmaze-*-v2`` registrations in ``locomotion/__init__.py``). The MJCF is generated here.

D4RL facts reproduced (antmaze-{umaze,umaze-diverse,medium-*,large-*}-v2):

* maze maps ``U_MAZE_TEST``/``BIG_MAZE_TEST``/``HARDEST_MAZE_TEST`` (one goal cell each),
  ``maze_size_scaling=4``, ``maze_height=0.5``; the world origin is the centre of the reset
  cell ``r``, so cell ``(row, col)`` has its centre at ``(col*4 - 4, row*4 - 4)``;
* ant from D4RL's ``ant.xml``: timestep 0.02, RK4, ``frame_skip=5`` (control at 10 Hz), 8 motors
  with ``ctrlrange`` [-30, 30] and gear 1; a policy action ``a`` in [-1, 1] is mapped like
  D4RL's ``NormalizedBoxEnv``: ``ctrl = clip(-30 + (a + 1) * 30, -30, 30)``;
* observation ``qpos[:15] ++ qvel[:14]`` (29 dims, the ant's x/y included, no goal);
* reset: ``qpos = qpos0 + U(-0.1, 0.1)``, ``qvel = N(0, 0.1^2)`` (``qpos0``: torso at
  (0, 0, 0.75), identity quaternion, hinge angles 0), no random start cell (``non_zero_reset=False``);
* goal resampled at every reset (``v2_resets=True``): the goal cell's corner
  ``(col*4 - 4, row*4 - 4)`` plus ``U(0, 1)`` plus ``U(0, 0.5)`` per axis, clipped at 0
  (one-sided noise, as ``_rowcol_to_xy(add_random_noise=True)`` + ``goal_sampler``);
* sparse reward ``1`` when ``||xy - goal|| <= 0.5`` and (``eval=True``) the episode terminates at
  the first goal reach, so an episode's return is its success; the ant's own "unhealthy"
  termination is ignored as in D4RL; time limit 700 (umaze) / 1000 (medium, large) steps.

Residual differences (also in ``docs/envs.md``): MuJoCo 3/4 bindings instead of MuJoCo 2.1 via
mujoco-py; goal noise drawn from the env's seeded generator (D4RL used the global ``np.random``);
visual-only assets (textures, light) omitted.
"""
from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np

#: D4RL's success radius (``goal_reaching_env.py``): ``||xy - goal|| <= 0.5``.
SUCCESS_RADIUS = 0.5
MAZE_SIZE_SCALING = 4.0
MAZE_HEIGHT = 0.5
FRAME_SKIP = 5
TIMESTEP = 0.02
CTRL_LIMIT = 30.0
OBS_DIM = 29
ACT_DIM = 8

R, G = "r", "g"

#: D4RL's eval maps for the v2 datasets (``*_TEST`` in ``maze_env.py``): 1 = wall, r = reset, g = goal.
MAZES: dict[str, list[list]] = {
    "umaze": [
        [1, 1, 1, 1, 1],
        [1, R, 0, 0, 1],
        [1, 1, 1, 0, 1],
        [1, G, 0, 0, 1],
        [1, 1, 1, 1, 1],
    ],
    "medium": [
        [1, 1, 1, 1, 1, 1, 1, 1],
        [1, R, 0, 1, 1, 0, 0, 1],
        [1, 0, 0, 1, 0, 0, 0, 1],
        [1, 1, 0, 0, 0, 1, 1, 1],
        [1, 0, 0, 1, 0, 0, 0, 1],
        [1, 0, 1, 0, 0, 1, 0, 1],
        [1, 0, 0, 0, 1, 0, G, 1],
        [1, 1, 1, 1, 1, 1, 1, 1],
    ],
    "large": [
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        [1, R, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
        [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1],
        [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
        [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1],
        [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1],
        [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1],
        [1, 0, 0, 1, 0, 0, 0, 1, 0, G, 0, 1],
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    ],
}

# (name, x sign, y sign, ankle axis, ankle range in degrees), in the body order of D4RL's ant.xml.
_LEGS = (
    ("front_left_leg", 1, 1, "-1 1 0", "30 70"),
    ("front_right_leg", -1, 1, "1 1 0", "-70 -30"),
    ("back_leg", -1, -1, "-1 1 0", "-70 -30"),
    ("right_back_leg", 1, -1, "1 1 0", "30 70"),
)
# Actuator order of D4RL's ant.xml (leg 4 first): the action layout of the datasets.
_ACTUATED_LEGS = (4, 1, 2, 3)


def find_cells(maze: list[list], kind) -> list[tuple[int, int]]:
    """(row, col) of every cell of ``kind`` (``1``, ``R`` or ``G``) in ``maze``."""
    return [(i, j) for i, row in enumerate(maze) for j, c in enumerate(row) if c == kind]


def cell_corner_xy(maze: list[list], cell: tuple[int, int]) -> np.ndarray:
    """World x/y of a cell as D4RL's ``_rowcol_to_xy`` without noise (the reset cell is at 0, 0).

    D4RL's blocks are centred on these points, so despite the name this is the cell centre.
    """
    (r0, c0), = find_cells(maze, R)
    row, col = cell
    return np.array([(col - c0) * MAZE_SIZE_SCALING, (row - r0) * MAZE_SIZE_SCALING])


def build_mjcf(maze: list[list]) -> str:
    """The MJCF of D4RL's ant (``ant.xml``) with the maze's walls appended as static boxes."""
    legs = []
    for k, (name, sx, sy, axis, rng) in enumerate(_LEGS, start=1):
        a = f"{0.2 * sx} {0.2 * sy} 0"
        f = f"{0.4 * sx} {0.4 * sy} 0"
        legs.append(
            f'<body name="{name}" pos="0 0 0">'
            f'<geom name="aux_{k}_geom" type="capsule" size="0.08" fromto="0 0 0 {a}"/>'
            f'<body name="aux_{k}" pos="{a}">'
            f'<joint name="hip_{k}" type="hinge" pos="0 0 0" axis="0 0 1" range="-30 30"/>'
            f'<geom name="leg_{k}_geom" type="capsule" size="0.08" fromto="0 0 0 {a}"/>'
            f'<body name="foot_{k}" pos="{a}">'
            f'<joint name="ankle_{k}" type="hinge" pos="0 0 0" axis="{axis}" range="{rng}"/>'
            f'<geom name="ankle_{k}_geom" type="capsule" size="0.08" fromto="0 0 0 {f}"/>'
            "</body></body></body>"
        )
    half_h = MAZE_HEIGHT / 2 * MAZE_SIZE_SCALING
    half_w = 0.5 * MAZE_SIZE_SCALING
    walls = []
    for cell in find_cells(maze, 1):
        x, y = cell_corner_xy(maze, cell)
        walls.append(
            f'<geom name="block_{cell[0]}_{cell[1]}" type="box" pos="{x} {y} {half_h}" '
            f'size="{half_w} {half_w} {half_h}" contype="1" conaffinity="1" rgba="0.7 0.5 0.3 1"/>'
        )
    motors = "".join(
        f'<motor joint="{j}_{k}" ctrlrange="-{CTRL_LIMIT} {CTRL_LIMIT}" ctrllimited="true"/>'
        for k in _ACTUATED_LEGS
        for j in ("hip", "ankle")
    )
    return (
        '<mujoco model="d4rl_antmaze">'
        '<compiler inertiafromgeom="true" angle="degree"/>'
        f'<option timestep="{TIMESTEP}" integrator="RK4"/>'
        '<default><joint limited="true" armature="1" damping="1"/>'
        '<geom condim="3" conaffinity="0" margin="0.01" friction="1 0.5 0.5" solref=".02 1" '
        'solimp=".8 .8 .01" density="5.0"/></default>'
        "<worldbody>"
        '<geom name="floor" pos="0 0 0" size="40 40 40" type="plane" conaffinity="1" condim="3"/>'
        '<body name="torso" pos="0 0 0.75">'
        '<geom name="torso_geom" type="sphere" size="0.25" pos="0 0 0"/>'
        '<joint name="root" type="free" limited="false" pos="0 0 0" margin="0.01" armature="0" damping="0"/>'
        + "".join(legs)
        + "</body>"
        + "".join(walls)
        + "</worldbody><actuator>"
        + motors
        + "</actuator></mujoco>"
    )


class D4RLAntMazeEnv(gym.Env):
    """D4RL ``antmaze-<maze>-v2`` evaluation task (see the module docstring for every constant).

    Args:
        maze: ``"umaze"``, ``"medium"`` or ``"large"``.
        terminate_at_goal: D4RL's ``eval=True`` behaviour (episode ends at the first goal reach).

    ``info`` carries ``success`` (goal reached this step) and ``goal`` (the episode's target x/y).
    """

    metadata = {"render_modes": []}

    def __init__(self, maze: str = "umaze", *, terminate_at_goal: bool = True):
        if maze not in MAZES:
            raise KeyError(f"Unknown AntMaze layout {maze!r}; choose one of {sorted(MAZES)}.")
        self.maze_name = maze
        self.maze_map = MAZES[maze]
        self.terminate_at_goal = terminate_at_goal
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(self.maze_map))
        self.data = mujoco.MjData(self.model)
        if (self.model.nq, self.model.nv, self.model.nu) != (15, 14, ACT_DIM):
            raise RuntimeError("AntMaze MJCF does not have D4RL's 15/14/8 qpos/qvel/ctrl sizes.")
        self.init_qpos = self.model.qpos0.copy()
        self.goal_cell = find_cells(self.maze_map, G)[0]
        self.goal = cell_corner_xy(self.maze_map, self.goal_cell)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)

    @property
    def dt(self) -> float:
        """Control period: 0.02 s x 5 substeps = 0.1 s."""
        return TIMESTEP * FRAME_SKIP

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """D4RL's ``goal_sampler``: cell point + U(0, 1) + U(0, 0.5) per axis, clipped at 0."""
        xy = cell_corner_xy(self.maze_map, self.goal_cell)
        xy = xy + rng.uniform(0.0, 0.25 * MAZE_SIZE_SCALING, size=2)
        xy = xy + rng.uniform(0.0, 0.5, size=2) * 0.25 * MAZE_SIZE_SCALING
        return np.maximum(xy, 0.0)

    def set_state(self, qpos, qvel) -> None:
        """Puts the simulator in (qpos, qvel) like D4RL's ``set_state`` (then ``mj_forward``)."""
        qpos = np.asarray(qpos, dtype=np.float64)
        qvel = np.asarray(qvel, dtype=np.float64)
        if qpos.shape != (self.model.nq,) or qvel.shape != (self.model.nv,):
            raise ValueError(
                f"set_state needs qpos of shape ({self.model.nq},) and qvel ({self.model.nv},), "
                f"got {qpos.shape} and {qvel.shape}."
            )
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = qpos
        self.data.qvel[:] = qvel
        mujoco.mj_forward(self.model, self.data)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[:15], self.data.qvel[:14]])

    def xy(self) -> np.ndarray:
        """Torso x/y (``qpos[:2]``)."""
        return self.data.qpos[:2].copy()

    def is_success(self, xy) -> bool:
        """D4RL's goal test: ``||xy - goal|| <= 0.5``."""
        return bool(np.linalg.norm(np.asarray(xy) - self.goal) <= SUCCESS_RADIUS)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.goal = self.sample_goal(self.np_random)  # v2_resets: a new goal every episode
        qpos = self.init_qpos + self.np_random.uniform(-0.1, 0.1, size=self.model.nq)
        qvel = self.np_random.standard_normal(self.model.nv) * 0.1
        self.set_state(qpos, qvel)
        return self._obs(), {"success": False, "goal": self.goal.copy()}

    def simulate(self, action) -> None:
        """Applies one policy action (in [-1, 1]) for ``frame_skip`` physics steps, without reward logic."""
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (ACT_DIM,):
            raise ValueError(f"AntMaze actions have {ACT_DIM} dims, got shape {action.shape}.")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"AntMaze got a non-finite action {action}.")
        # NormalizedBoxEnv: lb + (a + 1) / 2 * (ub - lb), clipped to [lb, ub].
        self.data.ctrl[:] = np.clip(-CTRL_LIMIT + (action + 1.0) * CTRL_LIMIT, -CTRL_LIMIT, CTRL_LIMIT)
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)

    def step(self, action):
        self.simulate(action)
        success = self.is_success(self.xy())
        terminated = success and self.terminate_at_goal
        info = {"success": success, "goal": self.goal.copy()}
        return self._obs(), float(success), terminated, False, info
