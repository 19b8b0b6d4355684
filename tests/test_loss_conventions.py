"""TorchRL's loss conventions, on our losses: TorchRL's own loss tests (test/objectives/test_ddpg.py::TestTD3BC,
_objectives_common.py, test_loss_module.py), restated and run on ``PartialOTLoss`` and ``PartialOT(TD3BCLoss)``, with
TorchRL's ``TD3BCLoss`` as the control: whatever holds for it must hold for ours.

Gradient routing, targets and ``SoftUpdate``, ``set_keys``, keyword calls and ``select_out_keys``, reductions,
``state_dict`` (and checkpoints written before the base loss became a submodule), multi-step ``[B, T]`` batches and
masks, dtype casts, every setting a user sets on the loss reaching the terms it governs, vmap randomness,
``reset_parameters_recursive``, and the documented exception (ReBRAC estimates values by TD(0) only).
"""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torchrl._utils
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs.utils import ExplorationType, exploration_type
from torchrl.modules import MLP, ValueOperator
from torchrl.objectives import SoftUpdate, TD3BCLoss, ValueEstimators

from ppl_torchrl.modules import EnsembleLayerNorm, EnsembleLinear, make_actor, make_potential, make_qvalue_ensemble
from ppl_torchrl.objectives import PartialOT, PartialOTLoss, ReBRACLoss, declare_target_updater

OBS, ACT, HID, B = 3, 2, 8, 6
KINDS = ("td3_bc", "ppl_td3_bc", "ppl")  # TorchRL's TD3BCLoss (the control), PartialOT(TD3BCLoss), PartialOTLoss
OURS = KINDS[1:]
#: each term -> the one parameter group its gradient reaches
OWNERS = {"loss_actor": "actor_network_params", "loss_qvalue": "qvalue_network_params",
          "loss_potential": "potential_network_params"}


def make(kind: str, seed: int = 0, actor=None, **kwargs):
    """``kind`` on tiny networks; ``kwargs`` go to the base loss (ReBRACLoss or TD3BCLoss)."""
    torch.manual_seed(seed)
    actor = make_actor(OBS, ACT, hidden_dim=HID, num_hidden=1) if actor is None else actor
    potential = make_potential(OBS, ACT, hidden_dim=HID, num_hidden=1)
    if kind == "ppl":
        loss = PartialOTLoss(actor, make_qvalue_ensemble(OBS, ACT, hidden_dim=HID, num_hidden=1), potential, w=4.0,
                             **kwargs)
    else:
        critic = ValueOperator(MLP(in_features=OBS + ACT, out_features=1, num_cells=[HID]),
                               in_keys=["observation", "action"])
        loss = TD3BCLoss(actor, critic, bounds=(-1.0, 1.0), loss_function="l2", **kwargs)
        if kind == "ppl_td3_bc":
            loss = PartialOT(loss, potential, w=4.0)
    loss.make_value_estimator(gamma=0.9)
    return loss


