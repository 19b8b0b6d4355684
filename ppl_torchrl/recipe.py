"""The body of every training recipe: build the trainer from the config, run it, print the result."""
from __future__ import annotations

from omegaconf import DictConfig

from pathlib import Path

from ppl_torchrl.trainer import build_trainer, finished_results


def train(cfg: DictConfig) -> dict:
    """Trains ``cfg.loss`` on ``cfg.dataset`` and returns ``results.json``'s content.

    With ``resume=auto`` a finished run is not trained again (its results are returned) and an
    interrupted one continues from its checkpoint.
    """
    if str(cfg.resume).lower() == "auto":
        done = finished_results(Path(cfg.run_dir))
        if done is not None:
            print(f"{cfg.run_dir} is finished; skipping (delete results.json to retrain).")
            return done
    trainer = build_trainer(cfg)
    results = trainer.run()
    final = results.get("final_eval") or {}
    if final:
        print(format_scores([results]))
    print(f"run folder: {trainer.run_dir}")
    return results


def compose_variant(*overrides: str) -> DictConfig:
    """Inside a hydra main: the running config re-composed with extra overrides (e.g. ``"loss=rebrac"``)."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    from omegaconf import OmegaConf

    hydra_cfg = HydraConfig.get()
    # unresolved: an override such as run_dir=out/${loss.name} must follow the new loss
    task = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
    return compose(config_name=hydra_cfg.job.config_name, overrides=[*task, *overrides])


def format_scores(results: list[dict]) -> str:
    """A Markdown table of final evaluations: algorithm, dataset, seed, return, normalized score, success."""
    lines = ["| algorithm | dataset | seed | steps | return | normalized score | success rate |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        e = r.get("final_eval") or {}
        success = e.get("success_rate")
        lines.append(
            f"| {r['algorithm']} | {r['dataset']} | {r['seed']} | {r['steps']} | "
            f"{_pm(e.get('return_mean'), e.get('return_std'))} | "
            f"{_pm(e.get('normalized_score_mean'), e.get('normalized_score_std'))} | "
            f"{'-' if success is None else f'{100 * success:.0f}%'} |"
        )
    return "\n".join(lines)


def _pm(mean, std) -> str:
    if mean is None:
        return "-"
    return f"{mean:.1f} ± {std:.1f}" if std is not None else f"{mean:.1f}"
