"""The offline training loop every recipe shares: data -> algorithm -> loop -> eval/log -> checkpoint.

Resume is exact on CPU: a checkpoint holds every parameter, target, optimizer state, the target
updater's state, the step counter, the global torch / numpy / random RNG states, the replay buffer's
own generator, the last value of every metric and the logger's position; ``resume=true`` reproduces the
uninterrupted run bit for bit. Checkpoints are taken every ``checkpoint.every`` steps and every
``checkpoint.every_minutes`` minutes, always between two steps (saving reads the RNG states, it draws
nothing), and are written atomically (temp file + ``os.replace``), as are the results.

Nothing touches the run folder before the run is accepted (config valid, resume possible, data loaded,
algorithm and evaluation built): a refused or failed command leaves every run folder as it was.
"""
from __future__ import annotations

import json
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase

from ppl_torchrl import progress
from ppl_torchrl.atomic import atomic_torch_save, atomic_write
from ppl_torchrl.errors import ConfigError, DeviceError, ResumeError, RunExistsError, user_errors
from ppl_torchrl.reporting.metrics import METRICS
from ppl_torchrl.training.algorithms import Algorithm, algorithm_from_config
from ppl_torchrl.training.checkpoints import CHECKPOINT, read_checkpoint, restore_algorithm
from ppl_torchrl.training.config import validate_config
from ppl_torchrl.training.run_logger import RunLogger

RESULTS = "results.json"
COMPILE_MESSAGE = ("compiling the update (torch.compile; about 30 s on a small CPU, once per process); "
                   "the progress bar's rate and ETA start after it.")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


#: how to get a CUDA build of torch (the README's `torch==2.13.0` pin installs a CPU-only one where it can)
CUDA_INSTALL_HINT = (
    "To get a CUDA build: pip install --force-reinstall torch (without the README's ==2.13.0 pin, which "
    "installs a CPU-only build), or pick the index URL of your CUDA version at "
    "https://pytorch.org/get-started/locally/ (e.g. pip install --force-reinstall torch "
    "--index-url https://download.pytorch.org/whl/cu128)."
)


