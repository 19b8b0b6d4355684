"""PPL's one-step setting (paper §5.2, Table 4 vs OneStep-RL): BC -> fixed Q^beta -> PPL policy.

Three phases, each with its own budget and each saved to ``run_dir`` so a later run reuses it:

1. ``bc``: behaviour cloning of beta, ``min ||pi(s) - a||^2`` (summed over action dims).
2. ``qbeta``: the SARSA-style critic :math:`Q^\\beta` (targets on the dataset's next action,
   ``PartialOTLoss(critic_next_action="dataset")``) plus the "simplified conservative update" the
   paper cites (CQL eq. 1): ``alpha * mean_s Q(s, a~mu)`` with ``mu`` uniform on the action box,
   pushing Q down on actions the data do not support. ``alpha = conservative_weight``; the paper
   gives no value (our choice, in the config).
3. ``policy``: Algorithm 1 on the fixed :math:`Q^\\beta`: actor and potential updates only, the actor
   initialised from beta (our reading: the paper pre-trains beta for this phase).
"""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm.auto import trange

from ppl_torchrl.atomic import atomic_torch_save
from ppl_torchrl.modules import make_actor, make_potential, make_qvalue_ensemble
from ppl_torchrl.objectives import PartialOTLoss
from ppl_torchrl.training.algorithms import _adam, optimizer_step

PHASES = ("bc", "qbeta", "policy")


def make_onestep_loss(cfg: DictConfig, obs_dim: int, act_dim: int, device) -> PartialOTLoss:
    m, lc = cfg.model, cfg.loss
    actor = make_actor(obs_dim, act_dim, hidden_dim=m.hidden_dim, num_hidden=m.num_hidden, device=device)
    qvalue = make_qvalue_ensemble(obs_dim, act_dim, num_qvalue_nets=m.num_qvalue_nets, hidden_dim=m.hidden_dim,
                                  num_hidden=m.num_hidden, device=device)
    potential = make_potential(obs_dim, act_dim, hidden_dim=m.hidden_dim, num_hidden=m.num_hidden, device=device)
    loss = PartialOTLoss(actor, qvalue, potential, w=lc.w, actor_bc_coef=lc.actor_bc_coef, critic_bc_coef=0.0,
                         normalize_q=lc.normalize_q, critic_next_action="dataset",
                         potential_uses_target_actor=False, delay_actor=False)
    loss.make_value_estimator(gamma=cfg.optim.gamma)
    return loss


def bc_phase(loss: PartialOTLoss, buffer, steps: int, lr: float, progress: bool = True) -> None:
    opt = _adam(loss.actor_network_params.values(True, True), lr)
    action_key = loss.tensor_keys.action
    for _ in trange(steps, desc="bc (beta)", disable=not progress):
        batch = buffer.sample()
        pred = loss._actor(batch, loss.actor_network_params)
        optimizer_step(opt, (pred - batch.get(action_key)).pow(2).sum(-1).mean())


def qbeta_phase(loss: PartialOTLoss, buffer, steps: int, lr: float, tau: float, conservative_weight: float,
                progress: bool = True) -> None:
    from torchrl.objectives import SoftUpdate

    updater = SoftUpdate(loss, tau=tau)
    opt = _adam(loss.qvalue_network_params.values(True, True), lr)
    low, high = loss.min_action, loss.max_action
    for _ in trange(steps, desc="Q^beta (SARSA)", disable=not progress):
        batch = buffer.sample()
        td_loss, _ = loss.qvalue_loss(batch)
        if conservative_weight > 0:
            a = batch.get(loss.tensor_keys.action)
            random_action = low + (high - low) * torch.rand_like(a)
            q_random = loss._qvalues(batch, random_action, loss.qvalue_network_params)
            td_loss = td_loss + conservative_weight * q_random.mean(0).sum()
        optimizer_step(opt, td_loss)
        updater.step()


def policy_phase(loss: PartialOTLoss, buffer, steps: int, actor_lr: float, potential_lr: float,
                 progress: bool = True) -> None:
    opt_actor = _adam(loss.actor_network_params.values(True, True), actor_lr)
    opt_f = _adam(loss.potential_network_params.values(True, True), potential_lr)
    for _ in trange(steps, desc="PPL policy", disable=not progress):
        batch = buffer.sample()
        optimizer_step(opt_actor, loss.actor_loss(batch)[0])
        optimizer_step(opt_f, loss.potential_loss(batch)[0])


def run_onestep(cfg: DictConfig, loss: PartialOTLoss, buffer, run_dir: Path) -> None:
    """Runs the three phases, reusing ``run_dir/phase_<name>.pt`` checkpoints of finished phases."""
    o, p = cfg.optim, cfg.logger.progress
    phases = {
        "bc": lambda: bc_phase(loss, buffer, int(o.bc_steps), o.actor_lr, p),
        "qbeta": lambda: qbeta_phase(loss, buffer, int(o.qbeta_steps), o.critic_lr, o.tau,
                                     cfg.loss.conservative_weight, p),
        "policy": lambda: policy_phase(loss, buffer, int(o.policy_steps), o.actor_lr,
                                       o.critic_lr * o.potential_lr_scale, p),
    }
    for name in PHASES:
        path = Path(run_dir) / f"phase_{name}.pt"
        if path.exists():
            loss.load_state_dict(torch.load(path, map_location=loss.min_action.device, weights_only=False))
            print(f"phase {name}: reused {path}")
            continue
        phases[name]()
        atomic_torch_save(loss.state_dict(), path)