def batch(shape=(B,), seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    term = torch.zeros(*shape, 1, dtype=torch.bool)
    term.view(-1)[::4] = True
    return TensorDict({
        "observation": torch.randn(*shape, OBS, generator=g), "action": torch.rand(*shape, ACT, generator=g) * 2 - 1,
        ("next", "observation"): torch.randn(*shape, OBS, generator=g),
        ("next", "action"): torch.rand(*shape, ACT, generator=g) * 2 - 1,
        ("next", "reward"): torch.randn(*shape, 1, generator=g), ("next", "done"): term.clone(),
        ("next", "terminated"): term,
    }, list(shape))


def run(loss, td: TensorDict, seed: int = 1) -> TensorDict:
    torch.manual_seed(seed)  # the target-smoothing noise
    return loss(td.clone())


def losses_of(out: TensorDict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in out.items() if k.startswith("loss_")}


def groups(loss) -> dict[str, list[torch.Tensor]]:
    """Every parameter group's leaves (targets included)."""
    names = [name for name, _ in loss.named_children() if name.endswith("_params")]
    return {name: list(getattr(loss, name).values(True, True)) for name in names}


class Recorded(nn.Module):
    """An actor network that records the exploration type of each of its calls."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.calls: list = []

    def forward(self, observation):
        self.calls.append(exploration_type())
        return self.net(observation)


def recorded_actor() -> TensorDictModule:
    actor = make_actor(OBS, ACT, hidden_dim=HID, num_hidden=1)
    return TensorDictModule(Recorded(actor.module), in_keys=["observation"], out_keys=["action"])


# ---------------------------------------------------------------- gradients and targets
@pytest.mark.parametrize("kind", KINDS)
def test_each_term_reaches_only_its_network_and_the_sum_reaches_every_one(kind):
    loss = make(kind)
    out = run(loss, batch())
    assert set(losses_of(out)) == {k for k in OWNERS if k != "loss_potential" or kind != "td3_bc"}
    named = list(loss.named_parameters())
    assert len({p for _, p in named}) == len(named) and named  # each tensor once
    trained = {name: leaves for name, leaves in groups(loss).items() if not name.startswith("target_")}
    for term in losses_of(out):
        loss.zero_grad(set_to_none=True)
        out[term].backward(retain_graph=True)
        for name, leaves in trained.items():
            reached = any(p.grad is not None and p.grad.abs().sum() > 0 for p in leaves)
            assert reached == (name == OWNERS[term]), (kind, term, name)
    loss.zero_grad(set_to_none=True)
    sum(losses_of(run(loss, batch())).values()).backward()
    for name, p in loss.named_parameters():
        assert p.grad is not None and p.grad.norm() > 0, (kind, name)
    for name, leaves in groups(loss).items():
        if name.startswith("target_"):
            assert all(not t.requires_grad and t.grad is None for t in leaves), (kind, name)


@pytest.mark.parametrize("kind", KINDS)
def test_soft_update_moves_the_base_loss_targets_and_tells_it_they_move(kind, monkeypatch):
    monkeypatch.setattr(torchrl._utils, "RL_WARNINGS", True)
    loss = make(kind)
    with pytest.warns(UserWarning, match="No target network updater"):  # TorchRL's warning until an updater exists
        run(loss, batch())
    updater = SoftUpdate(loss, tau=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(loss, batch())
    assert not [w for w in caught if "No target network updater" in str(w.message)]
    base = getattr(loss, "base", loss)
    for net in ("actor", "qvalue"):
        online = getattr(loss, f"{net}_network_params")
        target = getattr(base, f"target_{net}_network_params")
        assert target is getattr(loss, f"target_{net}_network_params")
        with torch.no_grad():
            for t in target.values(True, True):
                t.add_(1.0)
        before = target.clone()
        updater.step()
        for key, t in target.items(True, True):
            torch.testing.assert_close(t, 0.5 * before[key] + 0.5 * online[key].detach())
    # a target moves with SoftUpdate only, not with the online parameters
    before = base.target_actor_network_params.clone()
    with torch.no_grad():
        for p in loss.actor_network_params.values(True, True):
            p.add_(1.0)
    assert all(torch.equal(t, before[k]) for k, t in base.target_actor_network_params.items(True, True))


def shift_targets(loss, by: float = 2.0) -> dict:
    """Move every target away from its online weights (as training does); returns the targets, cloned."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        for name, target in loss.named_buffers():
            if name.startswith("target_"):
                target.add_(by)
        return {name: b.clone() for name, b in loss.named_buffers() if name.startswith("target_")}


@pytest.mark.parametrize("kind", KINDS)
def test_declaring_an_updater_silences_the_warning_and_keeps_the_targets(kind, monkeypatch):
    """``declare_target_updater``: TorchRL's public route (an updater's constructor) without its side effect of
    copying the online weights into the targets; composing a base whose targets have moved keeps them too."""
    monkeypatch.setattr(torchrl._utils, "RL_WARNINGS", True)
    if kind == "ppl_td3_bc":
        base = make("td3_bc")
        held = shift_targets(base)
        loss = PartialOT(base, make_potential(OBS, ACT, hidden_dim=HID, num_hidden=1), w=4.0)
        assert all(torch.equal(b, held[name]) for name, b in base.named_buffers() if name in held)
    else:
        loss = make(kind)
    held = shift_targets(loss)
    declare_target_updater(loss)
    assert held and all(torch.equal(b, held[name]) for name, b in loss.named_buffers() if name in held)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(loss, batch())
        getattr(loss, "base", loss).target_qvalue_network_params
    assert not [w for w in caught if "No target network updater" in str(w.message)]


def test_both_constructors_refuse_a_target_actor_request_without_a_target_actor_in_the_same_words():
    actor, critic = make_actor(OBS, ACT, hidden_dim=HID), make_qvalue_ensemble(OBS, ACT, hidden_dim=HID)
    potential = make_potential(OBS, ACT, hidden_dim=HID)
    errors = []
    for build in (lambda: PartialOTLoss(actor, critic, potential, delay_actor=False, potential_uses_target_actor=True),
                  lambda: PartialOT(ReBRACLoss(actor, critic, delay_actor=False), potential,
                                    potential_uses_target_actor=True)):
        with pytest.raises(ValueError, match="keeps no target actor") as err:
            build()
        errors.append(str(err.value))
    assert errors[0] == errors[1] and "\n" not in errors[0]
    # unset, the f-step takes the target actor where there is one, else the online one
    assert not PartialOTLoss(actor, critic, potential, delay_actor=False).potential_uses_target_actor
    assert PartialOTLoss(actor, critic, potential).potential_uses_target_actor


def test_forward_computes_the_actor_term_once():
    """PartialOTLoss's forward calls the actor three times: the critic's target action, the actor term (with the
    potential's, one objective) and the f-step; its loss_actor is actor_loss's."""
    loss = make("ppl", actor=recorded_actor())
    calls = loss.actor_network.module.calls
    run(loss, batch())  # the first checked batch also runs the actor once, to learn its action width
    calls.clear()
    out = run(loss, batch())
    assert len(calls) == 3
    torch.testing.assert_close(out["loss_actor"], loss.actor_loss(batch())[0])


# ---------------------------------------------------------------- keys, calls, reductions
@pytest.mark.parametrize("kind", KINDS)
def test_set_keys_reaches_the_base_loss_and_its_value_estimator(kind):
    loss = make(kind)
    defaults = {"reward": "reward", "done": "done", "terminated": "terminated",
                "state_action_value": "state_action_value", "priority": "td_error", "action": "action"}
    if kind != "td3_bc":
        defaults["potential"] = "potential"
    for key, value in defaults.items():
        assert getattr(loss.tensor_keys, key) == value
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        copy.deepcopy(loss).set_keys(unknown_key="x")
    renamed = copy.deepcopy(loss)
    renamed.set_keys(reward="rew", done="stop", terminated="end", state_action_value="q")
    base = getattr(renamed, "base", renamed)
    assert (base.tensor_keys.reward, renamed.tensor_keys.terminated) == ("rew", "end")
    assert renamed.value_estimator is base.value_estimator
    estimator = renamed.value_estimator.tensor_keys
    assert (estimator.reward, estimator.done, estimator.terminated, estimator.value) == ("rew", "stop", "end", "q")
    renamed.set_keys(state_action_value=None)  # what the critic writes: back to its name for the call below
    td = batch()
    moved = td.clone()
    for old, new in (("reward", "rew"), ("done", "stop"), ("terminated", "end")):
        moved.rename_key_(("next", old), ("next", new))
    expected, got = run(loss, td), run(renamed, moved)
    for key, value in losses_of(expected).items():
        torch.testing.assert_close(got[key], value, msg=key)
    renamed.set_keys(reward=None)
    assert base.tensor_keys.reward == "reward" == renamed.tensor_keys.reward


@pytest.mark.parametrize("kind", KINDS)
def test_a_keyword_call_equals_the_tensordict_call_and_select_out_keys_picks_the_outputs(kind):
    loss = make(kind)
    td = batch()
    kwargs = {"_".join(k) if isinstance(k, tuple) else k: td.get(k) for k in loss.in_keys}
    full = run(loss, td)
    torch.manual_seed(1)
    values = loss(**kwargs)
    assert len(values) == len(loss.out_keys)
    for key, value in zip(loss.out_keys, values):
        torch.testing.assert_close(value, full[key], msg=key)
    picked = ("loss_actor", "loss_qvalue") if kind == "td3_bc" else ("loss_actor", "loss_potential")
    loss.select_out_keys(*picked)
    assert loss.out_keys == list(picked)
    torch.manual_seed(1)
    values = loss(**kwargs)
    for key, value in zip(picked, values):
        torch.testing.assert_close(value, full[key], msg=key)
    assert set(run(loss, td).keys()) == set(picked)


@pytest.mark.parametrize("reduction", [None, "none", "mean", "sum"])
@pytest.mark.parametrize("kind", KINDS)
def test_reductions(kind, reduction):
    td = batch()
    out = losses_of(run(make(kind, reduction=reduction), td))
    for key, value in out.items():
        assert value.shape == (td.shape if reduction == "none" else torch.Size([])), (key, value.shape)


@pytest.mark.parametrize("kind", KINDS)
def test_the_reduction_set_on_the_loss_reaches_every_term(kind):
    loss = make(kind)
    mean = losses_of(run(loss, batch()))
    loss.reduction = "sum"
    assert getattr(loss, "base", loss).reduction == "sum"
    summed = losses_of(run(loss, batch()))
    for key, value in mean.items():
        torch.testing.assert_close(summed[key], B * value, msg=key)


# ---------------------------------------------------------------- state
@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip(kind):
    loss, other = make(kind, seed=0), make(kind, seed=1)
    state = loss.state_dict()
    if kind != "td3_bc":  # the base's names, as the base alone writes them, plus the potential's
        assert set(state) == set(loss.base.state_dict()) | {
            k for k in state if k.startswith("potential_network_params.")}
    assert set(other.state_dict()) == set(state)
    other.load_state_dict(state)
    expected, got = run(loss, batch()), run(other, batch())
    for key, value in losses_of(expected).items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)
    twin = copy.deepcopy(loss)
    for key, value in losses_of(run(twin, batch())).items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("name", ["ppl", "td3_bc", "cql"])
