"""OGBench single-task dataset ids: their grammar, parsed (Park et al., ICLR 2025).

A single-task id names a dataset file and a task: ``cube-single-play-singletask-task2-v0`` is the file
``cube-single-play-v0.npz`` relabelled for task 2 of ``cube-single`` (``...-singletask-v0`` is the environment's
default task). Ids with ``-gen`` before the version (``cube-single-play-gen-singletask-task2-v0``, file
``cube-single-play-gen-v0.npz``) name the datasets this project regenerates with OGBench's own environments and
oracles; the two are never confused. Reading the files is :mod:`ppl_torchrl.data.ogbench`'s job, evaluating on
the tasks :mod:`ppl_torchrl.envs.ogbench`'s; both parse ids here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ppl_torchrl.errors import MissingPackageError

__all__ = [
    "DATASET_TYPES",
    "DEFAULT_TASK",
    "EPISODE_STEPS",
    "OGBenchId",
    "TASKS",
    "default_task",
    "import_ogbench",
    "is_ogbench_id",
    "ogbench_single_task_ids",
    "parse_ogbench_id",
]

#: why ``ogbench`` may be missing: pyproject.toml installs it only below Python 3.13, because its dependency chain
#: (dm_control -> labmaze) publishes no labmaze wheel for 3.13+, and building one needs bazel
OGBENCH_MISSING = ("OGBench is not installed, and OGBench ids, tasks and regenerated datasets need it: pip install "
                   "'ogbench>=1.2' (Python 3.10-3.12; on 3.13+ its dependency labmaze has no wheel and builds only "
                   "with bazel, so use a Python 3.12 environment).")


def import_ogbench():
    """The ``ogbench`` module (importing it registers its environments); a one-line error where it is missing."""
    try:
        import ogbench
    except ImportError:
        raise MissingPackageError(OGBENCH_MISSING) from None
    return ogbench

#: environment family -> dataset types OGBench publishes for it (OGBench README, "Datasets").
DATASET_TYPES: dict[str, tuple[str, ...]] = {
    **{f"pointmaze-{m}": ("navigate", "stitch") for m in ("medium", "large", "giant", "teleport")},
    **{f"antmaze-{m}": ("navigate", "stitch", "explore") for m in ("medium", "large", "teleport")},
    "antmaze-giant": ("navigate", "stitch"),  # no explore file (OGBench's data_gen_scripts/commands.sh)
    **{f"humanoidmaze-{m}": ("navigate", "stitch") for m in ("medium", "large", "giant")},
    **{f"antsoccer-{m}": ("navigate", "stitch") for m in ("arena", "medium")},
    **{f"cube-{m}": ("play", "noisy") for m in ("single", "double", "triple", "quadruple")},
    "scene": ("play", "noisy"),
    **{f"puzzle-{m}": ("play", "noisy") for m in ("3x3", "4x4", "4x5", "4x6")},
}
#: each family's time limit: ``max_episode_steps`` of OGBench's gymnasium registrations (ogbench 1.2), here so that an
#: id's spec is known without OGBench installed (tests/test_ogbench.py compares them with the installed ones)
EPISODE_STEPS: dict[str, int] = {
    **{f"{maze}-{m}": 1000 for maze in ("pointmaze", "antmaze") for m in ("medium", "large", "giant", "teleport")},
    "humanoidmaze-medium": 2000, "humanoidmaze-large": 2000, "humanoidmaze-giant": 4000,
    "antsoccer-arena": 1000, "antsoccer-medium": 1000,
    "cube-single": 200, "cube-double": 500, "cube-triple": 1000, "cube-quadruple": 1000,
    "scene": 750,
    "puzzle-3x3": 500, "puzzle-4x4": 500, "puzzle-4x5": 1000, "puzzle-4x6": 1000,
}
#: default task of each family (OGBench's ``...-singletask-v0``; FQL README, "Reproducing the main results").
DEFAULT_TASK = {"cube": 2, "scene": 2, "puzzle": 4, "antsoccer": 4}
TASKS = (1, 2, 3, 4, 5)

_ID = re.compile(
    r"^(?P<family>scene|[a-z0-9x]+-[a-z0-9x]+)-(?P<kind>[a-z]+)(?P<gen>-gen)?-singletask(?:-task(?P<task>\d))?-v0$"
)


@dataclass(frozen=True)
class OGBenchId:
    """A parsed single-task id. ``task`` is the explicit task number (the default task when the id has none)."""

    dataset_id: str
    family: str  # "cube-single"
    kind: str  # "play"
    generated: bool
    task: int

    @property
    def dataset_name(self) -> str:
        """The file stem: ``cube-single-play-v0`` (published) or ``cube-single-play-gen-v0`` (made here)."""
        return f"{self.family}-{self.kind}{'-gen' if self.generated else ''}-v0"

    @property
    def env_id(self) -> str:
        """OGBench's single-task environment id (gymnasium registry): ``cube-single-singletask-task2-v0``."""
        return f"{self.family}-singletask-task{self.task}-v0"

    @property
    def published_id(self) -> str:
        """The OGBench dataset id this one stands for (itself for a published id)."""
        return f"{self.family}-{self.kind}-singletask-task{self.task}-v0"

    @property
    def canonical_id(self) -> str:
        """The id with an explicit task (``...-singletask-v0`` -> ``...-singletask-task2-v0``)."""
        return f"{self.family}-{self.kind}{'-gen' if self.generated else ''}-singletask-task{self.task}-v0"


def default_task(family: str) -> int:
    """The task of ``<family>-<type>-singletask-v0``: OGBench's default task of the family (1 where it has none)."""
    return DEFAULT_TASK.get(family.split("-")[0], 1)


def parse_ogbench_id(dataset_id: str) -> OGBenchId | None:
    """The parsed id, or ``None`` if ``dataset_id`` is not an OGBench single-task id of a known family/type."""
    m = _ID.match(str(dataset_id))
    if m is None or m["family"] not in DATASET_TYPES or m["kind"] not in DATASET_TYPES[m["family"]]:
        return None
    task = int(m["task"]) if m["task"] else default_task(m["family"])
    if task not in TASKS:
        return None
    return OGBenchId(str(dataset_id), m["family"], m["kind"], bool(m["gen"]), task)


def is_ogbench_id(dataset_id) -> bool:
    """Whether ``dataset_id`` is an OGBench single-task id (any other value, a path for one, is not)."""
    return isinstance(dataset_id, str) and parse_ogbench_id(dataset_id) is not None


def ogbench_single_task_ids(generated: bool = False) -> list[str]:
    """Every single-task id with an explicit task (``generated``: the ``-gen`` ids instead of the published ones)."""
    gen = "-gen" if generated else ""
    return [f"{fam}-{kind}{gen}-singletask-task{t}-v0" for fam, kinds in DATASET_TYPES.items() for kind in kinds
            for t in TASKS]
