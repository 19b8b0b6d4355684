"""The behaviour-policy network shared by ``recipes/train_behavior.py`` (which trains it with SAC)
and :mod:`ppl_torchrl.datagen.locomotion` (which replays the committed checkpoints).

Kept in its own tiny module so that loading a checkpoint never needs TorchRL's training stack:
a checkpoint is ``{"state_dict", "obs_dim", "act_dim", "hidden", "meta"}`` and the network is a
plain MLP whose output is ``(loc, raw_scale)`` of SAC's TanhNormal; the data-generating policy
uses the mean action ``tanh(loc)``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ppl_torchrl.atomic import UMASK, atomic_torch_save

__all__ = ["load_actor", "make_actor_mlp", "save_actor"]


def make_actor_mlp(obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (128, 128)) -> nn.Sequential:
    """MLP ``obs -> 2 * act_dim`` (TanhNormal loc and pre-softplus scale), ReLU hidden layers."""
    layers: list[nn.Module] = []
    last = obs_dim
    for h in hidden:
        layers += [nn.Linear(last, h), nn.ReLU()]
        last = h
    layers.append(nn.Linear(last, 2 * act_dim))
    return nn.Sequential(*layers)


def save_actor(path: str | Path, net: nn.Sequential, obs_dim: int, act_dim: int,
               hidden: tuple[int, ...], meta: dict) -> Path:
    """Writes a CPU float32 copy of ``net`` atomically (:func:`ppl_torchrl.atomic.atomic_torch_save`)."""
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in net.state_dict().items()}
    blob = {"state_dict": state, "obs_dim": int(obs_dim), "act_dim": int(act_dim),
            "hidden": [int(h) for h in hidden], "meta": dict(meta)}
    return atomic_torch_save(blob, path, mode=UMASK)  # a data file, like the datasets made from it


def load_actor(path: str | Path) -> tuple[nn.Sequential, dict]:
    """``(net in eval mode on CPU, checkpoint dict without the weights)``; clear error if unusable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Behaviour-policy checkpoint {path} is missing. The committed ones live in "
            "ppl_torchrl/datagen/policies/; retrain with recipes/train_behavior.py if you deleted them.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        net = make_actor_mlp(blob["obs_dim"], blob["act_dim"], tuple(blob["hidden"]))
        net.load_state_dict(blob["state_dict"])
    except Exception as err:
        raise ValueError(f"{path} is not a behaviour-policy checkpoint written by save_actor ({err}).") from err
    net.eval()
    info = {k: v for k, v in blob.items() if k != "state_dict"}
    return net, info
