"""OGBench single-task environments as eval tasks (imported lazily by :func:`ppl_torchrl.envs.get_eval_env_factory`).

Eval task ``ogbench/<env id>`` is ``ogbench.make_env_and_datasets(<dataset id>, env_only=True)`` (OGBench's
documented way to build the task: ``gymnasium.make`` of ``<env id>`` with its time limit), with the installed
ogbench's success timing; ``ogbench/<env id>@post`` passes ``success_timing="post"`` (ogbench < 1.2.0, the FQL
paper's pinned 1.1.0: reward, ``terminated`` and ``info["success"]`` of a step computed on the next state).
Episodes end on success (``terminated``) or at the time limit; the score is the success rate
(:mod:`ppl_torchrl.evaluation.rollouts`). The observation is OGBench's state vector, as in its datasets.
"""
from __future__ import annotations


from ppl_torchrl.envs import register_eval_env
from ppl_torchrl.registry.ogbench_ids import DATASET_TYPES, TASKS, OGBenchId, import_ogbench


def make_ogbench_env(env_name: str):
    """The gymnasium env of eval task ``env_name`` (``ogbench/<env id>[@pre|@post]``)."""
    ogbench = import_ogbench()
    env_id, _, timing = env_name.removeprefix("ogbench/").partition("@")
    family = env_id.split("-singletask")[0]
    task = int(env_id.split("-task")[-1].split("-")[0])
    kind = DATASET_TYPES[family][0]
    dataset_id = OGBenchId("", family, kind, False, task).published_id
    kwargs = {"success_timing": timing} if timing else {}
    return ogbench.make_env_and_datasets(dataset_id, env_only=True, **kwargs)


for _family in DATASET_TYPES:
    for _task in TASKS:
        for _timing in ("", "@pre", "@post"):
            _name = f"ogbench/{_family}-singletask-task{_task}-v0{_timing}"
            register_eval_env(_name, make_ogbench_env, reports_success=True)
