"""Input validation shared by the loss modules: clear errors instead of silent NaNs."""
from __future__ import annotations

from typing import Iterable

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.envs.utils import ExplorationType, set_exploration_type


class MissingKeyError(KeyError):
    """A KeyError whose message prints as written (KeyError quotes its argument)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _fmt(key: NestedKey) -> str:
    return repr(key) if isinstance(key, str) else repr(tuple(key))


def check_batch(loss_name: str, tensordict: TensorDictBase, required: Iterable[NestedKey]) -> None:
    """Raises a ``KeyError``/``ValueError`` that says what to fix when a batch is unusable.

    Checks that every ``required`` key is present, that every entry shares the tensordict's batch dimensions, and
    that float entries are finite.
    """
    required = list(dict.fromkeys(required))
    missing = [k for k in required if tensordict.get(k, None) is None]
    if missing:
        raise MissingKeyError(
            f"{loss_name}: the batch lacks {', '.join(map(_fmt, missing))}. It has "
            f"{sorted(map(str, tensordict.keys(True, True)))}. Load data with ppl_torchrl.data "
            "(which adds ('next', 'action') and ('next', 'terminated')), or map your key names with "
            f"{loss_name.split('.')[0]}.set_keys(...)."
        )
    batch_dims = tensordict.batch_dims
    if batch_dims == 0:
        raise ValueError(
            f"{loss_name}: the batch has batch_size [] ; it needs at least one batch dimension, "
            "e.g. a replay-buffer sample of shape [batch_size]."
        )
    non_finite = []
    for key in required:
        value = tensordict.get(key)
        if value.dim() <= batch_dims - 1 or value.shape[:batch_dims] != tensordict.batch_size:
            raise ValueError(
                f"{loss_name}: entry {_fmt(key)} has shape {tuple(value.shape)}, which does not start "
                f"with the batch shape {tuple(tensordict.batch_size)}."
            )
        if value.is_floating_point():
            non_finite.append(~torch.isfinite(value).all())
    if non_finite and torch.stack(non_finite).any():
        bad = [_fmt(k) for k, flag in zip([k for k in required if tensordict.get(k).is_floating_point()], non_finite) if flag]
        raise ValueError(
            f"{loss_name}: entries {', '.join(bad)} contain NaN or inf values. Clean the dataset "
            "(ppl_torchrl.data validates HDF5 files on import) or check the reward/state transforms."
        )


def actor_action_width(loss_name: str, actor: torch.nn.Module, params: TensorDictBase, tensordict: TensorDictBase,
                       action_key: NestedKey) -> int | None:
    """How many action features ``actor`` (with ``params``) writes for the batch's first sample: no gradient, and no
    random draw (a probabilistic actor's deterministic action). ``None`` if the batch lacks what the actor reads. An
    actor that cannot read the batch (an observation of the wrong width) is a ``ValueError`` saying so."""
    in_keys = list(actor.in_keys)
    if any(tensordict.get(k, None) is None for k in in_keys):
        return None
    sample = tensordict.select(*in_keys).reshape(-1)[:1]
    try:
        with torch.no_grad(), params.to_module(actor), set_exploration_type(ExplorationType.DETERMINISTIC):
            action = actor(sample).get(action_key)
    except RuntimeError as err:
        shapes = ", ".join(f"{_fmt(k)} {tuple(tensordict.get(k).shape)}" for k in in_keys)
        raise ValueError(f"{loss_name}: the actor cannot read the batch ({shapes}): "
                         f"{str(err).splitlines()[0]}. Check the dataset's observation size (and device) against the "
                         "networks'.") from None
    return int(action.shape[-1])


def check_action_width(loss_name: str, tensordict: TensorDictBase, action_keys: Iterable[NestedKey],
                       width: int | None) -> None:
    """Raises a ``ValueError`` when an action entry of the batch has another number of features than the actor's
    ``width`` (where known): a width of 1 would otherwise broadcast silently into the BC and f terms."""
    for key in action_keys:
        value = tensordict.get(key, None)
        if width is not None and value is not None and value.shape[-1] != width:
            raise ValueError(f"{loss_name}: entry {_fmt(key)} has {value.shape[-1]} action features but the actor "
                             f"produces {width}. Check the dataset's action size against the networks'.")


def check_actor_width(loss_name: str, loss, tensordict: TensorDictBase, action_keys: Iterable[NestedKey],
                      known: int | None) -> int | None:
    """The batch's action entries against the width of ``loss``'s actor: ``known`` (what an earlier call returned), or
    learnt now from one forward on this batch. Returns the width, for the loss to keep."""
    width = known if known is not None else actor_action_width(
        loss_name, loss.actor_network, loss.actor_network_params, tensordict, loss.tensor_keys.action)
    check_action_width(loss_name, tensordict, action_keys, width)
    return width


def check_separate_networks(loss_name: str, **networks: torch.nn.Module) -> None:
    """Raises a ``ValueError`` when two of ``networks`` share a parameter (a common trunk, say).

    Each term of these losses trains one network, with its own optimizer in the recipes: a shared parameter would take
    another term's gradient (the actor's through the critic, for one), which the update is not written for.
    """
    owner: dict[int, str] = {}
    for name, network in networks.items():
        for parameter in network.parameters():
            first = owner.setdefault(id(parameter), name)
            if first != name:
                raise ValueError(f"{loss_name}: {first} and {name} share parameters (a common trunk?). Each loss "
                                 "term trains one network with its own optimizer: give each network its own "
                                 "parameters.")

