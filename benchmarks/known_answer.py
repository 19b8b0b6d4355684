r"""The potential's known-answer problem: a one-step offline bandit whose partial-transport answer is known.

Per state ``s ~ U[-1, 1]`` the data hold two modes of actions: :data:`GOOD_SHARE` (30 %) from a good mode
``0.5 + 0.2 s`` and the rest from a bad one ``-0.5 + 0.2 s`` (noise :data:`NOISE`). The critic is fixed and known,
``Q(s, a) = 1 - (a - (0.5 + 0.2 s + 0.35))^2``: its maximiser lies :data:`SHIFT` above the good mode, outside the
data. Partial transport's answer (the policy may put at most ``w`` times the data's mass on any action, and Q picks
where):

* Q alone (no potential, no BC term) takes the policy out of the data, to the good mode + 0.35;
* at ``w = 3`` the good mode (30 % of the data, so room for 90 % of the policy's mass) takes almost all of it:
  the policy sits on the good mode, inside the data's support and far from the bad mode;
* at ``w = 1`` the policy must cover all the data (balanced transport), bad mode included;
* and complementary slackness says where f is active (f < 0): on the data the policy fills to capacity, about a
  ``1/w`` share of it (:func:`ppl_torchrl.training.probe.active_share`).

Two policies are trained on it, by the library's own losses and a fixed critic (learning rate 0):

* :func:`train_deterministic`: PPL^R's tanh actor, ``ReBRACUpdate`` on :class:`PartialOTLoss` (or
  :class:`ReBRACLoss` without a potential);
* :func:`train_stochastic`: PPL^CQL's TanhNormal actor, :class:`PartialOTCQLLoss`'s ``actor_loss`` (CQL's
  SAC-style term ``alpha log pi(a~|s) - Q(s, a~)`` minus ``f(s, a~)`` on a reparameterised sample) and
  ``potential_loss`` at a fixed temperature ``alpha``, in TorchRL's plain loop (``backward``, ``Adam.step``).

Measured (docs/evidence.md, ``benchmarks/known_answer_w.py``): with ``loss=ppl_stable``'s potential both land on the
good mode at w = 3, w moves either only a little, and neither covers the data at w = 1 (one point or one bump cannot
be two modes); docs/algorithm.md derives why: under the gradient penalty f pulls the policy toward its nearest 1/w
share of the data. A pull strong enough to outweigh Q (K = 3, 10) makes the actor-f game cycle, or settle in the
wrong mode, however it is scheduled (grids ``pull``, ``inner``, ``slowf``, ``online``, ``annealk`` of
``known_answer_w.py``); a :class:`NoiseMap` that could split its mass collapses to one point (grids ``map``,
``mapspread``); a penalty on f's values (:class:`ValuePenalised`) stops the cycles only by leaving the choice to Q,
and :func:`optimistic_gradients` does not stop them (grids ``valuepen``, ``valuepen1``, ``optimism``).
Used by ``benchmarks/tests/test_known_answer.py`` and ``benchmarks/known_answer_w.py``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs.utils import ExplorationType, exploration_type, set_exploration_type

from ppl_torchrl import keys
from ppl_torchrl.modules import DeterministicActor, make_actor, make_potential, make_tanh_normal_actor
from ppl_torchrl.objectives import PartialOTCQLLoss, PartialOTLoss, ReBRACLoss
from ppl_torchrl.training.probe import active_share
from ppl_torchrl.update import ReBRACUpdate

SHIFT = 0.35       # Q's maximiser, above the good mode
GOOD_SHARE = 0.3   # the good mode's share of the data
NOISE = 0.03       # each mode's noise
NEAR = 0.1         # a policy action "on" a mode: within this distance of its centre (over 3 noise widths)
STATES = torch.linspace(-0.9, 0.9, 19).unsqueeze(-1)  # where the policy is read
DATA_SIZE, BATCH, HIDDEN, DEPTH = 4096, 128, 32, 2
LR = 1e-3          # both policies' and their potentials' learning rate unless a run sets its own


def good(s: torch.Tensor) -> torch.Tensor:
    return 0.5 + 0.2 * s


def bad(s: torch.Tensor) -> torch.Tensor:
    return -0.5 + 0.2 * s


class KnownQ(nn.Module):
    """``Q(s, a) = 1 - (a - good(s) - SHIFT)^2`` (one member); its one parameter is never trained (lr 0)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, observation, action):
        return self.scale * (1.0 - (action - good(observation) - SHIFT).pow(2)).sum(-1, keepdim=True)


def known_qvalue() -> TensorDictModule:
    return TensorDictModule(KnownQ(), in_keys=[keys.OBSERVATION, keys.ACTION], out_keys=["state_action_value"])


