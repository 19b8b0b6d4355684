"""The paper's toy experiment (Fig. 1): Q^beta, the TD3+BC-like baseline and PPL on three crossing experts.

    python recipes/ppl_toy.py                       # full settings -> runs/toy/seed0/{figures/toy.png,toy_metrics.md}
    python recipes/ppl_toy.py toy.policy_steps=500 toy.seed=3 out_dir=/tmp/toy
    python recipes/ppl_toy.py out_dir=docs          # from the repository root: regenerate the docs' figure and metrics

Like every recipe it writes only into its own folder (``out_dir``); the docs' files change only when asked
(``out_dir=docs``). All settings live in ``recipes/config/toy.yaml``; the experiment in :mod:`ppl_torchrl.toy`, its
figure and report in ``benchmarks/toy_report.py``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks/ is not installed

from benchmarks.toy_report import metrics_markdown, plot_toy, report_header  # noqa: E402
from ppl_torchrl.atomic import atomic_write  # noqa: E402
from ppl_torchrl.errors import user_errors  # noqa: E402
from ppl_torchrl.machine import cpu_model  # noqa: E402
from ppl_torchrl.toy import ToyConfig, run_toy, toy_metrics  # noqa: E402
from ppl_torchrl.training.recipe import hydra_recipe  # noqa: E402


def _command() -> str:
    """The command line that produced the files (hydra's overrides), for the metrics file's header."""
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return " ".join(["python recipes/ppl_toy.py", *overrides])


def _cpu() -> str:
    """The CPU's model name (floating-point results of the toy differ slightly between CPUs)."""
    return cpu_model()


@hydra_recipe("toy", version_base=None)
def main(cfg: DictConfig) -> None:
    torch.set_num_threads(cfg.output.num_threads)
    with user_errors(ValueError, TypeError):  # unknown or impossible toy settings
        toy_cfg = ToyConfig.from_mapping(OmegaConf.to_container(cfg.toy, resolve=True))
    out_dir = Path(str(cfg.out_dir)).expanduser()
    figure, metrics = out_dir / str(cfg.output.figure), out_dir / str(cfg.output.metrics)
    start = time.perf_counter()
    run_dir = Path(str(cfg.run_dir)).expanduser() if cfg.get("run_dir") else None
    result = run_toy(toy_cfg, progress=cfg.output.progress, run_dir=run_dir)
    wall = time.perf_counter() - start
    table = metrics_markdown(toy_metrics(result))
    device = _cpu() if toy_cfg.device == "cpu" else toy_cfg.device
    header = report_header(toy_cfg, result, _command(), wall, device)
    print(header + table)
    atomic_write(metrics, header + table)
    plot_toy(result, figure)
    print(f"wrote {metrics} and {figure}")


if __name__ == "__main__":
    main()
