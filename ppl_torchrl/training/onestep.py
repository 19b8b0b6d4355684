"""PPL's one-step setting (paper §5.2, Table 4 vs OneStep-RL): BC -> fixed Q^beta -> PPL policy: the algorithms.

Three phases, each an :class:`~ppl_torchrl.training.algorithms.Algorithm` that the one
:class:`~ppl_torchrl.training.trainer.Trainer` runs (logs, checkpoints, exact resume, progress), each built by the
one set-up chain :func:`~ppl_torchrl.training.build.build_run` on the same data (every ``dataset`` setting:
reward scale and bias, state normalisation, observation keys); :mod:`ppl_torchrl.training.onestep_phases` runs them:

1. ``bc``: behaviour cloning of beta, ``min ||pi(s) - a||^2`` (summed over action dims) (:func:`bc_algorithm`).
2. ``qbeta``: the SARSA-style critic :math:`Q^\\beta` (targets on the dataset's next action,
   ``PartialOTLoss(critic_next_action="dataset")``) plus the "simplified conservative update" the
   paper cites (CQL eq. 1): ``alpha * mean_s Q(s, a~mu)`` with ``mu`` uniform on the action box,
   pushing Q down on actions the data do not support. ``alpha = conservative_weight``; the paper
   gives no value (our choice, in the config) (:func:`sarsa_algorithm`).
3. ``policy``: Algorithm 1 on the fixed :math:`Q^\\beta`: an actor step, then a potential step, the actor
   initialised from beta (our reading: the paper pre-trains beta for this phase) (:func:`fixed_q_algorithm`, which
   the toy's policies use too).
"""
from __future__ import annotations

from typing import Callable

import torch
from tensordict import TensorDict
from torchrl.objectives import SoftUpdate

from ppl_torchrl.objectives import PartialOTLoss, bc_distance
from ppl_torchrl.training.algorithms import Algorithm, _adam, optimizer_step
from ppl_torchrl.training.config import LossConfig, NetworkConfig, OptimConfig

PHASES = ("bc", "qbeta", "policy")
#: the policy phase's algorithm name (its results.json, its progress bar)
POLICY_NAME = "ppl_onestep"
#: each phase's algorithm name -> the phase (a checkpoint records the name: recipes/evaluate.py rebuilds it)
PHASE_OF = {"onestep_bc": "bc", "onestep_qbeta": "qbeta", POLICY_NAME: "policy"}


def make_onestep_loss(lc: LossConfig, m: NetworkConfig, optim: OptimConfig, obs_dim: int, act_dim: int,
                      device) -> PartialOTLoss:
    """The loss every phase trains a part of: PPL^R's networks (``m``), ``lc.w``, ``lc.actor_bc_coef`` and
    ``lc.normalize_q``, the critic's targets on the dataset's next action, no target actor."""
    actor, qvalue, potential = m.actor(obs_dim, act_dim, device), m.critics(obs_dim, act_dim, device), m.potential(
        obs_dim, act_dim, device)
    loss = PartialOTLoss(actor, qvalue, potential, w=lc.w, actor_bc_coef=lc.actor_bc_coef, critic_bc_coef=0.0,
                         normalize_q=lc.normalize_q, critic_next_action="dataset",
                         potential_uses_target_actor=False, delay_actor=False)
    loss.make_value_estimator(gamma=optim.gamma)
    return loss


# ------------------------------------------------------------------------------------------- the phases' algorithms
def bc_algorithm(loss, lr: float, name: str = "onestep_bc", optimizer: Callable = _adam) -> Algorithm:
    """Behaviour cloning of the loss's actor: ``mean ||pi(s) - a||^2`` (summed over action dims)."""
    opts = {"actor": optimizer(loss.actor_network_params.values(True, True), lr)}
    action_key = loss.tensor_keys.action

    def update(batch: TensorDict, step: int) -> TensorDict:
        pred = loss.policy_action(batch, loss.actor_network_params)
        bc = bc_distance(pred, batch.get(action_key)).mean()
        optimizer_step(opts["actor"], bc)
        return TensorDict({"loss_bc": bc.detach()})

    return Algorithm(name, loss, opts, loss.actor_network, update)


