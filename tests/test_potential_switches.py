"""The potential's switches (PartialOT: bounded head, gradient penalty, the f term's weight, annealed w): each one's
value against a hand computation, its bound holding, its gradient reaching only the network it should, on PPL^R
and on a composed TorchRL loss, and a one-line error for each bad value. The update-level parity of every switch
(eager update == the plain TorchRL loop, bit for bit) is in tests/test_update.py."""
from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import MLP, ValueOperator
from torchrl.objectives import TD3BCLoss

from ppl_torchrl import PartialOTLoss
from ppl_torchrl.modules import make_actor, make_potential, make_qvalue_ensemble
from ppl_torchrl.objectives import PartialOT

OBS, ACT, B = 3, 2, 16


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    term = torch.zeros(B, 1, dtype=torch.bool)
    return TensorDict({"observation": torch.randn(B, OBS, generator=g), "action": torch.rand(B, ACT, generator=g) * 2 - 1,
                       ("next", "observation"): torch.randn(B, OBS, generator=g),
                       ("next", "action"): torch.rand(B, ACT, generator=g) * 2 - 1,
                       ("next", "reward"): torch.randn(B, 1, generator=g), ("next", "done"): term,
                       ("next", "terminated"): term}, [B])


class LinearF(nn.Module):
    """A hand-checkable potential head: ``g(s, a) = c . a + d`` with ``f = -|g|`` on top, like the library's."""

    def __init__(self, slope, offset):
        super().__init__()
        self.slope = nn.Parameter(torch.as_tensor(slope, dtype=torch.float32))
        self.offset = nn.Parameter(torch.as_tensor(offset, dtype=torch.float32))

    def forward(self, observation, action):
        return -((action * self.slope).sum(-1, keepdim=True) + self.offset).abs()


def _ppl(potential=None, seed=0, **switches):
    torch.manual_seed(seed)
    potential = potential or make_potential(OBS, ACT, hidden_dim=8)
    loss = PartialOTLoss(make_actor(OBS, ACT, hidden_dim=8), make_qvalue_ensemble(OBS, ACT, hidden_dim=8), potential,
                         w=3.0, **switches)
    loss.make_value_estimator(gamma=0.9)
    return loss


def _linear_f(slope=(3.0, -4.0), offset=20.0):
    return TensorDictModule(LinearF(slope, offset), in_keys=["observation", "action"], out_keys=["potential"])


def test_bounded_head_is_c_tanh_of_the_raw_potential_and_stays_in_its_bounds():
    batch = _batch()
    raw, bounded = _ppl(), _ppl(potential_bound=0.5)
    bounded.potential_network_params.update(raw.potential_network_params.detach().apply(lambda t: t * 200.0))
    raw.potential_network_params.update(raw.potential_network_params.detach().apply(lambda t: t * 200.0))
    a = batch["action"]
    f_raw = raw.potential(batch, a, raw.potential_network_params)
    f = bounded.potential(batch, a, bounded.potential_network_params)
    torch.testing.assert_close(f, 0.5 * torch.tanh(f_raw / 0.5))
    assert (f <= 0).all() and (f >= -0.5).all() and (f_raw < -0.5).any()  # the raw head goes past the bound


