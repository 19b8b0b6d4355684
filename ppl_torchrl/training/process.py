"""The process a run trains in: its device (with the fix when CUDA is asked for and missing), torch threads and
seeds."""
from __future__ import annotations

import random

import numpy as np
import torch
from omegaconf import DictConfig

from ppl_torchrl.errors import ConfigError, DeviceError


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


def setup_process(cfg: DictConfig) -> torch.device:
    """Device, torch threads and seeds of a run (``device``, ``threads``, ``seed``)."""
    device = resolve_device(cfg.device)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    seed_everything(int(cfg.seed))
    return device
