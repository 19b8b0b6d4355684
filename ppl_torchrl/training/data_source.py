"""A run's training data (:class:`TrainingData`): what a recipe's ``dataset`` config section points at (a file to load,
an id to evaluate against), loaded as a seeded replay buffer (:func:`load_training_data`)."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from ppl_torchrl.errors import ConfigError, user_errors
from ppl_torchrl.registry import get_dataset_spec, is_ogbench_id


@dataclass(frozen=True)
class TrainingData:
    """The data a run trains on: what the set-up chain (:func:`~ppl_torchrl.training.build.build_run`) builds the
    algorithm, the evaluation and the probe for, and the loop draws its batches from.

    ``buffer`` samples a batch (``sample()``) and carries ``dataset_stats`` (``obs_dim``, ``act_dim``, ``name``,
    ``metadata``), ``state_mean`` / ``state_std``: an offline replay buffer
    (:func:`ppl_torchrl.data.make_offline_replay_buffer`), or the toy's full batch.
    """

    buffer: object
    source: object  # what was loaded: a dataset id, a file path, or an OGBench source
    eval_id: str | None  # the registered id the policy is evaluated on; None: no evaluation
    reward: tuple[float, float] = (1.0, 0.0)  # (scale, bias) of the buffer's reward transform

    @property
    def obs_dim(self) -> int:
        return self.buffer.dataset_stats.obs_dim

    @property
    def act_dim(self) -> int:
        return self.buffer.dataset_stats.act_dim


def resolve_training_data(dataset_cfg) -> tuple[str, str | None]:
    """Returns ``(source, eval_id)`` for the ``dataset`` config section.

    * ``dataset.id`` a D4RL id: source is the id (downloaded or imported once), unless ``dataset.path``
      names a local D4RL-format HDF5 of it (e.g. ``~/.d4rl/datasets/antmaze_umaze_v2.hdf5``);
    * ``dataset.id`` a generated id (``*-gen-v0``): the dataset is generated here if missing;
    * ``dataset.id`` an HDF5 path or a Minari id: loaded as is; evaluation needs ``dataset.eval_id``
      (a registered id whose eval env matches the data), else it is skipped;
    * ``dataset.id`` an OGBench single-task id: the source is an
      :class:`~ppl_torchrl.data.buffer.OGBenchSource` (``dataset.path`` = its ``.npz``, ``dataset.split``,
      ``dataset.action_clip_eps``); evaluation on the id's own task with ``dataset.success_timing``
      (``pre``: ogbench >= 1.2.0, ``post``: the FQL paper's 1.1.0).
    """
    dataset_id = str(dataset_cfg.id)
    if is_ogbench_id(dataset_id):
        return _ogbench_source(dataset_id, dataset_cfg)
    path = dataset_cfg.get("path")
    eval_id = dataset_cfg.get("eval_id")
    if path:
        path = Path(str(path)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"dataset.path={path} does not exist. Pass the path of a D4RL-format .hdf5 file.")
    spec = get_dataset_spec(dataset_id) if _is_registered(dataset_id) else None
    if spec is not None and spec.source == "generated" and not path:
        from ppl_torchrl.datagen import ensure_generated_dataset

        path = ensure_generated_dataset(dataset_id, seed=int(dataset_cfg.get("generation_seed", 0)))
    source = str(path) if path else dataset_id
    if eval_id is None and spec is not None:
        eval_id = spec.dataset_id
    if eval_id is not None:
        get_dataset_spec(str(eval_id))  # unknown eval ids fail before training
    return source, (None if eval_id is None else str(eval_id))


def _is_registered(dataset_id: str) -> bool:
    try:
        get_dataset_spec(dataset_id)
    except KeyError:
        return False
    return True


def _ogbench_source(dataset_id: str, dataset_cfg):
    from ppl_torchrl.data.buffer import OGBenchSource
    from ppl_torchrl.errors import ConfigError

    timing = str(dataset_cfg.get("success_timing") or "pre")
    if timing not in ("pre", "post"):
        raise ConfigError(f"dataset.success_timing must be 'pre' (ogbench >= 1.2.0) or 'post' (ogbench 1.1.0, the "
                          f"FQL paper), got {timing!r}.")
    split = str(dataset_cfg.get("split") or "train")
    if split not in ("train", "val"):
        raise ConfigError(f"dataset.split must be 'train' or 'val', got {split!r}.")
    path = dataset_cfg.get("path")
    eval_id = dataset_cfg.get("eval_id") or f"{dataset_id}@{timing}"
    get_dataset_spec(str(eval_id))  # unknown eval ids fail before training
    clip = dataset_cfg.get("action_clip_eps")
    source = OGBenchSource(dataset_id, None if not path else str(path), split, 1e-5 if clip is None else float(clip))
    return source, str(eval_id)


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


def dataset_time_limit(cfg: DictConfig, data_source, eval_id: str | None) -> int | None:
    """The time limit at which a D4RL-format file without ``timeouts`` ends its episodes: ``dataset.max_episode_steps``,
    else D4RL's own for a D4RL ``dataset.id``, else the eval task's. Only D4RL data take it."""
    from ppl_torchrl.data import resolve_dataset
    from ppl_torchrl.data.d4rl import is_d4rl_id
    from ppl_torchrl.registry import d4rl_time_limit

    explicit = cfg.dataset.get("max_episode_steps")
    with user_errors(KeyError):
        kind = resolve_dataset(data_source)
    if kind not in ("hdf5", "d4rl"):
        if explicit is not None:
            raise ConfigError(f"dataset.max_episode_steps={explicit} applies to D4RL-format files without timeouts; "
                              f"dataset {data_source} is a {kind} dataset, whose episodes end where it says: leave it "
                              "unset.")
        return None
    dataset_id = str(cfg.dataset.id)
    if explicit is not None:
        if not isinstance(explicit, int) or isinstance(explicit, bool) or explicit < 1:
            raise ConfigError(f"dataset.max_episode_steps must be a positive number of steps, got {explicit!r}.")
        if kind == "d4rl" and explicit != d4rl_time_limit(dataset_id):  # an id's import follows D4RL's own limit
            raise ConfigError(f"dataset.max_episode_steps={explicit}: D4RL's {dataset_id} ends its episodes at "
                              f"{d4rl_time_limit(dataset_id)} steps; to read its file with another limit, pass the "
                              "file as dataset.path.")
        return explicit
    if is_d4rl_id(dataset_id):
        return d4rl_time_limit(dataset_id)
    return get_dataset_spec(eval_id).max_episode_steps if eval_id else None


def load_training_data(cfg: DictConfig, batch_size: int | None = None) -> TrainingData:
    """The ``dataset`` section's data as a seeded replay buffer of ``batch_size`` (default ``optim.batch_size``).

    User-fixable failures (unknown ids, missing files, no network) are user errors and leave no empty folder.
    """
    from ppl_torchrl.data import make_offline_replay_buffer
    from ppl_torchrl.data.d4rl import default_root
    from ppl_torchrl.data.transforms import reward_scale_bias

    with user_errors(KeyError, FileNotFoundError):  # unknown ids, a missing dataset.path
        data_source, eval_id = resolve_training_data(cfg.dataset)
    scale, bias = cfg.dataset.get("reward_scale"), cfg.dataset.get("reward_bias")
    if scale is None or bias is None:
        auto_scale, auto_bias = reward_scale_bias(eval_id or "", cfg.loss.reward_family)
        scale = auto_scale if scale is None else scale
        bias = auto_bias if bias is None else bias
    observation_keys = dataset_observation_keys(cfg, data_source)
    max_episode_steps = dataset_time_limit(cfg, data_source, eval_id)
    root = default_root()  # a failed import or download leaves no empty folder behind
    with _no_new_empty_folders(root / "downloads", root / "d4rl", root / "hdf5", root), \
            user_errors(OSError, KeyError, ValueError), user_errors(RuntimeError, FileNotFoundError, hint=DATA_HINT):
        buffer = make_offline_replay_buffer(
            data_source, batch_size=int(batch_size or cfg.optim.batch_size), reward_scale=float(scale),
            reward_bias=float(bias), normalize_states=bool(cfg.dataset.normalize_states), seed=int(cfg.seed),
            observation_keys=observation_keys, max_episode_steps=max_episode_steps, progress=cfg.logger.progress,
        )
    return TrainingData(buffer, data_source, eval_id, (float(scale), float(bias)))