def test_gradient_penalty_is_the_slope_along_the_policy_to_data_direction():
    """With f = -|3 a1 - 4 a2 + 20| (|grad_a f| = 5 everywhere on this batch), the slope along any unit direction u
    is -(3, -4) . u; the penalty is relu(|slope| - K)^2 per sample, times its weight, added to the f-step."""
    batch = _batch()
    loss = _ppl(potential=_linear_f(), potential_gp=2.0, potential_lipschitz=1.0)
    policy = torch.rand(B, ACT) * 2 - 1
    data = batch["action"]
    u = (data - policy) / (data - policy).norm(dim=-1, keepdim=True)
    slope = -(u * torch.tensor([3.0, -4.0])).sum(-1)
    expected = (slope.abs() - 1.0).clamp_min(0).pow(2)
    got = loss.gradient_penalty(batch, loss.potential_network_params, policy, data)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
    value, metadata = loss.potential_objective_on(batch, loss.potential_network_params, policy)
    f = loss.potential(batch, policy, loss.potential_network_params) - 3.0 * loss.potential(
        batch, data, loss.potential_network_params)
    torch.testing.assert_close(value, (f + 2.0 * expected).mean(), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(metadata["potential_gp"], expected.mean(), rtol=1e-3, atol=1e-3)
    assert metadata["potential_gp"] > 0


def test_gradient_penalty_in_all_directions_is_the_whole_gradient_norm_s_excess():
    """``potential_gp_directions="all"``: with f = -|3 a1 - 4 a2 + 20| the whole action gradient has norm 5 on every
    sample, so the penalty is relu(5 - K)^2 whatever the segment's direction, never below the segment's own; on a
    potential that is flat along every segment but steep across them, only this penalty sees the slope."""
    batch = _batch()
    data = batch["action"]
    policy = torch.rand(B, ACT, generator=torch.Generator().manual_seed(3)) * 2 - 1
    full = _ppl(potential=_linear_f(), potential_gp=2.0, potential_lipschitz=1.0, potential_gp_directions="all")
    segment = _ppl(potential=_linear_f(), potential_gp=2.0, potential_lipschitz=1.0)
    got = full.gradient_penalty(batch, full.potential_network_params, policy, data)
    torch.testing.assert_close(got, torch.full((B,), 16.0), rtol=1e-3, atol=1e-3)
    assert (got >= segment.gradient_penalty(batch, segment.potential_network_params, policy, data) - 1e-3).all()

    gap = data - policy  # f's slope vector orthogonal to every sample's segment: (gap_2, -gap_1) / |gap|, times 3
    along = torch.stack([gap[:, 1], -gap[:, 0]], -1) * 3 / gap.norm(dim=-1, keepdim=True)

    class Across(nn.Module):
        def forward(self, observation, action):
            return -((action * along).sum(-1, keepdim=True) + 20.0).abs()

    across = TensorDictModule(Across(), in_keys=["observation", "action"], out_keys=["potential"])
    for directions, expected in (("segment", 0.0), ("all", 4.0)):  # slope 3 across: relu(3 - 1)^2 = 4
        loss = _ppl(potential=across, potential_gp=2.0, potential_lipschitz=1.0, potential_gp_directions=directions)
        torch.testing.assert_close(loss.gradient_penalty(batch, loss.potential_network_params, policy, data),
                                   torch.full((B,), expected), rtol=1e-3, atol=1e-3)


def test_a_penalised_slope_shrinks_under_the_f_step():
    loss = _ppl(potential=_linear_f(), potential_gp=5.0, potential_lipschitz=1.0)
    opt = torch.optim.Adam(loss.potential_network_params.values(True, True), lr=0.05)
    batch = _batch()
    before = loss.potential_network_params["module", "slope"].detach().norm().item()
    for _ in range(50):
        value, _ = loss.potential_loss(batch)
        opt.zero_grad()
        value.backward()
        opt.step()
    assert loss.potential_network_params["module", "slope"].detach().norm().item() < before - 1.0


@pytest.mark.parametrize("scale", ["none", "q", "self"])
def test_the_f_term_in_the_actor_has_the_weight_its_scale_says(scale):
    loss = _ppl(potential_actor_scale=scale, potential_actor_coef=0.7)
    batch = _batch()
    terms, action, metadata = loss.actor_terms(batch, loss.actor_network_params,
                                               loss.qvalue_network_params.detach(),
                                               loss.potential_network_params.detach())
    f = loss.potential(batch, action, loss.potential_network_params).detach()
    weight = {"none": 0.7, "q": 0.7 * metadata["lmbda"], "self": 0.7 / f.abs().mean()}[scale]
    torch.testing.assert_close(terms["f"].detach(), -weight * f)


@pytest.mark.parametrize("switches", [dict(potential_gp=5.0), dict(potential_gp=5.0, potential_gp_directions="all"),
                                      dict(potential_bound=0.3),
                                      dict(potential_actor_scale="self", potential_actor_coef=2.0),
                                      dict(saturation_penalty=1.0)])
def test_each_switch_keeps_every_term_on_its_own_network_in_a_composed_torchrl_loss(switches):
    """PartialOT(TD3BCLoss) with a switch on: loss_potential reaches only f, loss_actor only the actor, loss_qvalue
    only the critic."""
    torch.manual_seed(0)
    critic = ValueOperator(MLP(in_features=OBS + ACT, out_features=1, num_cells=[8]), in_keys=["observation", "action"])
    loss = PartialOT(TD3BCLoss(make_actor(OBS, ACT, hidden_dim=8), critic, bounds=(-1.0, 1.0)),
                     make_potential(OBS, ACT, hidden_dim=8), w=3.0, **switches)
    loss.make_value_estimator(gamma=0.9)
    out = loss(_batch())
    groups = {name: list(getattr(loss, name).values(True, True))
              for name in ("actor_network_params", "qvalue_network_params", "potential_network_params")}
    owners = {"loss_qvalue": "qvalue_network_params", "loss_actor": "actor_network_params",
              "loss_potential": "potential_network_params"}
    for term, owner in owners.items():
        for name, params in groups.items():
            grads = torch.autograd.grad(out[term], params, retain_graph=True, allow_unused=True)
            reached = any(g is not None and g.abs().sum() > 0 for g in grads)
            assert reached == (name == owner), (term, name)


def test_saturation_penalty_is_the_pre_tanh_excess_beyond_the_flat_edge():
    """``sum_i relu(|atanh(u_i)| - atanh(0.99))^2``, by hand on actions inside and beyond |u| = 0.99, with the base's
    bounds rescaling u; its gradient on the pre-tanh value is the hinge's own, where tanh's slope has vanished."""
    loss = _ppl(saturation_penalty=2.0)
    edge = math.atanh(0.99)
    pre = torch.tensor([[0.5, -1.0], [3.0, -0.2], [-4.0, 5.0]], requires_grad=True)
    value = loss.saturation(torch.tanh(pre))
    expected = torch.tensor([0.0, (3.0 - edge) ** 2, (4.0 - edge) ** 2 + (5.0 - edge) ** 2])
    torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-5)
    value.sum().backward()
    hinge = torch.tensor([[0.0, 0.0], [2 * (3.0 - edge), 0.0], [-2 * (4.0 - edge), 2 * (5.0 - edge)]])
    torch.testing.assert_close(pre.grad, hinge, rtol=1e-3, atol=1e-4)
    assert torch.tanh(torch.tensor(5.0)).item() > 0.9999  # tanh's own slope there: below 2e-4
    loss.base.min_action.fill_(-2.0)
    loss.base.max_action.fill_(2.0)  # bounds [-2, 2]: the same pre-tanh values at twice the action
    torch.testing.assert_close(loss.saturation(2 * torch.tanh(pre.detach())), expected, rtol=1e-4, atol=1e-5)
    batch = _batch()
    terms, action, _ = loss.actor_terms(batch, loss.actor_network_params, loss.qvalue_network_params.detach(),
                                        loss.potential_network_params.detach())
    torch.testing.assert_close(terms["saturation"], 2.0 * loss.saturation(action))
    assert "saturation" not in _ppl().actor_terms(batch, loss.actor_network_params, loss.qvalue_network_params.detach(),
                                                  loss.potential_network_params.detach())[0]


