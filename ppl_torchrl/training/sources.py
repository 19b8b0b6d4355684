"""Where a run's batches come from, and the events the training loop sends it.

The loop (:class:`~ppl_torchrl.training.trainer.Trainer`) is the same for every run; what differs between an offline
run and online fine-tuning is its batch source. :class:`OfflineBatches` is the offline replay buffer (every offline
run, each one-step and toy phase); fine-tuning's :class:`~ppl_torchrl.training.finetune.OnlineBatches` extends it
with an environment, an online buffer and ReBRAC's BC schedule.

The events, in the order the loop sends them in one process:

1. :meth:`~OfflineBatches.open`, before the first update;
2. per call: :meth:`~OfflineBatches.batches` (the next ``n`` updates' batches), the update(s), then
   :meth:`~OfflineBatches.after_update`; at a log step :meth:`~OfflineBatches.log_row`; at every step
   :meth:`~OfflineBatches.checkpoint_due`;
3. :meth:`~OfflineBatches.close`, after the last update (also on a stop or an error).

A source's own state goes into the run's checkpoint (:meth:`~OfflineBatches.state_dict`, top-level keys) and its
summary into ``results.json`` (:meth:`~OfflineBatches.results`).
"""
from __future__ import annotations

from omegaconf import DictConfig


class OfflineBatches:
    """Batches of the offline replay buffer ``buffer``, moved to ``device``; ``cfg.optim.steps`` updates,
    ``cfg.compile.updates_per_call`` per call."""

    #: the progress bar's label suffix and unit
    label, unit = "", "it"

    def __init__(self, buffer, device):
        self.buffer, self.device = buffer, device

    def total_steps(self, cfg: DictConfig) -> int:
        """Where the run stops (the online source counts environment steps)."""
        return int(cfg.optim.steps)

    def updates_per_call(self, cfg: DictConfig) -> int:
        return int(cfg.compile.updates_per_call)

    # ------------------------------------------------------------------ events
    def open(self) -> None:
        """Before the first update of this process."""

    def batches(self, n: int, step: int) -> list:
        """The batches of updates ``step`` .. ``step + n - 1``, on the training device."""
        return [self.buffer.sample().to(self.device, non_blocking=True) for _ in range(n)]

    def after_update(self, step: int, seconds: float, compiled_now: bool) -> dict:
        """The run is at ``step`` now; ``seconds`` is the call's time (batches + updates), ``compiled_now`` whether
        it included compilation. Returns rows to log at this step, ``{prefix: row}`` (an ended episode online)."""
        return {}

    def log_row(self) -> dict:
        """More fields for the ``train/`` log row."""
        return {}

    def checkpoint_due(self, step: int, steps_since: int, seconds_since: float, every: int,
                       every_seconds: float) -> bool:
        """Whether to checkpoint at ``step`` (the last step always is): every ``every`` steps, and when
        ``every_seconds`` (if set) have passed since the last checkpoint."""
        return step % every == 0 or bool(every_seconds and seconds_since >= every_seconds)

    def close(self) -> None:
        """After the last update of this process (also on a stop or an error)."""

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The source's state, saved as top-level entries of the run's checkpoint (the replay buffer's generator is
        saved with the other RNGs)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict` from a checkpoint (``state`` is the whole checkpoint)."""

    def results(self) -> dict:
        """More fields for ``results.json``."""
        return {}