def test_a_checkpoint_written_before_the_base_loss_became_a_submodule_loads_with_its_values(name):
    """tests/data/losses_before_issue36.pt, written by the composed loss that adopted its base's tensors as its own
    (tests/loss_checkpoints.py): it loads into today's loss, directly and as a trainer checkpoint's ``loss`` entry,
    and every forward value comes back bit for bit."""
    from loss_checkpoints import PATH, build, values

    from ppl_torchrl.training.algorithms import Algorithm
    from ppl_torchrl.training.checkpoints import load_algorithm_state

    saved = torch.load(PATH, weights_only=True)[name]
    for through_trainer in (False, True):
        loss = build(name, seed=3)
        fresh = values(loss)
        if through_trainer:
            algorithm = Algorithm(name, loss, {}, loss.actor_network, lambda batch, step: None)
            load_algorithm_state(algorithm, {"algorithm": {"loss": saved["state_dict"], "optimizers": {},
                                                           "target_updater": None}}, "does not fit")
        else:
            loss.load_state_dict(saved["state_dict"])
        got = values(loss)
        assert set(got) == set(saved["values"])
        assert any(not torch.equal(fresh[k], got[k]) for k in got)
        for key, value in saved["values"].items():  # to rounding: this machine's GEMM backend may be another
            torch.testing.assert_close(got[key], value, msg=key)
        assert set(loss.state_dict()) == set(saved["state_dict"])