class NoiseMap(nn.Module):
    """Neural OT's stochastic map ``a = T(s, z)``, ``z ~ N(0, 1)`` of ``noise_dim`` (Korotin et al. 2023): a
    deterministic tanh actor on ``[s, z]`` that can split its mass between modes, which one point (PPL^R's actor) or
    one bump (PPL^CQL's) cannot. Trained by PPL^R's own loss, which sees it as a deterministic actor whose every call
    draws fresh noise; under a deterministic exploration type it reads ``z = 0`` (the noise's median).

    The actor's small last layer makes the map start as one point, whatever z; ``noise_skip > 0`` adds
    ``noise_skip * z`` before the tanh (one noise input, as the action), so that it starts spread over the action
    range (``tanh(z)`` at ``noise_skip = 1``) and the network learns what to add to that."""

    reads_in_keys_positionally = True

    def __init__(self, noise_dim: int, *, hidden_dim: int, num_hidden: int, noise_skip: float = 0.0):
        super().__init__()
        if noise_skip and noise_dim != 1:
            raise ValueError(f"noise_skip adds z to the one-dimensional action: use noise_dim=1, not {noise_dim}")
        self.noise_dim, self.noise_skip = noise_dim, noise_skip
        self.map = DeterministicActor(1 + noise_dim, 1, hidden_dim=hidden_dim, num_hidden=num_hidden)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        shape = (*observation.shape[:-1], self.noise_dim)
        deterministic = exploration_type() in (ExplorationType.DETERMINISTIC, ExplorationType.MODE,
                                               ExplorationType.MEAN)
        z = observation.new_zeros(shape) if deterministic else torch.randn(shape, device=observation.device)
        return torch.tanh(self.map.net(torch.cat([observation, z], -1)) + self.noise_skip * z)


class ValuePenalised:
    """A prototype f-step switch (mixed into :class:`PartialOTLoss` or :class:`PartialOTCQLLoss`, before it):
    the f-step plus ``value_penalty / 2 * mean(f(s, pi)^2 + f(s, a)^2)``. Linear in f, PPL's f-step makes the
    actor-f game a bilinear one that gradient play circles; the square makes f's problem strongly concave, with the
    per-action optimum ``f* = min(0, (w d - pi) / (value_penalty (pi + d)))`` (d, pi the data's and the policy's
    densities): a soft constraint, no deeper than ``-1 / value_penalty``, that f can track."""

    value_penalty: float = 0.0

    def potential_objective_on(self, tensordict, potential_params, policy_action):
        objective, metadata = super().potential_objective_on(tensordict, potential_params, policy_action)
        if not self.value_penalty:
            return objective, metadata
        f_policy = self.potential(tensordict, policy_action.detach(), potential_params)
        f_data = self.potential(tensordict, tensordict.get(self.tensor_keys.action), potential_params)
        return objective + 0.5 * self.value_penalty * (f_policy.pow(2) + f_data.pow(2)).mean(), metadata


class _ValuePenalisedPPLR(ValuePenalised, PartialOTLoss):
    pass


class _ValuePenalisedPPLCQL(ValuePenalised, PartialOTCQLLoss):
    pass


