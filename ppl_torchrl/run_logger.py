"""Run logging that needs no service (CSV + JSON lines) plus optional wandb (offline by default)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ppl_torchrl.atomic import atomic_write

METRICS = "metrics.jsonl"


class RunLogger:
    """Appends ``{"step", "<prefix>/<name>": value}`` rows to ``metrics.jsonl`` and mirrors them to wandb.

    ``state_dict()`` is the byte length of the log: resuming truncates rows written after the
    checkpoint, so a resumed run's log equals an uninterrupted run's. ``cfg.logger.backend`` is
    ``"wandb"`` (``mode`` offline/online/disabled from ``cfg.logger.wandb_mode``) or ``""``/``none``.
    """

    def __init__(self, run_dir: Path, cfg: DictConfig):
        self.path = Path(run_dir) / METRICS
        self.path.touch()
        self.cfg = cfg
        self._wandb = None
        backend = str(cfg.logger.get("backend") or "").lower()
        if backend == "wandb":
            self._wandb = self._init_wandb(run_dir, cfg)
        elif backend not in ("", "none", "csv"):
            raise ValueError(f"logger.backend must be 'wandb' or '' (files only), got {backend!r}.")

    @staticmethod
    def _init_wandb(run_dir: Path, cfg: DictConfig):
        import wandb

        return wandb.init(
            project=cfg.logger.project, group=cfg.logger.get("group"), name=cfg.logger.get("run_name"),
            mode=cfg.logger.wandb_mode, dir=str(run_dir), config=OmegaConf.to_container(cfg, resolve=True),
            resume="allow", id=cfg.logger.get("run_id"),
        )

    def log(self, step: int, values: dict, prefix: str) -> None:
        row = {"step": step, **{f"{prefix}/{k}": v for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if k != "step"}, step=step)

    def state_dict(self) -> dict:
        return {"bytes": self.path.stat().st_size}

    def load_state_dict(self, state: dict) -> None:
        with self.path.open("r+b") as f:
            f.truncate(state["bytes"])

    def rows(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def close(self, results: dict | None = None) -> None:
        self.write_csv()
        if self._wandb is not None:
            if results and results.get("final_eval"):
                for k, v in results["final_eval"].items():
                    if isinstance(v, (int, float)) and v is not None:
                        self._wandb.summary[f"final/{k}"] = v
            self._wandb.finish()

    def write_csv(self) -> Path:
        """``metrics.csv`` with one column per metric (for spreadsheets and pandas)."""
        rows = self.rows()
        columns = ["step"] + sorted({k for r in rows for k in r if k != "step"})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return atomic_write(self.path.with_name("metrics.csv"), buf.getvalue())