# ---------------------------------------------------------------- batches and dtypes
@pytest.mark.parametrize("kind", KINDS)
def test_a_multi_step_batch_gives_the_losses_of_its_flattened_steps(kind):
    loss = make(kind)
    td = batch(shape=(2, 3))
    expected = losses_of(run(loss, td.reshape(-1)))
    for key, value in losses_of(run(loss, td)).items():
        torch.testing.assert_close(value, expected[key], msg=key)


@pytest.mark.parametrize("kind", KINDS)
def test_masked_steps_count_nowhere_and_loss_mask_key_none_counts_them(kind):
    """A [B, T] batch padded by TorchRL's SliceSampler marks its padding in ("collector", "mask"): a masked step's
    reward and data action reach no term ("auto"), and do with ``loss.loss_mask_key = None`` set on the loss."""
    loss = make(kind)
    td = batch(shape=(2, 3))
    td.set(("collector", "mask"), torch.ones(2, 3, 1, dtype=torch.bool))
    td["collector", "mask"][1, 2] = False
    padded = td.clone()
    padded["next", "reward"][1, 2] = 1e3
    padded["action"][1, 2] = -padded["action"][1, 2]
    terms = ["loss_qvalue"] + ([] if kind == "td3_bc" else ["loss_potential"])
    reference = losses_of(run(loss, td))
    got = losses_of(run(loss, padded))
    for key in terms:
        torch.testing.assert_close(got[key], reference[key], msg=key)
    loss.loss_mask_key = None
    assert getattr(loss, "base", loss).loss_mask_key is None
    unmasked = losses_of(run(loss, padded))
    for key in terms:
        assert not torch.allclose(unmasked[key], reference[key]), key


