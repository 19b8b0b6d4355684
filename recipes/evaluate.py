"""Evaluates the policy of a training checkpoint (no dataset needed).

    python recipes/evaluate.py checkpoint=runs/ppl/antmaze-umaze-v2/seed0/checkpoint.pt episodes=100
    python recipes/evaluate.py checkpoint=runs/ppl/antmaze-umaze-v2/seed0 eval_id=antmaze-umaze-v2 num_envs=10 seed=42

Rebuilds the networks from the checkpoint's config, loads them and runs the deterministic actor in the
eval env of the run's dataset (or `eval_id`), printing return, normalized score and success rate.
"""
import json
from types import SimpleNamespace
from pathlib import Path


from ppl_torchrl.atomic import atomic_write
from ppl_torchrl.errors import user_errors
from ppl_torchrl.reporting.tables import format_scores
from ppl_torchrl.training.checkpoints import load_trained_run
from ppl_torchrl.training.recipe import hydra_recipe
from ppl_torchrl.training.evaluator import make_evaluator
from ppl_torchrl.training.process import resolve_device
from ppl_torchrl.training.trainer import to_jsonable


@hydra_recipe("evaluate")
def main(cfg):
    device = resolve_device(cfg.device)
    path = Path(str(cfg.checkpoint)).expanduser()
    state, run_cfg, algorithm = load_trained_run(path, device)
    eval_id = cfg.eval_id or run_cfg.dataset.get("eval_id") or run_cfg.dataset.id
    run_cfg.eval.episodes, run_cfg.eval.num_envs, run_cfg.eval.seed = cfg.episodes, cfg.num_envs, cfg.seed
    with user_errors(KeyError, ImportError):  # an unknown eval_id, a missing simulator package
        trained_on = SimpleNamespace(name=f"of {path}", obs_dim=int(state["dims"]["obs_dim"]),
                                     act_dim=int(state["dims"]["act_dim"]), metadata={})
        evaluate = make_evaluator(run_cfg, eval_id, state["state_mean"], state["state_std"], device, trained_on,
                                  fix="pass eval_id= of the task the checkpoint was trained on")
    result = evaluate(algorithm.policy)
    summary = {"algorithm": algorithm.name, "dataset": eval_id, "seed": int(run_cfg.seed), "steps": state["step"],
               "final_eval": result}
    print(format_scores([summary]))
    if cfg.output:
        atomic_write(cfg.output, json.dumps(summary, indent=2, default=to_jsonable))
    return summary


if __name__ == "__main__":
    main()
