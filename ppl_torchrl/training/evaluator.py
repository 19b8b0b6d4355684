"""A run's evaluation: ``evaluate(policy) -> dict`` on the task's environment, checked against the data's sizes before
training starts."""
from __future__ import annotations

from ppl_torchrl.errors import ConfigError


def make_evaluator(cfg, eval_id: str, state_mean, state_std, device, dataset_stats=None,
                   fix: str = "set dataset.eval_id to the task the data was recorded on"):
    """``evaluate(policy) -> dict`` on ``eval_id``'s env (section ``eval``); with ``dataset_stats`` (the training
    data's :class:`~ppl_torchrl.data.transitions.DatasetStats`), a data / env size mismatch fails here, before
    training; ``fix`` says how to fix it."""
    from ppl_torchrl.envs import make_eval_env
    from ppl_torchrl.evaluation import evaluate_policy

    try:
        env = make_eval_env(eval_id, num_envs=int(cfg.eval.num_envs), seed=int(cfg.eval.seed), device=device,
                            state_mean=state_mean, state_std=state_std)
    except ValueError:  # e.g. the data's state statistics do not fit the env: name the mismatch if that is it
        if dataset_stats is not None:
            check_env_matches_data(make_eval_env(eval_id, device=device), dataset_stats, eval_id, fix)
        raise
    if dataset_stats is not None:
        check_env_matches_data(env, dataset_stats, eval_id, fix)

    def evaluate(policy):
        # The same eval seed at every evaluation, as the authors' code (eval_seed = 42).
        return evaluate_policy(policy, env, int(cfg.eval.episodes), seed=int(cfg.eval.seed), dataset_id=eval_id)

    return evaluate


def check_env_matches_data(env, stats, eval_id: str,
                           fix: str = "set dataset.eval_id to the task the data was recorded on") -> None:
    """A :class:`ConfigError` unless ``env``'s observation and action sizes are the dataset's."""
    from ppl_torchrl.keys import OBSERVATION

    env_dims = (int(env.observation_spec[OBSERVATION].shape[-1]), int(env.action_spec.shape[-1]))
    if env_dims == (stats.obs_dim, stats.act_dim):
        return
    hint = ""
    available = (stats.metadata or {}).get("available_observation_keys")
    if available:
        hint = (f" The dataset's observations are dicts with keys {available}, concatenated here as "
                f"{stats.metadata.get('observation_keys')}: pick and order the keys that make the env's observation "
                "with dataset.observation_keys=[...] (e.g. [achieved_goal,observation] for D4RL/antmaze/*).")
    raise ConfigError(
        f"dataset {stats.name} has {stats.obs_dim}-dim observations and {stats.act_dim}-dim actions, but the "
        f"evaluation env of {eval_id} has {env_dims[0]} and {env_dims[1]}: {fix}.{hint}")