def sample_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` states and data actions (each ``[n, 1]``), :data:`GOOD_SHARE` of them from the good mode."""
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, 1, generator=g) * 2 - 1
    is_good = torch.rand(n, 1, generator=g) < GOOD_SHARE
    a = torch.where(is_good, good(s), bad(s)) + NOISE * torch.randn(n, 1, generator=g)
    return s, a.clamp(-0.99, 0.99)


@dataclass
class Outcome:
    """Where a trained policy ends, read on :data:`STATES` (the first three at its deterministic action: a
    TanhNormal's mean, a :class:`NoiseMap` at z = 0; 200 samples per state for the shares of a stochastic policy or
    a map)."""

    offset: float            # mean of (policy action - good mode)
    to_good: float           # mean |policy action - good mode|
    to_bad: float            # mean |policy action - bad mode|
    on_good: float           # share of the policy's actions within NEAR of the good mode
    on_bad: float            # the same for the bad mode
    f_data: float = float("nan")     # f's mean on the data's actions (with a potential)
    f_policy: float = float("nan")   # f's mean at the policy's actions
    active: float = float("nan")     # share of the data's actions on which f is active (compare with 1/w)

    def as_dict(self) -> dict:
        return asdict(self)


def _batches(s, a, steps: int, seed: int):
    g = torch.Generator().manual_seed(seed + 1)
    ones = torch.ones(BATCH, 1, dtype=torch.bool)
    for step in range(steps):
        idx = torch.randint(0, s.shape[0], (BATCH,), generator=g)
        yield step, TensorDict({keys.OBSERVATION: s[idx], keys.ACTION: a[idx], ("next", keys.OBSERVATION): s[idx],
                                ("next", keys.ACTION): a[idx], ("next", "reward"): torch.zeros(BATCH, 1),
                                ("next", "done"): ones, ("next", "terminated"): ones}, [BATCH])


def _centre(actor) -> torch.Tensor:
    """The policy's deterministic action at each of :data:`STATES`."""
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        return actor(TensorDict({keys.OBSERVATION: STATES}, [len(STATES)]))[keys.ACTION]


def centre_offset(actor) -> float:
    """Mean of (the policy's deterministic action - the good mode) over :data:`STATES`: where the policy sits now."""
    return (_centre(actor) - good(STATES)).mean().item()


def sampled_actions(actor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``samples`` of the policy's actions at each of :data:`STATES` (states repeated, and the actions)."""
    states = STATES.repeat(samples, 1)
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        return states, actor(TensorDict({keys.OBSERVATION: states}, [len(states)]))[keys.ACTION]


def good_share(actor, samples: int = 200) -> float:
    """Share of the policy's sampled actions within :data:`NEAR` of the good mode, drawn on a forked random stream
    so that reading it during training leaves the run's own draws as they were."""
    with torch.random.fork_rng():
        states, actions = sampled_actions(actor, samples)
    return _share_near(actions, good(states))


def _share_near(actions: torch.Tensor, centres: torch.Tensor) -> float:
    """Share of ``actions`` within :data:`NEAR` of their mode's ``centres``."""
    return ((actions - centres).abs() < NEAR).float().mean().item()


OnStep = Callable[[int, nn.Module], None]   # called after each step with (steps done, the actor): a trace
Schedule = Callable[[int], float]           # step -> f's slope bound K (``potential_lipschitz``) for that step


def _outcome(loss, actor, s, a, samples: int, potential: bool) -> Outcome:
    centre = _centre(actor)
    states, actions = sampled_actions(actor, samples)
    out = Outcome(offset=(centre - good(STATES)).mean().item(), to_good=(centre - good(STATES)).abs().mean().item(),
                  to_bad=(centre - bad(STATES)).abs().mean().item(),
                  on_good=_share_near(actions, good(states)), on_bad=_share_near(actions, bad(states)))
    if potential:
        with torch.no_grad():
            data = TensorDict({keys.OBSERVATION: s}, [len(s)])
            f_data = loss.potential(data, a, loss.potential_network_params)
            f_policy = loss.potential(TensorDict({keys.OBSERVATION: states}, [len(states)]), actions,
                                      loss.potential_network_params)
        out.f_data, out.f_policy = f_data.mean().item(), f_policy.mean().item()
        out.active = active_share(f_data, f_policy.mean())
    return out


def _potential(potential_activation: str):
    return make_potential(1, 1, hidden_dim=HIDDEN, num_hidden=DEPTH, activation=potential_activation)


def train_deterministic(*, potential: bool = True, w: float = 3.0, steps: int = 2000, seed: int = 0,
                        actor_lr: float = LR, potential_lr: float = LR, actor_bc_coef: float = 0.0,
                        potential_activation: str = "relu", potential_steps: int = 1, on_step: OnStep | None = None,
                        lipschitz_schedule: Schedule | None = None, noise_dim: int = 0, noise_skip: float = 0.0,
                        value_penalty: float = 0.0, **switches) -> Outcome:
    """PPL^R's deterministic actor on the known problem (``ReBRACUpdate``, every step a delayed step, with
    ``potential_steps`` f-steps); ``switches`` are :class:`PartialOTLoss`'s potential switches;
    ``lipschitz_schedule`` sets K before each step (eager: the loss reads it at every call); ``noise_dim > 0``
    trains a :class:`NoiseMap` on ``noise_dim`` noise inputs (and its ``noise_skip``) in the actor's place, by the
    same update; ``value_penalty``: :class:`ValuePenalised`'s."""
    torch.manual_seed(seed)
    s, a = sample_data(DATA_SIZE, seed)
    if noise_dim:
        actor = TensorDictModule(NoiseMap(noise_dim, hidden_dim=HIDDEN, num_hidden=DEPTH, noise_skip=noise_skip),
                                 in_keys=[keys.OBSERVATION], out_keys=[keys.ACTION])
    else:
        actor = make_actor(1, 1, hidden_dim=HIDDEN, num_hidden=DEPTH)
    settings = dict(actor_bc_coef=actor_bc_coef, critic_bc_coef=0.0, critic_next_action="dataset")
    if potential:
        loss = _ValuePenalisedPPLR(actor, known_qvalue(), _potential(potential_activation), w=w, **settings,
                                   **switches)
        loss.value_penalty = value_penalty
    else:
        loss = ReBRACLoss(actor, known_qvalue(), **settings)
    loss.make_value_estimator(gamma=0.0)
    optimizers = {"actor": torch.optim.Adam(loss.actor_network_params.values(True, True), lr=actor_lr, foreach=True),
                  "critic": torch.optim.Adam(loss.qvalue_network_params.values(True, True), lr=0.0, foreach=True)}
    if potential:
        optimizers["potential"] = torch.optim.Adam(loss.potential_network_params.values(True, True), lr=potential_lr,
                                                   foreach=True)
    update = ReBRACUpdate(loss, optimizers, tau=5e-3, policy_freq=1, potential_steps=potential_steps)
    for step, batch in _batches(s, a, steps, seed):
        if lipschitz_schedule is not None and potential:
            loss.potential_lipschitz = float(lipschitz_schedule(step))
        update(batch, step)
        if on_step is not None:
            on_step(step + 1, actor)
    if loss.qvalue_network_params["module", "scale"].item() != 1.0:
        raise RuntimeError("the known critic moved: its learning rate must be 0")
    return _outcome(loss, actor, s, a, samples=200 if noise_dim else 1, potential=potential)


def optimistic_gradients(optimizer: torch.optim.Optimizer, previous: dict) -> None:
    """Replaces each gradient ``g_t`` of ``optimizer``'s parameters by ``2 g_t - g_{t-1}`` (``g_{t-1}`` kept in
    ``previous``; the first step is plain): optimistic gradient descent, which converges on the bilinear games that
    plain gradient steps circle (Daskalakis et al., *Training GANs with Optimism*, ICLR 2018, fed to Adam as there)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is None:
                continue
            now = param.grad.detach().clone()
            param.grad.mul_(2).sub_(previous.get(param, now))
            previous[param] = now


def train_stochastic(*, potential: bool = True, w: float = 3.0, steps: int = 3000, seed: int = 0, alpha: float = 0.01,
                     lr: float = LR, potential_lr: float | None = None, potential_activation: str = "gelu",
                     potential_steps: int = 1, on_step: OnStep | None = None,
                     lipschitz_schedule: Schedule | None = None, value_penalty: float = 0.0, optimistic: bool = False,
                     **switches) -> Outcome:
    """PPL^CQL's TanhNormal actor on the known problem, CQL's actor term at a fixed temperature ``alpha`` (the
    known critic is never trained, so CQL's own critic terms do not enter); the actor at ``lr``, the potential at
    ``potential_lr`` (default ``lr``), ``potential_steps`` f-steps per actor step on the same batch (as
    ``ReBRACUpdate`` and the recipes do); ``lipschitz_schedule`` and ``value_penalty`` as in
    :func:`train_deterministic`; ``optimistic``: both players' Adam fed :func:`optimistic_gradients`."""
    torch.manual_seed(seed)
    s, a = sample_data(DATA_SIZE, seed)
    actor = make_tanh_normal_actor(1, 1, hidden_dim=HIDDEN, num_hidden=DEPTH)
    loss = _ValuePenalisedPPLCQL(actor, known_qvalue(), _potential(potential_activation), w=w, fixed_alpha=True,
                                 alpha_init=alpha, **switches)
    loss.value_penalty = value_penalty
    actor_opt = torch.optim.Adam(loss.actor_network_params.values(True, True), lr=lr)
    f_opt = torch.optim.Adam(loss.potential_network_params.values(True, True),
                             lr=lr if potential_lr is None else potential_lr)
    previous = {}   # each parameter's last gradient, for the optimistic step
    for step, batch in _batches(s, a, steps, seed):
        if lipschitz_schedule is not None and potential:
            loss.potential_lipschitz = float(lipschitz_schedule(step))
        loss.set_training_step(step)   # w_anneal_steps's w, as ReBRACUpdate sets it for the deterministic loop
        # without a potential the base's own actor term: CQL's, as CQLLoss computes it
        loss_actor, _ = loss.actor_loss(batch) if potential else loss.base.actor_loss(batch)
        actor_opt.zero_grad()
        loss_actor.backward()
        if optimistic:
            optimistic_gradients(actor_opt, previous)
        actor_opt.step()
        for _ in range(potential_steps if potential else 0):
            loss_f, _ = loss.potential_loss(batch)
            f_opt.zero_grad()
            loss_f.backward()
            if optimistic:
                optimistic_gradients(f_opt, previous)
            f_opt.step()
        if on_step is not None:
            on_step(step + 1, actor)
    return _outcome(loss, actor, s, a, samples=200, potential=potential)
