"""What the potential does during training: PPL^R's mechanism measured on a fixed probe set of the data.

The score says whether PPL^R beats ReBRAC; it does not say why. At every evaluation the trainer runs
:class:`MechanismProbe` on the same ``size`` dataset pairs ``(s, a)`` (drawn once with their own seed, so the
training's random stream and its exact resume are untouched) and logs, under ``probe/``:

* ``q_policy`` / ``q_data``: ``min_i Q_i`` at the policy's action and at the dataset's action;
* ``f_policy`` / ``f_data`` (PPL only): the potential at the policy's and the dataset's actions;
* the actor loss's three terms on the probe set: ``term_bc`` (``actor_bc_coef * ||pi(s) - a||^2``),
  ``term_q`` (``lambda * Q(s, pi(s))``, about 1 in size when ``normalize_q``) and ``term_f`` (``f(s, pi(s))``);
* the norm of each term's gradient with respect to the actor's parameters, and ``grad_share_f``:
  ``|g_f| / (|g_bc| + |g_q| + |g_f|)``, the share of the actor's gradient that comes from the potential;
* ``toward_data_<term>``: where each term moves the action, whatever the actor's squashing: the mean over the
  probe pairs of the cosine between the term's descent direction in the action, ``-d term / d pi(s)``, and the
  direction to the pair's data action, ``a - pi(s)`` (1: straight to the data, -1: straight away; BC's is 1 by
  construction); ``saturated``: the share of the policy's action components with ``|pi(s)| > 0.99``, where a tanh
  actor passes (almost) no gradient to its weights, whatever the terms ask;
* ``f_active_share`` (PPL only): the share of the probe's data actions on which f is active, below a tenth of its
  mean at the policy's actions (:func:`active_share`: near ``1/w`` where the policy fills its best 1/w share);
* where the data labels its behaviours (``infos/behavior`` of the generated ``-mixed`` datasets), per behaviour
  ``b``: ``dist/<b>``, the mean ``||pi(s) - a||`` over the probe pairs of that behaviour, and ``f_data/<b>``;
  with the ``efficient`` (planner / expert) and ``inefficient`` (all others) groups beside them. Partial
  transport predicts that the policy moves away from the inefficient actions (``dist/inefficient`` grows
  against ReBRAC's) while staying on the efficient ones, and that ``f_data`` separates the two groups.

The probe only reads the loss's parameters (no optimizer, no ``.grad``), so a run with it trains bit for bit
as one without.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict

from ppl_torchrl import keys
from ppl_torchrl.objectives import SATURATED

#: behaviour names counted as efficient (``ppl_torchrl.datagen``: the BFS planner and the expert policies)
EFFICIENT_BEHAVIORS = ("planner", "expert")


def active_share(f_data: torch.Tensor, f_policy: torch.Tensor) -> float:
    """The share of the data's actions on which f is active: below a tenth of ``f_policy``, f's mean at the policy's
    actions. By complementary slackness f < 0 only where the policy's mass reaches ``w`` times the data's, so this is
    the share of the data the policy fills to capacity: about ``1/w`` where the policy can fill its best 1/w share,
    the share of the one mode it sits on where it cannot (docs/evidence.md, the known-answer w grid)."""
    return (f_data < 0.1 * f_policy).float().mean().item()


@dataclass
class ProbeData:
    """Fixed dataset pairs: ``observation [N, obs]`` (as the networks see them), ``action [N, act]``, and
    ``behavior [N]`` (integer labels) with their ``names`` (label -> name), or ``None`` without labels."""

    observation: torch.Tensor
    action: torch.Tensor
    behavior: torch.Tensor | None = None
    names: dict[int, str] | None = None


def _names_from_attr(raw) -> dict[int, str]:
    names = {}
    for item in raw:
        text = item.decode() if isinstance(item, bytes) else str(item)
        label, _, name = text.partition(":")
        names[int(label)] = name or text
    return names


def load_probe_data(source, buffer, size: int, seed: int = 1234, device=None) -> ProbeData | None:
    """``size`` pairs of the dataset, drawn without replacement with ``seed`` (independent of training).

    ``source`` a D4RL-format HDF5 path: read from it, with ``infos/behavior`` labels when present (and
    their names from the file's ``behavior_names`` attribute). Otherwise the pairs come from ``buffer``'s
    storage, without labels. Observations are normalized as the buffer normalizes them.
    """
    if size <= 0:
        return None
    rng = np.random.default_rng(seed)
    behavior, names = None, None
    path = Path(str(source)).expanduser()
    if path.suffix in (".hdf5", ".h5") and path.is_file():
        import h5py

        with h5py.File(path, "r") as h5:
            n = h5["observations"].shape[0]
            rows = np.sort(rng.choice(n, size=min(size, n), replace=False))
            obs = torch.as_tensor(h5["observations"][rows], dtype=torch.float32)
            act = torch.as_tensor(h5["actions"][rows], dtype=torch.float32)
            if "infos/behavior" in h5:
                behavior = torch.as_tensor(np.asarray(h5["infos/behavior"][rows]).reshape(-1).astype(np.int64))
                raw = h5.attrs.get("behavior_names")
                names = _names_from_attr(raw) if raw is not None else {int(b): str(int(b)) for b in behavior.unique()}
    else:
        storage = buffer.storage
        n = len(storage)
        rows = torch.as_tensor(np.sort(rng.choice(n, size=min(size, n), replace=False)))
        batch = storage[rows]
        obs = batch.get(keys.OBSERVATION).float()
        act = batch.get(keys.ACTION).float()
    mean, std = buffer.state_mean.to(obs), buffer.state_std.to(obs)
    obs = (obs - mean) / std
    return ProbeData(obs.to(device), act.to(device),
                     None if behavior is None else behavior.to(device), names)


class MechanismProbe:
    """Measures a PPL^R / ReBRAC loss on :class:`ProbeData`; ``probe(loss) -> {name: float}``."""

    def __init__(self, data: ProbeData):
        self.data = data
        self.td = TensorDict({keys.OBSERVATION: data.observation, keys.ACTION: data.action},
                             batch_size=[data.observation.shape[0]])

    def groups(self) -> dict[str, torch.Tensor]:
        """Behaviour name -> boolean mask over the probe pairs (with ``efficient`` / ``inefficient``)."""
        if self.data.behavior is None:
            return {}
        out = {name: self.data.behavior == label for label, name in sorted(self.data.names.items())}
        efficient = torch.zeros_like(self.data.behavior, dtype=torch.bool)
        for name, mask in out.items():
            if name in EFFICIENT_BEHAVIORS:
                efficient |= mask
        if efficient.any() and not efficient.all():
            out["efficient"], out["inefficient"] = efficient, ~efficient
        return {k: m for k, m in out.items() if m.any()}

    def __call__(self, loss) -> dict[str, float]:
        td = self.td
        data_action = td.get(keys.ACTION)
        actor_params = loss.actor_network_params
        critic_params = loss.qvalue_network_params.detach()
        has_f = hasattr(loss, "potential_network_params")
        potential_params = loss.potential_network_params.detach() if has_f else None
        leaves = [p for p in actor_params.values(True, True) if p.requires_grad]

        with torch.enable_grad():
            # The loss's own per-sample actor terms (signed: their sum is the actor objective bc - q - f
            # + saturation, the last where the actor's saturation penalty is on).
            args = (td, actor_params, critic_params) + ((potential_params,) if has_f else ())
            signed, policy_action, metadata = loss.actor_terms(*args)
            sign = {"bc": 1.0, "q": -1.0, "f": -1.0, "saturation": 1.0}
            terms = {k: sign[k] * v.mean() for k, v in signed.items()}
            # Each term's own gradient (the actor loss is term_bc - term_q - term_f).
            grads = {k: torch.autograd.grad(v, leaves, retain_graph=True) for k, v in terms.items()}
            # Per sample, in the action: each signed term is per-sample, so the gradient of its sum is each
            # sample's own.
            in_action = {k: torch.autograd.grad(v.sum(), policy_action, retain_graph=True, allow_unused=True)[0]
                         for k, v in signed.items()}
        norms = {k: torch.sqrt(sum(g.pow(2).sum() for g in gs)).item() for k, gs in grads.items()}

        with torch.no_grad():
            action = policy_action.detach()
            out = {
                "q_policy": metadata["state_action_value_actor"].item(),
                "q_data": loss.qvalues(td, data_action, critic_params).min(-1).values.mean().item(),
                "dist": (action - data_action).norm(dim=-1).mean().item(),
                **{f"term_{k}": v.item() for k, v in terms.items()},
                **{f"grad_norm_{k}": v for k, v in norms.items()},
                **{f"toward_data_{k}": torch.nn.functional.cosine_similarity(-g, data_action - action, dim=-1)
                   .mean().item() for k, g in in_action.items() if g is not None},
                "saturated": (action.abs() > SATURATED).float().mean().item(),
            }
            if has_f:
                f_data = loss.potential(td, data_action, potential_params)
                f_policy = metadata["potential_actor"]  # f itself (term_f carries the actor term's weight)
                out["f_policy"] = f_policy.item()
                out["f_data"] = f_data.mean().item()
                out["grad_share_f"] = norms["f"] / max(sum(norms.values()), 1e-30)
                out["f_active_share"] = active_share(f_data, f_policy)
            dist = (action - data_action).norm(dim=-1)
            for name, mask in self.groups().items():
                out[f"dist/{name}"] = dist[mask].mean().item()
                if has_f:
                    out[f"f_data/{name}"] = f_data[mask].mean().item()
        return out


def make_probe(cfg, source, buffer, algorithm, device) -> MechanismProbe | None:
    """The probe of a run (``probe.size`` pairs; 0 or a loss without a deterministic actor and critic ensemble:
    none)."""
    section = cfg.get("probe") or {}
    size = int(section.get("size", 0) or 0)
    loss = algorithm.loss
    if size <= 0 or not all(hasattr(loss, a) for a in ("actor_terms", "qvalues")):
        return None
    data = load_probe_data(source, buffer, size, seed=int(section.get("seed", 1234)), device=device)
    return None if data is None else MechanismProbe(data)