def test_w_anneals_linearly_from_one_and_is_recomputed_from_the_step():
    loss = _ppl(w_anneal_steps=100)
    assert loss.w_now.item() == 1.0
    loss.set_training_step(50)
    assert loss.w_now.item() == pytest.approx(2.0)  # 1 + (3 - 1) * 0.5
    loss.set_training_step(1000)
    assert loss.w_now.item() == 3.0
    assert "w_now" not in loss.state_dict()  # not saved: a resumed run recomputes it from its step
    batch = _batch()
    policy = torch.rand(B, ACT) * 2 - 1
    loss.set_training_step(25)
    value, _ = loss.potential_objective_on(batch, loss.potential_network_params, policy)
    f_pol = loss.potential(batch, policy, loss.potential_network_params)
    f_data = loss.potential(batch, batch["action"], loss.potential_network_params)
    torch.testing.assert_close(value, (f_pol - 1.5 * f_data).mean())
    constant = _ppl()
    constant.set_training_step(25)  # no annealing: a no-op
    assert constant.w_now.item() == 3.0
    with pytest.raises(ValueError, match="training steps done, >= 0"):
        constant.set_training_step(-10)  # would anneal w below 1


@pytest.mark.parametrize("bad, match", [
    (dict(potential_bound=0.0), "potential_bound must be a finite number > 0"),
    (dict(potential_bound=float("inf")), "potential_bound must be a finite number > 0"),
    (dict(potential_bound="0.5"), "potential_bound must be a finite number > 0"),
    (dict(potential_gp=float("inf")), "potential_gp must be a finite number >= 0"),
    (dict(potential_actor_coef=float("inf")), "potential_actor_coef"),
    (dict(saturation_penalty=float("nan")), "saturation_penalty"),
    (dict(w_anneal_steps=True), "w_anneal_steps"),
    (dict(potential_gp=-1.0), "potential_gp"),
    (dict(potential_lipschitz=0.0), "potential_lipschitz"),
    (dict(potential_gp_directions="every"), "potential_gp_directions must be one of"),
    (dict(potential_actor_scale="loud"), "potential_actor_scale must be one of"),
    (dict(potential_actor_coef=-0.5), "potential_actor_coef"),
    (dict(w_anneal_steps=-3), "w_anneal_steps"),
    (dict(saturation_penalty=-0.1), "saturation_penalty"),
])
def test_bad_switch_values_fail_with_one_line_that_says_what_to_do(bad, match):
    with pytest.raises(ValueError, match=match) as err:
        _ppl(**bad)
    assert "\n" not in str(err.value)


