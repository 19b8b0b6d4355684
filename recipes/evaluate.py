"""Evaluates the policy of a training checkpoint (no dataset needed).

    python recipes/evaluate.py checkpoint=runs/ppl/antmaze-umaze-v2/seed0/checkpoint.pt episodes=100
    python recipes/evaluate.py checkpoint=... eval_id=antmaze-umaze-v2 num_envs=10 seed=42

Rebuilds the networks from the checkpoint's config, loads them and runs the deterministic actor in the
eval env of the run's dataset (or `eval_id`), printing return, normalized score and success rate.
"""
import json
import pickle
from types import SimpleNamespace
from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf

from ppl_torchrl.atomic import atomic_write
from ppl_torchrl.errors import UserError, user_errors
from ppl_torchrl.reporting.tables import format_scores
from ppl_torchrl.training.algorithms import make_algorithm
from ppl_torchrl.training.recipe import recipe_main
from ppl_torchrl.training.trainer import make_evaluator, resolve_device, to_jsonable


@hydra.main(config_path="config", config_name="evaluate", version_base="1.3")
@recipe_main
def main(cfg):
    device = resolve_device(cfg.device)
    path = Path(str(cfg.checkpoint)).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint={path} does not exist; pass the checkpoint.pt of a training run folder.")
    with user_errors(RuntimeError, EOFError, OSError, pickle.UnpicklingError,
                     hint=f"{path} is not a readable checkpoint.pt of a training recipe."):
        state = torch.load(path, map_location="cpu", weights_only=False)  # load_state_dict copies onto the device
    if not isinstance(state, dict) or not {"config", "dims", "algorithm"} <= set(state):
        raise UserError(f"{path} is not a checkpoint.pt of a training recipe (no config/dims/algorithm).")
    run_cfg = OmegaConf.create(state["config"])
    # Scoring never runs the update: build it plain, whatever the training run's compile settings (a CUDA-graph
    # run's checkpoint is scored on a CPU machine too).
    run_cfg.compile.enabled, run_cfg.compile.cudagraphs = False, False
    with user_errors(ValueError, KeyError):
        algorithm = make_algorithm(run_cfg, state["dims"]["obs_dim"], state["dims"]["act_dim"], device)
    algorithm.load_state_dict(state["algorithm"])
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