def sarsa_algorithm(loss, lr: float, tau: float, conservative_weight: float = 0.0, name: str = "onestep_qbeta",
                    optimizer: Callable = _adam) -> Algorithm:
    """:math:`Q^\\beta` by SARSA-style updates of the loss's critic (the loss built with
    ``critic_next_action="dataset"``), soft target updates every step; with ``conservative_weight`` > 0, plus
    ``conservative_weight * mean_s Q(s, u)``, ``u`` uniform on the action box (CQL eq. 1's simplified form)."""
    updater = SoftUpdate(loss, tau=tau)
    opts = {"critic": optimizer(loss.qvalue_network_params.values(True, True), lr)}
    low, high = loss.min_action, loss.max_action

    def update(batch: TensorDict, step: int) -> TensorDict:
        td_loss, _ = loss.qvalue_loss(batch)
        out = {"loss_qvalue": td_loss.detach()}
        if conservative_weight > 0:
            a = batch.get(loss.tensor_keys.action)
            random_action = low + (high - low) * torch.rand_like(a)
            q_random = loss.qvalues(batch, random_action, loss.qvalue_network_params)
            conservative = q_random.mean(0).sum()
            td_loss = td_loss + conservative_weight * conservative
            out["q_random"] = conservative.detach()
        optimizer_step(opts["critic"], td_loss)
        updater.step()
        return TensorDict(out)

    return Algorithm(name, loss, opts, loss.actor_network, update, updater)


def fixed_q_algorithm(loss, actor_lr: float, potential_lr: float | None = None, name: str = POLICY_NAME,
                      optimizer: Callable = _adam) -> Algorithm:
    """A policy against a fixed critic: each update an actor step on ``loss.actor_loss``, then (PPL: ``loss`` has a
    potential and ``potential_lr`` is given) a potential step on ``loss.potential_loss`` (the authors' order), with
    the online actor in the f-step. The critic has no optimizer: it stays as trained (the losses read it detached).

    PPL's policy phase of the one-step setting, and both policies of the toy (:mod:`ppl_torchrl.toy`)."""
    opts = {"actor": optimizer(loss.actor_network_params.values(True, True), actor_lr)}
    if potential_lr is not None:
        opts["potential"] = optimizer(loss.potential_network_params.values(True, True), potential_lr)

    def update(batch: TensorDict, step: int) -> TensorDict:
        loss_actor = loss.actor_loss(batch)[0]
        optimizer_step(opts["actor"], loss_actor)
        out = {"loss_actor": loss_actor.detach()}
        if "potential" in opts:
            loss_f = loss.potential_loss(batch)[0]
            optimizer_step(opts["potential"], loss_f)
            out["loss_potential"] = loss_f.detach()
        return TensorDict(out)

    return Algorithm(name, loss, opts, loss.actor_network, update)


def make_onestep_algorithm(phase: str, lc: LossConfig, m: NetworkConfig, o: OptimConfig, obs_dim: int, act_dim: int,
                           device) -> Algorithm:
    """The algorithm of one phase (``bc``, ``qbeta`` or ``policy``) on a fresh :func:`make_onestep_loss`."""
    if phase not in PHASES:
        raise ValueError(f"Unknown one-step phase {phase!r}; the phases are {PHASES}.")
    loss = make_onestep_loss(lc, m, o, obs_dim, act_dim, device)
    if phase == "bc":
        return bc_algorithm(loss, o.actor_lr)
    if phase == "qbeta":
        return sarsa_algorithm(loss, o.critic_lr, o.tau, float(lc.conservative_weight))
    return fixed_q_algorithm(loss, o.actor_lr, o.potential_lr)


def onestep_algorithm_from_config(phase: str, cfg, obs_dim: int, act_dim: int, device) -> Algorithm:
    """The recipe's adapter: :func:`make_onestep_algorithm` from the Hydra config's ``loss``, ``model`` and ``optim``."""
    return make_onestep_algorithm(phase, LossConfig.from_config(cfg.loss), NetworkConfig.from_config(cfg.model),
                                  OptimConfig.from_config(cfg.optim), obs_dim, act_dim, device)