def resolve_device(name: str | None) -> torch.device:
    """``auto``/``None`` -> CUDA if available, else CPU; an unavailable CUDA device is a user error."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device={name!r} is not a device: use auto, cpu, cuda or cuda:<index> ({err}).") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        if torch.version.cuda is None:
            raise DeviceError(
                f"device={name} was requested but this torch ({torch.__version__}) is a CPU-only build. "
                f"{CUDA_INSTALL_HINT} Or use device=cpu (device=auto picks CUDA when there is one)."
            )
        raise DeviceError(
            f"device={name} was requested but torch {torch.__version__} (CUDA {torch.version.cuda}) sees no "
            "CUDA device: check the GPU driver (nvidia-smi) and CUDA_VISIBLE_DEVICES, or use device=cpu."
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"device={name} was requested but only {torch.cuda.device_count()} CUDA device(s) exist.")
    return device


def _rng_state(buffer) -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "buffer": buffer._rng.get_state() if getattr(buffer, "_rng", None) is not None else None,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, buffer) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("buffer") is not None:
        buffer._rng.set_state(state["buffer"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Runs ``cfg.optim.steps`` updates of ``algorithm`` on batches of ``buffer``, with eval and checkpoints.

    Args:
        cfg: the recipe config (sections ``optim``, ``eval``, ``logger``, ``checkpoint``).
        algorithm: from :func:`ppl_torchrl.training.algorithms.make_algorithm`.
        buffer: a replay buffer from :func:`ppl_torchrl.data.make_offline_replay_buffer`.
        evaluate: ``evaluate(policy) -> dict`` of eval metrics, or ``None`` to skip evaluation.
        run_dir: where ``metrics.csv``, ``checkpoint.pt`` and ``results.json`` go.
        probe: ``probe(loss) -> dict`` of mechanism diagnostics logged under ``probe/`` at every evaluation
            step (:mod:`ppl_torchrl.training.probe`), or ``None``.
    """

    def __init__(self, cfg: DictConfig, algorithm: Algorithm, buffer, evaluate, run_dir: Path, device, probe=None):
        self.cfg, self.algorithm, self.buffer, self.evaluate = cfg, algorithm, buffer, evaluate
        self.probe = probe  # ppl_torchrl.training.probe.MechanismProbe, run at every evaluation step
        self.run_dir, self.device = Path(run_dir), device
        self.step = 0
        self.obs_dim, self.act_dim = buffer.dataset_stats.obs_dim, buffer.dataset_stats.act_dim
        self.logger = RunLogger(self.run_dir, cfg)
        self.last_eval: dict | None = None
        self.latest: dict = {}  # last value of every metric (actor terms exist only on delayed steps)
        self.wall_time = 0.0  # training only: evaluation, checkpoints and compilation excluded
        self.compile_time = 0.0

    def start(self, resume: bool, start_from: Path | None = None) -> None:
        """Opens the run folder: continues its checkpoint (``resume``) or starts the run at step 0, from the weights
        of the checkpoint ``start_from`` if given (:meth:`initialise`).

        The folder is created here, once the run is accepted (a ``start_from`` that does not fit is refused
        before). Starting at step 0 clears the logs an earlier attempt left without a checkpoint; resuming cuts
        them back to the checkpoint's position. Either way no step is logged twice.
        """
        resuming = resume and (self.run_dir / CHECKPOINT).exists()
        if start_from is not None and not resuming:
            start_from = Path(start_from)
            self.initialise(read_checkpoint(start_from, hint=f"{start_from} is unreadable: restore it, or delete its "
                                            "run folder to train it again."), start_from)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not (resuming and self.load_checkpoint()):
            self.logger.start()

    def initialise(self, state: dict, path: Path) -> None:
        """Starts from the loss's weights in another run's checkpoint ``state`` (read from ``path``): the
        optimizers are this run's own (a one-step phase starting from the phase before it)."""
        restore_algorithm(self.algorithm, state, f"{path} holds other networks than this run builds: use the model "
                          "settings of the run that wrote it.", weights_only=True)

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        atomic_torch_save(
            {
                "step": self.step,
                "algorithm_name": self.algorithm.name,  # how recipes/evaluate.py rebuilds it (load_trained_run)
                "algorithm": self.algorithm.state_dict(),
                "rng": _rng_state(self.buffer),
                "logger": self.logger.state_dict(),
                "latest": {k: v.detach().to("cpu", copy=True) for k, v in self.latest.items()},
                "last_eval": self.last_eval,
                "wall_time": self.wall_time,
                "compile_time": self.compile_time,
                "config": OmegaConf.to_container(self.cfg, resolve=True),
                # what recipes/evaluate.py needs to rebuild and score the policy without the data
                "dims": {"obs_dim": self.obs_dim, "act_dim": self.act_dim},
                "state_mean": self.buffer.state_mean,
                "state_std": self.buffer.state_std,
                **self.checkpoint_extra(),
            },
            self.run_dir / CHECKPOINT,
        )

    def checkpoint_extra(self) -> dict:
        """More state for the checkpoint (a subclass's: e.g. the fine-tuner's online buffer)."""
        return {}

    def restore_extra(self, state: dict) -> None:
        """Restores what :meth:`checkpoint_extra` saved."""

    def results_extra(self) -> dict:
        """More fields for ``results.json``."""
        return {}

    def load_checkpoint(self) -> bool:
        """Restores the run from ``run_dir/checkpoint.pt``; ``False`` if there is none."""
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return False
        state = read_checkpoint(path, hint=f"{path} is unreadable: restore it, or delete it to start the run over.")
        restore_algorithm(self.algorithm, state, f"{path} was written by a run of another config (model, loss or "
                          "optimizer): resume it with that config, or choose another run_dir.")
        _set_rng_state(state["rng"], self.buffer)
        self.logger.start(state["logger"])
        self.step, self.last_eval, self.wall_time = state["step"], state["last_eval"], state["wall_time"]
        self.latest = dict(state.get("latest") or {})
        self.compile_time = float(state.get("compile_time", 0.0))
        self.restore_extra(state)
        return True

    # -------------------------------------------------------------- loop
    #: the progress bar's label suffix and unit
    progress_suffix, progress_unit = "", "it"

    @property
    def total_steps(self) -> int:
        """Where :meth:`run` stops: ``optim.steps`` updates (the fine-tuner counts environment steps)."""
        return int(self.cfg.optim.steps)

    @property
    def updates_per_call(self) -> int:
        return int(self.cfg.compile.updates_per_call)

    def run(self) -> dict:
        """The training loop: updates, then at their steps the train log row, evaluation + probe and checkpoint.

        A subclass changes what happens around the update through the hooks below (:meth:`_open`,
        :meth:`_batches`, :meth:`_after_update`, :meth:`_train_row_extra`, :meth:`_checkpoint_due`, :meth:`_close`),
        never the loop itself.
        """
        cfg = self.cfg
        steps, log_every = self.total_steps, int(cfg.logger.log_every)
        eval_every, ckpt_every = int(cfg.eval.every), int(cfg.checkpoint.every)
        # Also a checkpoint when this much time has passed since the last one (taken between two steps).
        ckpt_seconds = 60.0 * float(cfg.checkpoint.get("every_minutes") or 0.0)
        stop_after = cfg.checkpoint.get("stop_after")  # for tests: simulate a killed run
        # A compiled update compiles at its first call in a process (seconds to minutes): kept out of the bar's
        # ETA and of steps/s.
        compiling = self.algorithm.compiled
        bar = progress.progress_bar(total=steps, initial=self.step, unit=self.progress_unit,
                                    desc=f"{self.algorithm.name}{self.progress_suffix}",
                                    disable=not cfg.logger.progress)
        latest, per_call = self.latest, self.updates_per_call
        try:
            self._open()
            t0, timed_steps = time.perf_counter(), 0
            last_ckpt_step, last_ckpt_time = self.step, time.monotonic()
            while self.step < steps:
                # Several updates per call never cross a log, eval, checkpoint or stop step: those stay exact.
                room = min(steps - self.step, *(
                    every - self.step % every for every in (log_every, eval_every, ckpt_every)))
                if stop_after is not None:
                    room = max(1, min(room, int(stop_after) - self.step))
                # A shorter remainder runs as single updates: each new call length would compile another graph.
                n = per_call if per_call <= room else 1
                if compiling:
                    progress.write(COMPILE_MESSAGE)
                call_start = time.perf_counter()
                batches = self._batches(n)
                if n > 1:
                    metrics = self.algorithm.run_updates(batches, self.step)
                else:
                    metrics = self.algorithm.update(batches[0], self.step)
                latest.update(metrics.items(True, True) if isinstance(metrics, TensorDictBase) else metrics.items())
                self.step += n
                spent = time.perf_counter() - call_start
                self._after_update(spent, compiled_now=compiling)
                if compiling:
                    compiling = False
                    self.compile_time += spent
                    if getattr(self.algorithm.update, "compiled", True):
                        progress.write(f"compiled in {spent:.0f} s; training.")
                    else:  # compile.enabled=auto and compiling failed (warned): the run goes on eagerly
                        self.algorithm.compiled = False
                        progress.write(f"compiling failed after {spent:.0f} s; training with the eager update.")
                    t0 = time.perf_counter()  # steps/s and wall time count training only
                    bar.unpause()  # the bar's clock (rate, ETA) starts after compilation
                else:
                    timed_steps += n
                bar.update(n)
                if self.step % log_every == 0 or self.step == steps:
                    elapsed = time.perf_counter() - t0
                    row = {k: float(v) for k, v in latest.items() if v.numel() == 1}
                    row["steps_per_second"] = timed_steps / max(elapsed, 1e-9)
                    row.update(self._train_row_extra())
                    self.wall_time += elapsed
                    t0, timed_steps = time.perf_counter(), 0
                    self.logger.log(self.step, row, prefix="train")
                    bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss_qvalue", "loss_actor") if k in row})
                if self.step % eval_every == 0 or self.step == steps:
                    t0 += self._evaluation_step()  # steps/s and wall time count training only
                if self.step == steps or self._checkpoint_due(
                        self.step - last_ckpt_step, time.monotonic() - last_ckpt_time, ckpt_every, ckpt_seconds):
                    pause = time.perf_counter()
                    self.save_checkpoint()
                    last_ckpt_step, last_ckpt_time = self.step, time.monotonic()
                    t0 += time.perf_counter() - pause
                if stop_after is not None and self.step >= int(stop_after):
                    return {"stopped_at": self.step}
        finally:
            bar.close()
            self._close()
        return self.finish()

    # -------------------------------------------------------------- hooks of the loop
    def _open(self) -> None:
        """Before the first update of this process."""

    def _close(self) -> None:
        """After the last update of this process (also on a stop or an error)."""

    def _batches(self, n: int) -> list:
        """The batches of the next ``n`` updates, on the training device."""
        return [self.buffer.sample().to(self.device, non_blocking=True) for _ in range(n)]

    def _after_update(self, seconds: float, compiled_now: bool) -> None:
        """After ``self.step`` has advanced; ``seconds`` is the call's time (batches + updates), ``compiled_now``
        whether it included compilation."""

    def _train_row_extra(self) -> dict:
        """More fields for the ``train/`` log row."""
        return {}

    def _checkpoint_due(self, steps_since: int, seconds_since: float, every: int, every_seconds: float) -> bool:
        """Whether to checkpoint now (the last step always is): every ``every`` steps, and when ``every_seconds``
        (if set) have passed since the last checkpoint."""
        return self.step % every == 0 or bool(every_seconds and seconds_since >= every_seconds)

    def _evaluation_step(self) -> float:
        """The mechanism probe and the evaluation of this step (each if configured); returns the seconds taken."""
        start = time.perf_counter()
        if self.probe is not None:
            self.logger.log(self.step, self.probe(self.algorithm.loss), prefix="probe")
        if self.evaluate is not None:
            self.last_eval = self._evaluate()
        return time.perf_counter() - start

    def _evaluate(self) -> dict:
        result = self.evaluate(self.algorithm.policy)
        scalars = {k: v for k, v in result.items() if isinstance(v, (int, float)) and v is not None}
        self.logger.log(self.step, scalars, prefix="eval")
        return result

    def finish(self) -> dict:
        results = {
            "algorithm": self.algorithm.name,
            "dataset": self.cfg.dataset.id,
            "seed": int(self.cfg.seed),
            "steps": self.step,
            "train_wall_time_s": self.wall_time,
            "compile_time_s": self.compile_time,
            "compiled": self.algorithm.compiled,
            "final_eval": self.last_eval,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            **self.results_extra(),
        }
        atomic_write(self.run_dir / RESULTS, json.dumps(results, indent=2, default=to_jsonable))
        self.logger.close(results)
        return results