def test_q_scale_needs_a_normalised_q_term_in_the_base_actor_loss():
    from torchrl.objectives import IQLLoss
    from torchrl.modules import ProbabilisticActor, TanhNormal
    from tensordict.nn import NormalParamExtractor

    torch.manual_seed(0)
    net = nn.Sequential(MLP(in_features=OBS, out_features=2 * ACT, num_cells=[8]), NormalParamExtractor())
    actor = ProbabilisticActor(TensorDictModule(net, ["observation"], ["loc", "scale"]), in_keys=["loc", "scale"],
                               distribution_class=TanhNormal, return_log_prob=False)
    critic = ValueOperator(MLP(in_features=OBS + ACT, out_features=1, num_cells=[8]), in_keys=["observation", "action"])
    value = ValueOperator(MLP(in_features=OBS, out_features=1, num_cells=[8]), in_keys=["observation"])
    with pytest.raises(ValueError, match="potential_actor_scale='q'.*IQLLoss has none"):
        PartialOT(IQLLoss(actor, critic, value), make_potential(OBS, ACT, hidden_dim=8), potential_actor_scale="q")


def test_q_scale_on_td3_bc_weights_f_by_its_actor_terms_own_alpha_over_mean_abs_q():
    """On TD3BCLoss (actor term ``-alpha Q / mean|Q| + BC``) ``q`` weighs ``-f(s, pi(s))`` by ``alpha / mean|Q|``, by
    hand from the critic, through both ``forward`` and ``actor_loss``."""
    torch.manual_seed(0)
    critic = ValueOperator(MLP(in_features=OBS + ACT, out_features=1, num_cells=[8]), in_keys=["observation", "action"])
    batch = _batch()
    loss = PartialOT(TD3BCLoss(make_actor(OBS, ACT, hidden_dim=8), critic, bounds=(-1.0, 1.0), alpha=2.5),
                     _linear_f(), w=3.0, potential_actor_scale="q", potential_actor_coef=0.5)
    loss.make_value_estimator(gamma=0.9)
    plain = PartialOT(loss.base, _linear_f(), w=3.0)  # the same base with the authors' unscaled f term
    with torch.no_grad():
        action = loss.policy_action(batch, loss.actor_network_params)
        with loss.qvalue_network_params[0].to_module(loss.qvalue_network):  # the first critic: TD3BCLoss's lambda
            q = loss.qvalue_network(batch.select("observation").set("action", action))["state_action_value"]
        f = loss.potential(batch, action, loss.potential_network_params)
        base_actor, _ = loss.base.actor_loss(batch)
    lmbd = 2.5 / q.abs().mean()
    expected = base_actor - 0.5 * lmbd * f.mean()
    torch.testing.assert_close(loss.actor_loss(batch)[0].detach(), expected)
    torch.testing.assert_close(loss(batch)["loss_actor"].detach(), expected)
    torch.testing.assert_close(plain(batch)["loss_actor"].detach(), base_actor - f.mean())