@pytest.mark.parametrize("kind", KINDS)
def test_a_double_cast_reaches_every_tensor_and_keeps_them(kind):
    loss = make(kind)
    params = set(loss.parameters())
    loss = loss.double()
    assert set(loss.parameters()) == params
    base = getattr(loss, "base", loss)
    tensors = [*loss.parameters(), *loss.buffers(), *base.parameters(), *base.buffers()]
    assert {t.dtype for t in tensors if t.is_floating_point()} == {torch.float64}
    for name, leaves in groups(loss).items():
        assert all(t.dtype == torch.float64 for t in leaves), name
    for name in getattr(loss, "base_parameter_groups", ()):  # still one module for the base and the composed loss
        assert dict(base.named_children())[name] is dict(loss.named_children())[name]
    td = batch().apply(lambda t: t.double() if t.is_floating_point() else t)
    out = run(loss, td)
    assert {v.dtype for v in losses_of(out).values()} == {torch.float64}
    SoftUpdate(loss, tau=0.5).step()


# ---------------------------------------------------------------- settings reach the terms they govern
SETTINGS = {
    "ppl": {"actor_bc_coef": 3.0, "critic_bc_coef": 0.5, "policy_noise": 0.05, "noise_clip": 0.1,
            "normalize_q": False, "critic_next_action": "dataset"},
    "ppl_td3_bc": {"alpha": 7.0, "policy_noise": 0.05, "noise_clip": 0.1},
    "td3_bc": {"alpha": 7.0, "policy_noise": 0.05, "noise_clip": 0.1},
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_setting_assigned_on_the_loss_equals_the_same_setting_given_to_the_constructor(kind):
    td = batch()
    for name, value in SETTINGS[kind].items():
        loss = make(kind)
        before = losses_of(run(loss, td))
        setattr(loss, name, value)
        if kind in OURS:  # no copy here that no term reads: the base's own setting changed
            assert name not in vars(loss) and getattr(loss.base, name) == value
        got, expected = losses_of(run(loss, td)), losses_of(run(make(kind, **{name: value}), td))
        assert any(not torch.equal(got[k], before[k]) for k in got), name
        for key, v in expected.items():
            torch.testing.assert_close(got[key], v, rtol=0, atol=0, msg=f"{name}: {key}")


@pytest.mark.parametrize("kind", KINDS)
def test_use_prioritized_weights_set_on_the_loss_reaches_the_weighted_terms(kind):
    loss = make(kind)
    td = batch()
    weighted = td.clone()
    weighted["priority_weight"] = torch.linspace(0.0, 2.0, B)
    plain, auto = losses_of(run(loss, td)), losses_of(run(loss, weighted))
    for key in ("loss_actor", "loss_qvalue") + (("loss_potential",) if kind in OURS else ()):
        assert not torch.allclose(auto[key], plain[key]), key
    if kind in OURS:  # the f-step's weighted mean, by hand from its per-sample terms
        per_sample = run(make(kind, reduction="none"), td)["loss_potential"]
        w = weighted["priority_weight"]
        torch.testing.assert_close(auto["loss_potential"], (per_sample * w).sum() / w.sum())
    loss.use_prioritized_weights = False
    assert getattr(loss, "base", loss).use_prioritized_weights is False
    off = losses_of(run(loss, weighted))
    for key, value in plain.items():
        torch.testing.assert_close(off[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_sampling_mode_set_on_the_loss_is_the_mode_every_term_runs_under(kind):
    loss = make(kind, actor=recorded_actor())
    calls = loss.actor_network.module.calls
    run(loss, batch())
    assert calls and set(calls) == {ExplorationType.DETERMINISTIC}
    calls.clear()
    loss.deterministic_sampling_mode = ExplorationType.MEAN
    assert getattr(loss, "base", loss).deterministic_sampling_mode is ExplorationType.MEAN
    run(loss, batch())
    assert calls and set(calls) == {ExplorationType.MEAN}


def test_a_base_setting_the_composed_loss_does_not_present_is_refused_with_where_to_set_it():
    loss = make("ppl_td3_bc")
    with pytest.raises(AttributeError, match=r"set loss\.base\.loss_function"):
        loss.loss_function = "smooth_l1"
    with pytest.raises(AttributeError, match=r"read loss\.base\.loss_function"):
        loss.loss_function
    assert loss.base.loss_function == "l2" and "loss_function" not in vars(loss)
    # the potential's own settings stay here; a base's capability is present exactly where the base has it
    loss.w = 2.0
    assert loss.w == 2.0 and "w" not in vars(loss.base)
    assert not hasattr(loss, "qvalues") and not hasattr(loss, "actor_bc_coef") and hasattr(make("ppl"), "qvalues")


# ---------------------------------------------------------------- vmap randomness and resets
def dropout_actor() -> TensorDictModule:
    net = nn.Sequential(nn.Linear(OBS, HID), nn.ReLU(), nn.Dropout(0.1), nn.Linear(HID, ACT), nn.Tanh())
    return TensorDictModule(net, in_keys=["observation"], out_keys=["action"])


@pytest.mark.parametrize("kind", KINDS)
def test_vmap_randomness_is_detected_and_settable(kind):
    assert make(kind).vmap_randomness == "error"
    loss = make(kind, actor=dropout_actor())
    assert loss.vmap_randomness == make("td3_bc", actor=dropout_actor()).vmap_randomness == "different"
    loss.set_vmap_randomness("same")
    assert loss.vmap_randomness == "same" == getattr(loss, "base", loss).vmap_randomness
    with pytest.raises(ValueError, match="Wrong vmap randomness"):
        loss.set_vmap_randomness("sometimes")
    assert all(torch.isfinite(v).all() for v in losses_of(run(loss, batch())).values())


@pytest.mark.parametrize("kind", KINDS)
def test_reset_parameters_recursive_redraws_every_network_and_every_target(kind):
    loss = make(kind)
    leaves = {(name, i): t for name, group in groups(loss).items() for i, t in enumerate(group)}
    assert {name for name, _ in leaves} >= {"actor_network_params", "target_actor_network_params",
                                             "qvalue_network_params", "target_qvalue_network_params"}
    with torch.no_grad():
        for t in leaves.values():
            t.add_(1000.0)
    old = {k: t.clone() for k, t in leaves.items()}
    loss.reset_parameters_recursive()
    for key, t in leaves.items():
        assert (t != old[key]).any(), key
    if kind == "ppl":  # the critic ensembles' layers as built: hidden U(+-1/sqrt(in)) with bias 0.1, LayerNorm 1, 0
        for params in (loss.qvalue_network_params, loss.target_qvalue_network_params):
            with params.to_module(loss.qvalue_network):
                layers = list(loss.qvalue_network.module.net)
                for layer in layers:
                    if isinstance(layer, EnsembleLinear):
                        bound = layer.weight.shape[-2] ** -0.5
                        assert (layer.bias == 0.1).all() and (layer.weight.abs() <= bound).all()
                    if isinstance(layer, EnsembleLayerNorm):
                        assert (layer.weight == 1).all() and (layer.bias == 0).all()
                assert any(isinstance(layer, EnsembleLinear) for layer in layers)


# ---------------------------------------------------------------- the documented exception
@pytest.mark.parametrize("kind", KINDS)
def test_value_estimators_and_rebrac_td0_only_as_a_clear_error(kind):
    loss = make(kind)
    for value_type in (ValueEstimators.TD1, ValueEstimators.TDLambda):
        if kind == "ppl":  # ReBRAC's critic target is TD(0) (documented): any other estimator is refused in one line
            with pytest.raises(NotImplementedError, match=r"Supported value types: \['TD0'\]") as err:
                loss.make_value_estimator(value_type, gamma=0.9)
            assert "\n" not in str(err.value)
        else:
            loss.make_value_estimator(value_type, gamma=0.9)
            assert loss.value_type == value_type
            assert torch.isfinite(run(loss, batch())["loss_qvalue"])


# ---------------------------------------------------------------- what TorchRL's IQL / CQL tests build
def _stochastic_loss(name: str, **kwargs):
    from torchrl.objectives import CQLLoss, IQLLoss

    from ppl_torchrl.modules import make_tanh_normal_actor

    torch.manual_seed(0)
    actor = make_tanh_normal_actor(OBS, ACT, hidden_dim=HID, num_hidden=1)
    critic = ValueOperator(MLP(in_features=OBS + ACT, out_features=1, num_cells=[HID]),
                           in_keys=["observation", "action"])
    if name == "iql":
        value = ValueOperator(MLP(in_features=OBS, out_features=1, num_cells=[HID]), in_keys=["observation"])
        base = IQLLoss(actor, critic, value, **kwargs)
    else:
        base = CQLLoss(actor, critic, **kwargs)
    loss = PartialOT(base, make_potential(OBS, ACT, hidden_dim=HID, num_hidden=1), w=4.0)
    loss.make_value_estimator(gamma=0.9)
    return loss


def test_cql_without_target_networks_composes():
    """TorchRL's CQL tests build CQLLoss(delay_actor=False, delay_qvalue=False); its target_entropy_buffer is not a
    target network."""
    loss = _stochastic_loss("cql", delay_actor=False, delay_qvalue=False)
    assert not [name for name, _ in loss.named_children() if name.startswith("target_")]
    out = run(loss, batch())
    assert out["loss_potential"].ndim == 0 and torch.isfinite(out["loss_actor"])


@pytest.mark.parametrize("name", ["iql", "cql"])
def test_reduction_none_on_iql_and_cql_keeps_per_sample_terms_and_treats_scalars_as_the_base_does(name):
    """With reduction="none" IQLLoss and CQLLoss return a [B] TensorDict; the potential's 0-d diagnostics are left
    out (scalar_output_mode="exclude") or stored as non-tensor data ("non_tensor"), as the base's own scalars."""
    excluded = run(_stochastic_loss(name, reduction="none", scalar_output_mode="exclude"), batch())
    assert excluded.batch_size == (B,)
    assert excluded["loss_potential"].shape == excluded["loss_actor"].shape == (B,)
    assert "potential_data" not in excluded.keys()
    kept = run(_stochastic_loss(name, reduction="none", scalar_output_mode="non_tensor"), batch())
    mean = run(_stochastic_loss(name), batch())
    torch.testing.assert_close(kept["loss_potential"].mean(), mean["loss_potential"])
    assert float(kept.get_non_tensor("potential_data")) == pytest.approx(float(mean["potential_data"]))


def test_networks_that_share_parameters_are_refused_in_one_line():
    actor = make_actor(OBS, ACT, hidden_dim=HID, num_hidden=1)
    trunk = next(m for m in actor.module.modules() if isinstance(m, nn.Linear))  # a critic on the actor's first layer
    critic = ValueOperator(nn.Sequential(trunk, nn.ReLU(), nn.Linear(HID, 1)), in_keys=["observation"])
    with pytest.raises(ValueError, match="ReBRACLoss: actor_network and qvalue_network share parameters"):
        ReBRACLoss(actor, critic)
    with pytest.raises(ValueError, match="ReBRACLoss: actor_network and qvalue_network share parameters"):
        PartialOTLoss(actor, critic, make_potential(OBS, ACT, hidden_dim=HID, num_hidden=1))
    with pytest.raises(ValueError, match="PartialOT: base_loss and potential_network share parameters"):
        PartialOT(make("td3_bc", actor=actor), TensorDictModule(nn.Sequential(trunk, nn.Linear(HID, 1)),
                                                                in_keys=["observation"], out_keys=["potential"]))



@pytest.mark.parametrize("kind", OURS)
def test_a_batch_the_networks_cannot_read_is_one_line_naming_what_to_fix(kind):
    """On ReBRAC and on a TorchRL base alike: an action of another width than the actor's (a width of 1 would broadcast
    silently into the BC and f terms), an observation the actor cannot read, a NaN or a missing entry the base reads,
    each one line, before any term runs (on the first batch: the actor's width is learnt once, from it)."""
    narrow = batch()
    narrow["action"] = narrow["action"][..., :1]
    wide = batch()
    wide["observation"] = torch.cat([wide["observation"], wide["observation"][..., :1]], -1)
    nan_reward = batch()
    nan_reward["next", "reward"][0] = float("nan")
    for bad, match in ((narrow, "entry 'action' has 1 action features but the actor produces 2"),
                       (wide, r"the actor cannot read the batch \('observation' \(6, 4\)\)"),
                       (nan_reward, r"\('next', 'reward'\) contain NaN"),
                       (batch().exclude(("next", "reward")), r"the batch lacks \('next', 'reward'\)")):
        with pytest.raises((ValueError, KeyError), match=match) as err:
            run(make(kind), bad)
        assert "\n" not in str(err.value)
    narrow_only = make(kind)  # the f-step alone reads the actor's width too
    with pytest.raises(ValueError, match="entry 'action' has 1 action features"):
        narrow_only.potential_loss(narrow)