def to_jsonable(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    return str(value)


def resume_mode(cfg: DictConfig, run_dir: Path) -> bool:
    """``resume``: true (continue ``run_dir``'s checkpoint), false (refuse to overwrite one) or ``auto``
    (continue if a checkpoint exists, else start from step 0): ``auto`` makes relaunched sweeps idempotent.

    Reads only; raises :class:`~ppl_torchrl.errors.ResumeError` / ``RunExistsError`` (user errors).
    """
    path = run_dir / CHECKPOINT
    has_checkpoint = path.exists()
    mode = str(cfg.resume).lower()
    if mode == "auto":
        return has_checkpoint
    if mode == "true":
        if not has_checkpoint:
            ckpt = cfg.checkpoint
            cadence = f"every checkpoint.every={ckpt.every} steps"
            if ckpt.get("every_minutes"):
                cadence += f" and every checkpoint.every_minutes={ckpt.every_minutes} minutes"
            started = (run_dir / METRICS).exists()
            raise ResumeError(
                f"resume=true but {path} does not exist: "
                + ("the run stopped before its first checkpoint" if started else f"there is no run in {run_dir}")
                + f" (checkpoints are taken {cadence}). Relaunch with resume=auto to start it from step 0 (its "
                "logs are cleared), or set a smaller checkpoint.every / checkpoint.every_minutes."
            )
        return True
    if mode == "false":
        if has_checkpoint:
            raise RunExistsError(
                f"{run_dir} already holds a checkpoint; nothing was changed. Pass resume=true (or auto) to "
                "continue it, or choose another run_dir."
            )
        return False
    raise ConfigError(f"resume must be true, false or auto, got {cfg.resume!r}.")


@contextmanager
def _no_new_empty_folders(*folders: Path):
    """On an error inside, removes those of ``folders`` (deepest first) that it created and left empty."""
    new = [f for f in folders if not f.exists()]
    try:
        yield
    except BaseException:
        for folder in new:
            try:
                folder.rmdir()  # only an empty folder
            except OSError:
                pass
        raise


#: appended to data-loading errors that a local file or dataset would fix (no network, missing file)
DATA_HINT = ("In a recipe: dataset.path=/path/to/<file>.hdf5 trains on a local D4RL-format file of dataset.id, "
             "or dataset.id=<minari id> dataset.eval_id=<registered id> on a local Minari dataset.")


def finished_results(run_dir: Path) -> dict | None:
    """The ``results.json`` of a finished run in ``run_dir``, or ``None``."""
    path = Path(run_dir) / RESULTS
    return json.loads(path.read_text()) if path.exists() else None


def dataset_observation_keys(cfg: DictConfig, data_source: str) -> list[str] | None:
    """``dataset.observation_keys`` as a list, checked: only Minari datasets (with dict observations) take it."""
    observation_keys = cfg.dataset.get("observation_keys")
    if observation_keys is None:
        return None
    from ppl_torchrl.data import resolve_dataset

    with user_errors(KeyError):  # an unknown id: the same message as without observation_keys
        kind = resolve_dataset(data_source)
    if isinstance(observation_keys, str) or kind != "minari":
        raise ConfigError(f"dataset.observation_keys={observation_keys} applies to Minari datasets with dict "
                          "observations, given as a list (dataset.observation_keys=[achieved_goal,observation]); "
                          f"dataset {data_source} is not one: leave it unset.")
    return [str(k) for k in observation_keys]


def load_training_data(cfg: DictConfig, batch_size: int | None = None):
    """The ``dataset`` section's data as a seeded replay buffer: ``(buffer, data_source, eval_id, (scale, bias))``.

    User-fixable failures (unknown ids, missing files, no network) are user errors and leave no empty folder.
    """
    from ppl_torchrl.data import make_offline_replay_buffer
    from ppl_torchrl.data.d4rl import default_root
    from ppl_torchrl.data.transforms import reward_scale_bias
    from ppl_torchrl.training.data_source import resolve_training_data

    with user_errors(KeyError, FileNotFoundError):  # unknown ids, a missing dataset.path
        data_source, eval_id = resolve_training_data(cfg.dataset)
    scale, bias = cfg.dataset.get("reward_scale"), cfg.dataset.get("reward_bias")
    if scale is None or bias is None:
        auto_scale, auto_bias = reward_scale_bias(eval_id or "", cfg.loss.reward_family)
        scale = auto_scale if scale is None else scale
        bias = auto_bias if bias is None else bias
    observation_keys = dataset_observation_keys(cfg, data_source)
    root = default_root()  # a failed import or download leaves no empty folder behind
    with _no_new_empty_folders(root / "downloads", root / "d4rl", root / "hdf5", root), \
            user_errors(OSError, KeyError, ValueError), user_errors(RuntimeError, FileNotFoundError, hint=DATA_HINT):
        buffer = make_offline_replay_buffer(
            data_source, batch_size=int(batch_size or cfg.optim.batch_size), reward_scale=float(scale),
            reward_bias=float(bias), normalize_states=bool(cfg.dataset.normalize_states), seed=int(cfg.seed),
            observation_keys=observation_keys, progress=cfg.logger.progress,
        )
    return buffer, data_source, eval_id, (float(scale), float(bias))


def setup_process(cfg: DictConfig) -> torch.device:
    """Device, torch threads and seeds of a run (``device``, ``threads``, ``seed``)."""
    device = resolve_device(cfg.device)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    seed_everything(int(cfg.seed))
    return device


@dataclass
class RunParts:
    """What the one set-up chain (:func:`build_run`) has built when it hands over to a run's trainer factory."""

    cfg: DictConfig
    run_dir: Path
    device: torch.device
    buffer: object  # the offline replay buffer (ppl_torchrl.data.make_offline_replay_buffer)
    data_source: str
    eval_id: str | None
    reward: tuple[float, float]  # (scale, bias) of the buffer's reward transform
    algorithm: Algorithm
    evaluate: Callable | None
    probe: Callable | None


def build_run(cfg: DictConfig, run_dir: Path | None = None, *, check: Callable | None = None,
              prepare: Callable | None = None, data: Callable | None = None, batch_size: int | None = None,
              algorithm: Callable | None = None, evaluation: bool = True, probe: bool = True,
              trainer: Callable | None = None) -> Trainer:
    """Config -> data -> algorithm -> evaluation -> probe -> trainer: the one set-up chain of every training run
    (offline, fine-tuning, each one-step phase, each toy phase), resumed if ``cfg.resume`` says so.

    What differs between runs is given here, never a second chain:

    * ``check(cfg)``: more config checks, after :func:`validate_config`, before anything is read;
    * ``prepare(cfg, run_dir) -> Path | None``: the phases before this one (fine-tuning's offline run, the one-step
      BC and Q^beta phases), run before this process is seeded; returns the checkpoint this run starts from
      (:meth:`Trainer.initialise`), or ``None``;
    * ``data(cfg, batch_size) -> (buffer, data_source, eval_id, (reward scale, bias))``: the data source (default
      :func:`load_training_data`, the ``dataset`` section's; the toy's full batch); ``batch_size``: the offline
      buffer's (default ``optim.batch_size``);
    * ``algorithm(cfg, obs_dim, act_dim, device) -> Algorithm`` (default :func:`~ppl_torchrl.training.algorithms.algorithm_from_config`);
    * ``evaluation`` / ``probe``: whether this run evaluates its policy / runs the mechanism probe;
    * ``trainer(parts: RunParts) -> Trainer``: the loop's data source and hooks (default :class:`Trainer`).

    Errors the user can fix (config values, ids, files, network, device) are user errors
    (:func:`ppl_torchrl.errors.is_user_error`), raised before the run folder is touched.
    """
    from ppl_torchrl.training.probe import make_probe

    validate_config(cfg)
    if check is not None:
        check(cfg)
    run_dir = Path(run_dir or cfg.run_dir)
    resume = resume_mode(cfg, run_dir)
    start_from = prepare(cfg, run_dir) if prepare is not None else None
    device = setup_process(cfg)
    buffer, data_source, eval_id, reward = (data or load_training_data)(cfg, batch_size)
    stats = buffer.dataset_stats
    with user_errors(ValueError):  # unknown loss, compile value
        built = (algorithm or algorithm_from_config)(cfg, stats.obs_dim, stats.act_dim, device)
    evaluate = None
    if evaluation and eval_id is not None and int(cfg.eval.episodes) > 0:
        with user_errors(ImportError, KeyError):  # a missing simulator package, an unknown eval id
            evaluate = make_evaluator(cfg, eval_id, buffer.state_mean, buffer.state_std, device, stats)
    run_probe = make_probe(cfg, data_source, buffer, built, device) if probe else None
    parts = RunParts(cfg, run_dir, device, buffer, data_source, eval_id, reward, built, evaluate, run_probe)
    run = trainer(parts) if trainer is not None else Trainer(cfg, built, buffer, evaluate, run_dir, device, run_probe)
    run.start(resume, start_from)  # the run is accepted: only now is the run folder touched
    return run


def build_trainer(cfg: DictConfig, run_dir: Path | None = None) -> Trainer:
    """The offline recipes' :class:`Trainer` (``cfg.loss`` on ``cfg.dataset``): :func:`build_run` as it is."""
    return build_run(cfg, run_dir)


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
