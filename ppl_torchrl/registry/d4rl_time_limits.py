"""The time limit of every D4RL dataset id, for the files that have no ``timeouts`` key.

D4RL's older files (the v0 Gym-MuJoCo files, maze2d, kitchen) store no ``timeouts``. D4RL's own
``qlearning_dataset`` then ends an episode every ``env._max_episode_steps`` steps
(:func:`ppl_torchrl.data.transitions.time_limit_timeouts`), so reading such a file needs the environment's time
limit. These are the ``max_episode_steps`` of D4RL's registrations (``d4rl/<suite>/__init__.py`` of
Farama-Foundation/D4RL, commit 89141a6, 2024-11-18) for every id of TorchRL's D4RL URL table.
"""
from __future__ import annotations

__all__ = ["D4RL_TIME_LIMITS", "d4rl_time_limit"]

#: Every id of TorchRL's D4RL URL table not listed here has a time limit of 1000 steps (Gym-MuJoCo, AntMaze medium
#: and large, the bullet locomotion tasks, carla-town).
D4RL_TIME_LIMITS: dict[str, int] = {
    **dict.fromkeys((
        "minigrid-fourrooms-random-v0", "minigrid-fourrooms-v0",
    ), 50),
    **dict.fromkeys((
        "pen-cloned-v0", "pen-cloned-v1", "pen-expert-v0", "pen-expert-v1", "pen-human-v0", "pen-human-v1",
    ), 100),
    **dict.fromkeys((
        "bullet-maze2d-open-v0", "maze2d-open-dense-v0", "maze2d-open-v0", "maze2d-umaze-dense-v0",
        "maze2d-umaze-v0",
    ), 150),
    **dict.fromkeys((
        "door-cloned-v0", "door-cloned-v1", "door-expert-v0", "door-expert-v1", "door-human-v0", "door-human-v1",
        "hammer-cloned-v0", "hammer-cloned-v1", "hammer-expert-v0", "hammer-expert-v1", "hammer-human-v0",
        "hammer-human-v1", "pen-human-longhorizon-v0", "relocate-cloned-v0", "relocate-cloned-v1",
        "relocate-expert-v0", "relocate-expert-v1", "relocate-human-v0", "relocate-human-v1",
    ), 200),
    **dict.fromkeys((
        "carla-lane-render-v0", "carla-lane-v0", "maze2d-medium-dense-v0", "maze2d-medium-v0",
    ), 250),
    **dict.fromkeys((
        "kitchen-complete-v0", "kitchen-mixed-v0", "kitchen-partial-v0",
    ), 280),
    **dict.fromkeys((
        "bullet-maze2d-umaze-v0", "door-human-longhorizon-v0", "maze2d-eval-umaze-dense-v1", "maze2d-eval-umaze-v1",
        "maze2d-umaze-dense-v1", "maze2d-umaze-v1",
    ), 300),
    **dict.fromkeys((
        "flow-ring-controller-v0", "flow-ring-random-v0", "relocate-human-longhorizon-v0",
    ), 500),
    **dict.fromkeys((
        "bullet-maze2d-medium-v0", "hammer-human-longhorizon-v0", "maze2d-eval-medium-dense-v1",
        "maze2d-eval-medium-v1", "maze2d-large-dense-v0", "maze2d-large-v0", "maze2d-medium-dense-v1",
        "maze2d-medium-v1",
    ), 600),
    **dict.fromkeys((
        "antmaze-eval-umaze-diverse-v0", "antmaze-eval-umaze-v0", "antmaze-umaze-diverse-v0",
        "antmaze-umaze-diverse-v1", "antmaze-umaze-diverse-v2", "antmaze-umaze-v0", "antmaze-umaze-v1",
        "antmaze-umaze-v2",
    ), 700),
    **dict.fromkeys((
        "flow-merge-controller-v0", "flow-merge-random-v0",
    ), 750),
    **dict.fromkeys((
        "bullet-maze2d-large-v0", "maze2d-eval-large-dense-v1", "maze2d-eval-large-v1", "maze2d-large-dense-v1",
        "maze2d-large-v1",
    ), 800),
}


def d4rl_time_limit(dataset_id: str) -> int:
    """The time limit of the D4RL environment of ``dataset_id``, an id of TorchRL's D4RL URL table."""
    return D4RL_TIME_LIMITS.get(dataset_id, 1000)
