"""Run logging that needs no service (JSON lines + CSV, both written as the run goes) plus optional wandb.

The file's name and its one reader are :mod:`ppl_torchrl.reporting.metrics` (a resumed run reads its log back there,
as the reports do)."""
from __future__ import annotations

import csv
import io
import json
import secrets
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ppl_torchrl.atomic import atomic_write
from ppl_torchrl.errors import UserError
from ppl_torchrl.reporting.metrics import METRICS, read_metrics

METRICS_CSV = "metrics.csv"


class RunLogger:
    """Appends ``{"step", "<prefix>/<name>": value}`` rows to ``metrics.jsonl``, mirrors them to ``metrics.csv``
    (rewritten atomically at every row, one row per step) and to wandb.

    Nothing is written before :meth:`start`: ``start()`` begins a run at step 0 (clearing the logs of an
    earlier attempt that never reached a checkpoint), ``start(state)`` resumes one from a checkpoint's
    :meth:`state_dict`, cutting the log back to the checkpoint's byte position. A resumed run's logs therefore
    equal an uninterrupted run's, with no step missing or twice. The state also holds the wandb run id, so a
    resumed run continues the same wandb run (``wandb.init(id=..., resume="allow")``).

    ``cfg.logger.backend`` is ``"wandb"`` (``mode`` offline/online/disabled from ``cfg.logger.wandb_mode``)
    or ``""``/``none`` (files only); ``cfg.logger.run_id`` fixes the wandb id (default: a new random one).
    """

    def __init__(self, run_dir: Path, cfg: DictConfig):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS
        self.csv_path = self.run_dir / METRICS_CSV
        self.cfg = cfg
        self.run_id: str | None = None
        self._rows: list[dict] = []
        self._wandb = None
        self.backend = str(cfg.logger.get("backend") or "").lower()
        if self.backend not in ("wandb", "", "none", "csv"):
            raise ValueError(f"logger.backend must be 'wandb' or '' (files only), got {self.backend!r}.")

    def start(self, state: dict | None = None) -> None:
        """Opens the logs: a new run (``state=None``) or the run of a checkpoint's ``state``."""
        if state is None:
            self.path.write_bytes(b"")
            self.run_id = self.cfg.logger.get("run_id") or _new_run_id()
        else:
            size = self.path.stat().st_size if self.path.exists() else -1
            if size < state["bytes"]:
                raise UserError(
                    f"{self.path} is shorter than the checkpoint's log position ({max(size, 0)} < {state['bytes']} "
                    "bytes): the run folder was changed. Restore the file, or delete checkpoint.pt to start over."
                )
            with self.path.open("r+b") as f:
                f.truncate(state["bytes"])
            self.run_id = state.get("wandb_id") or self.cfg.logger.get("run_id") or _new_run_id()
        self._rows = self.rows()
        self.write_csv()
        if self.backend == "wandb":
            self._wandb = self._init_wandb()

    def _init_wandb(self):
        import wandb

        cfg = self.cfg
        return wandb.init(
            project=cfg.logger.project, group=cfg.logger.get("group"), name=cfg.logger.get("run_name"),
            mode=cfg.logger.wandb_mode, dir=str(self.run_dir), config=OmegaConf.to_container(cfg, resolve=True),
            id=self.run_id, resume="allow",
        )

    def log(self, step: int, values: dict, prefix: str) -> None:
        row = {"step": step, **{f"{prefix}/{k}": v for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self._rows.append(row)
        self.write_csv()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if k != "step"}, step=step)

    def state_dict(self) -> dict:
        return {"bytes": self.path.stat().st_size, "wandb_id": self.run_id}

    def load_state_dict(self, state: dict) -> None:
        """Resumes from ``state`` (same as ``start(state)``)."""
        self.start(state)

    def rows(self) -> list[dict]:
        return read_metrics(self.run_dir)

    def close(self, results: dict | None = None) -> None:
        self.write_csv()
        if self._wandb is not None:
            if results and results.get("final_eval"):
                for k, v in results["final_eval"].items():
                    if isinstance(v, (int, float)) and v is not None:
                        self._wandb.summary[f"final/{k}"] = v
            self._wandb.finish()
            self._wandb = None

    def write_csv(self) -> Path:
        """``metrics.csv``: one row per step (train and eval rows of a step merged), one column per metric."""
        return atomic_write(self.csv_path, csv_text(self._rows))


def csv_text(rows: list[dict]) -> str:
    """The CSV of JSON-lines ``rows``: rows of the same step merged, columns ``step`` then sorted names."""
    merged: dict[int, dict] = {}
    for row in rows:
        merged.setdefault(row["step"], {}).update(row)
    columns = ["step"] + sorted({k for r in merged.values() for k in r if k != "step"})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(merged.values())
    return buf.getvalue()


def _new_run_id() -> str:
    """A wandb-style run id (8 lowercase hex characters); from the OS, so no RNG state is consumed."""
    return secrets.token_hex(4)
