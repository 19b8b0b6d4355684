"""PPL in the one-step setting (paper Table 4): BC of beta -> SARSA Q^beta -> PPL policy on that Q^beta.

    python recipes/ppl_onestep.py dataset=hopper-medium-v2 seed=2
    python recipes/ppl_onestep.py optim.policy_steps=200000    # reuses the finished BC / Q^beta phases

Each phase's budget is in recipes/config/onestep.yaml; finished phases are saved in run_dir and reused.
"""
import json
from pathlib import Path

import hydra

from ppl_torchrl.atomic import atomic_write
from ppl_torchrl.data import make_offline_replay_buffer
from ppl_torchrl.errors import user_errors
from ppl_torchrl.reporting.tables import format_scores
from ppl_torchrl.training.config import validate_config
from ppl_torchrl.training.data_source import resolve_training_data
from ppl_torchrl.training.onestep import make_onestep_loss, run_onestep
from ppl_torchrl.training.recipe import recipe_main, record_hydra_config
from ppl_torchrl.training.trainer import (DATA_HINT, dataset_observation_keys, make_evaluator, resolve_device,
                                         seed_everything, to_jsonable)


@hydra.main(config_path="config", config_name="onestep", version_base="1.3")
@recipe_main
def main(cfg):
    validate_config(cfg)
    device = resolve_device(cfg.device)
    seed_everything(int(cfg.seed))
    run_dir = Path(cfg.run_dir)

    with user_errors(KeyError, FileNotFoundError):
        source, eval_id = resolve_training_data(cfg.dataset)
    with user_errors(OSError, KeyError, ValueError), user_errors(RuntimeError, FileNotFoundError, hint=DATA_HINT):
        buffer = make_offline_replay_buffer(source, batch_size=int(cfg.optim.batch_size), seed=int(cfg.seed),
                                            device=device, observation_keys=dataset_observation_keys(cfg, source),
                                            progress=cfg.logger.progress)
    stats = buffer.dataset_stats
    loss = make_onestep_loss(cfg, stats.obs_dim, stats.act_dim, device)

    evaluate = None  # built before training: a data / env mismatch fails now, not after millions of steps
    if eval_id is not None and int(cfg.eval.episodes) > 0:
        with user_errors(ImportError, KeyError):  # a missing simulator package
            evaluate = make_evaluator(cfg, eval_id, buffer.state_mean, buffer.state_std, device, stats)

    run_dir.mkdir(parents=True, exist_ok=True)  # the run is accepted: only now is its folder touched
    record_hydra_config(run_dir, cfg)
    run_onestep(cfg, loss, buffer, run_dir)

    final = None
    if evaluate is not None:
        with loss.actor_network_params.to_module(loss.actor_network):
            final = evaluate(loss.actor_network)
    results = {"algorithm": "ppl_onestep", "dataset": cfg.dataset.id, "seed": int(cfg.seed),
               "steps": int(cfg.optim.policy_steps), "final_eval": final}
    atomic_write(run_dir / "results.json", json.dumps(results, indent=2, default=to_jsonable))
    if final:
        print(format_scores([results]))
    return results


if __name__ == "__main__":
    main()
