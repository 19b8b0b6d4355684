"""Evaluates the policy of a training checkpoint (no dataset needed).

    python recipes/evaluate.py checkpoint=runs/ppl/antmaze-umaze-v2/seed0/checkpoint.pt episodes=100
    python recipes/evaluate.py checkpoint=... eval_id=antmaze-umaze-v2 num_envs=10 seed=42

Rebuilds the networks from the checkpoint's config, loads them and runs the deterministic actor in the
eval env of the run's dataset (or `eval_id`), printing return, normalized score and success rate.
"""
import json

import hydra
import torch
from omegaconf import OmegaConf

from ppl_torchrl.algorithms import make_algorithm
from ppl_torchrl.recipe import format_scores
from ppl_torchrl.trainer import make_evaluator, resolve_device, to_jsonable


@hydra.main(config_path="config", config_name="evaluate", version_base="1.3")
def main(cfg):
    device = resolve_device(cfg.device)
    state = torch.load(cfg.checkpoint, map_location=device, weights_only=False)
    run_cfg = OmegaConf.create(state["config"])
    algorithm = make_algorithm(run_cfg, state["dims"]["obs_dim"], state["dims"]["act_dim"], device)
    algorithm.load_state_dict(state["algorithm"])
    eval_id = cfg.eval_id or run_cfg.dataset.get("eval_id") or run_cfg.dataset.id
    run_cfg.eval.episodes, run_cfg.eval.num_envs, run_cfg.eval.seed = cfg.episodes, cfg.num_envs, cfg.seed
    evaluate = make_evaluator(run_cfg, eval_id, state["state_mean"], state["state_std"], device)
    result = evaluate(algorithm.policy)
    summary = {"algorithm": algorithm.name, "dataset": eval_id, "seed": int(run_cfg.seed), "steps": state["step"],
               "final_eval": result}
    print(format_scores([summary]))
    if cfg.output:
        with open(cfg.output, "w") as f:
            json.dump(summary, f, indent=2, default=to_jsonable)
    return summary


if __name__ == "__main__":
    main()
