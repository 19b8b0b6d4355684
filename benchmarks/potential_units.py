"""How many units of a PPL^R run's potential are alive: the dead-ReLU check behind the long-budget report's reading
of the trainable potential (``python benchmarks/long_evidence.py --potential-units``); how much of a run's
policy sits on the action box's edge (a tanh collapse); and the pull f puts on the actor at its actions (the size of
f's action gradient, which the gradient penalty bounds by about K, and its direction against each state's own data
action: docs/algorithm.md). ``python benchmarks/potential_units.py CHECKPOINT...`` prints all three for each
checkpoint.

Where no unit of the potential's last hidden layer is active, its output is the last bias and a loss sends no
gradient to any other weight: the potential is a constant, on the data's actions and on the policy's.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from tensordict import TensorDict

from ppl_torchrl import keys
from ppl_torchrl.training.checkpoints import load_trained_run
from ppl_torchrl.training.data_source import resolve_training_data
from ppl_torchrl.objectives import SATURATED
from ppl_torchrl.training.probe import load_probe_data


ACTIVATION_MODULES = (torch.nn.ReLU, torch.nn.GELU)  # the elementwise activations ppl_torchrl.modules builds
#: a unit whose activation's slope stays below this on every input gets (almost) no gradient: dead
MIN_SLOPE = 1e-3


def active_units(mlp: torch.nn.Sequential, inputs: torch.Tensor) -> torch.Tensor:
    """Which units of ``mlp``'s last hidden layer are alive: their activation's slope exceeds :data:`MIN_SLOPE` on at
    least one row of ``inputs`` (ReLU: output > 0; GELU: pre-activation above about -3.6).

    Where none is, the network's output on those inputs is (nearly) its last bias, and a loss on them sends no
    gradient to any other weight: the dead units stay dead as long as the inputs stay in that region (a dead-ReLU
    collapse; GELU's slope vanishes only far below 0)."""
    last = max(i for i, m in enumerate(mlp) if isinstance(m, ACTIVATION_MODULES))
    with torch.no_grad():
        pre = mlp[:last](inputs)
    with torch.enable_grad():
        pre = pre.detach().requires_grad_(True)
        (slope,) = torch.autograd.grad(mlp[last](pre).sum(), pre)  # elementwise: each input's own slope
    return (slope.abs() > MIN_SLOPE).reshape(-1, slope.shape[-1]).any(0)


def _checkpoint_on_probe(path):
    """A trained run's algorithm with its probe pairs ``(s, a)`` and the deterministic policy's actions on them."""
    state, cfg, algorithm = load_trained_run(path)
    source, _ = resolve_training_data(cfg.dataset)
    if Path(source).suffix not in (".hdf5", ".h5"):
        raise ValueError(f"{path}: its dataset {source!r} is not a D4RL-format HDF5 file; the probe pairs are read "
                         "from one (set dataset.path to a local copy).")
    probe_cfg = cfg.get("probe") or {}
    data = load_probe_data(source, SimpleNamespace(state_mean=state["state_mean"], state_std=state["state_std"]),
                           int(probe_cfg.get("size", 0) or 2048), seed=int(probe_cfg.get("seed", 1234)))
    td = TensorDict({keys.OBSERVATION: data.observation}, batch_size=[data.observation.shape[0]])
    with torch.no_grad():
        policy_action = algorithm.policy(td)[keys.ACTION]  # the deterministic actor recipes/evaluate.py scores
    return state, algorithm, data, policy_action


def checkpoint_potential_units(path) -> dict[str, int] | None:
    """How many units of the potential's last hidden layer are alive in a PPL^R run's checkpoint (``Trainer``'s
    ``checkpoint.pt``), on the run's probe pairs ``(s, a)``, on ``(s, pi(s))`` and on ``(s, u)`` with ``u`` uniform in
    the action box [-1, 1]; ``{"units": N, "data": ., "policy": ., "random": ., "step": .}``, or ``None`` for a
    checkpoint without a potential (ReBRAC). The dataset must be a D4RL-format HDF5 file (a generated id is)."""
    return _potential_units(*_checkpoint_on_probe(path))


def _potential_units(state, algorithm, data, policy_action) -> dict[str, int] | None:
    loss = algorithm.loss
    if not hasattr(loss, "potential_network_params"):
        return None
    uniform = torch.rand(data.action.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    net = loss.potential_network.module.net
    with loss.potential_network_params.to_module(loss.potential_network):
        count = {name: int(active_units(net, torch.cat([data.observation, a], -1)).sum())
                 for name, a in (("data", data.action), ("policy", policy_action), ("random", uniform))}
    return {"step": int(state["step"]), "units": int(net[-1].in_features), **count}


def checkpoint_policy_saturation(path) -> dict[str, float]:
    """How much of a run's deterministic policy sits on the action box's edge, on the probe states: the share of
    action components with ``|a| > SATURATED`` for the policy and for the data's own actions, and the number of
    distinct policy actions (rounded to 0.01). A policy at one corner of the box for every state is a tanh
    collapse: its actor gets almost no gradient from Q, the BC term or the potential."""
    return _policy_saturation(*_checkpoint_on_probe(path))


def _policy_saturation(state, algorithm, data, policy_action) -> dict[str, float]:
    distinct = len({tuple(row) for row in (policy_action * 100).round().tolist()})
    return {"step": int(state["step"]), "policy": float((policy_action.abs() > SATURATED).float().mean()),
            "data": float((data.action.abs() > SATURATED).float().mean()), "distinct": distinct,
            "states": int(policy_action.shape[0])}


def checkpoint_potential_pull(path) -> dict[str, float] | None:
    """f's pull on the actor at the policy's actions, on the run's probe states: ``∇_a f(s, π(s))`` (the actor's
    term is ``-f``, so the actor moves along it), its mean and 90th-percentile norm, and the mean cosine between it and
    the way to the state's own data action ``a - π(s)``; ``None`` for a checkpoint without a potential."""
    return _potential_pull(*_checkpoint_on_probe(path))


def _potential_pull(state, algorithm, data, policy_action) -> dict[str, float] | None:
    loss = algorithm.loss
    if not hasattr(loss, "potential_network_params"):
        return None
    td = TensorDict({keys.OBSERVATION: data.observation}, [data.observation.shape[0]])
    with torch.enable_grad():
        action = policy_action.detach().requires_grad_(True)
        (pull,) = torch.autograd.grad(loss.potential(td, action, loss.potential_network_params.detach()).sum(), action)
    norm = pull.norm(dim=-1)
    cosine = torch.nn.functional.cosine_similarity(pull, data.action - policy_action, dim=-1)
    return {"step": int(state["step"]), "norm_mean": norm.mean().item(), "norm_p90": norm.quantile(0.9).item(),
            "toward_data": cosine.mean().item()}


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="The live units of each run's potential, its policy's saturation and f's "
                                            "pull at the policy's actions, from checkpoints (Trainer's checkpoint.pt).")
    p.add_argument("checkpoints", nargs="+", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for path in args.checkpoints:
        loaded = _checkpoint_on_probe(path)  # one load for both counts
        units, sat, pull = _potential_units(*loaded), _policy_saturation(*loaded), _potential_pull(*loaded)
        live = "no potential" if units is None else (f"live units of {units['units']}: data {units['data']}, "
                                                     f"policy {units['policy']}, random {units['random']}")
        pulled = "" if pull is None else (f"; f's pull at the policy's actions |grad_a f| mean {pull['norm_mean']:.3f}, "
                                          f"p90 {pull['norm_p90']:.3f}, cosine to the data action "
                                          f"{pull['toward_data']:+.2f}")
        print(f"{path} (step {sat['step']}): {live}; action components with |a| > {SATURATED}: policy "
              f"{sat['policy']:.3f}, data {sat['data']:.3f}; distinct policy actions {sat['distinct']} of "
              f"{sat['states']} states{pulled}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