def test_a_parameter_free_critic_composes():
    """A fixed, known critic without parameters (TorchRL keeps its empty parameters as a plain TensorDict, not a
    child module) still composes: the actor and f-steps read its parameters through the composed loss."""
    class FixedQ(nn.Module):
        def forward(self, observation, action):
            return -(action - 0.9).pow(2).sum(-1, keepdim=True)

    qvalue = TensorDictModule(FixedQ(), in_keys=["observation", "action"], out_keys=["state_action_value"])
    loss = PartialOTLoss(make_actor(OBS, ACT, hidden_dim=8), qvalue, make_potential(OBS, ACT, hidden_dim=8), w=3.0,
                         delay_actor=False, delay_qvalue=False)
    assert loss.qvalue_network_params.is_empty()
    batch = _batch()
    value, _ = loss.actor_loss(batch)
    value.backward()
    assert all(p.grad is not None for p in loss.actor_network_params.values(True, True))
    loss.potential_loss(batch)[0].backward()


def test_the_potential_alone_takes_its_own_activation_from_the_config(make_cfg):
    """model.potential_activation=gelu gives f GELU units while the actor and the critics keep model.activation; null
    (the default) gives f model.activation; any other value is a one-line config error naming the key."""
    from ppl_torchrl.errors import ConfigError
    from ppl_torchrl.training.algorithms import algorithm_from_config
    from ppl_torchrl.training.config import validate_config

    def kinds(overrides):
        loss = algorithm_from_config(make_cfg(["loss=ppl_stable", "model.hidden_dim=8", *overrides]), OBS, ACT,
                                     device="cpu").loss
        return [{type(m).__name__ for m in net.modules()} & {"ReLU", "GELU"}
                for net in (loss.actor_network, loss.qvalue_network, loss.potential_network)]

    assert kinds([]) == [{"ReLU"}] * 3
    # a config saved before the key existed (a checkpoint's) still builds, with f on model.activation
    from ppl_torchrl.training.config import NetworkConfig
    old = NetworkConfig.from_config(dict(hidden_dim=8, num_hidden=1, num_qvalue_nets=2, activation="gelu", init="corl"))
    assert old.potential_activation is None
    assert {type(m).__name__ for m in old.potential(OBS, ACT).modules()} >= {"GELU"}
    assert kinds(["model.potential_activation=gelu"]) == [{"ReLU"}, {"ReLU"}, {"GELU"}]
    with pytest.raises(ConfigError, match="model.potential_activation must be one of relu, gelu or null") as err:
        validate_config(make_cfg(["model.potential_activation=tanh"]))
    assert "\n" not in str(err.value)
