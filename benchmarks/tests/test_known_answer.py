"""The potential's known-answer checks (issue 34): a one-step offline problem whose partial-transport answer is known
(``benchmarks/known_answer.py``: two modes of data actions per state, 30 % good, 70 % bad, and a fixed critic whose
maximiser lies 0.35 above the good mode, outside the data).

Q alone takes the policy out of the data; partial transport at w = 3 must put it on the good mode, inside the data's
support and far from the bad mode. Measured on the authors' exact setting (f at lr 3e-6 = critic lr / 100 of the
AntMaze configs, last layer at U(+-3e-3), f unscaled in the actor term, BC term beta_1 = 1e-3): the potential barely
moves in this budget and the policy ends near Q's maximiser, as without a potential. The working preset
(``loss=ppl_stable``: gradient penalty 5 keeping f about 1-Lipschitz in the action on the policy-to-data segment, f
trained at the actor's learning rate) lands on the good mode, with PPL^R's deterministic actor and with PPL^CQL's
stochastic one. How far w moves either is measured by ``benchmarks/known_answer_w.py`` (docs/evidence.md).
"""
from __future__ import annotations

import pytest
import torch
from tensordict.nn import TensorDictModule

from benchmarks.known_answer import SHIFT, train_deterministic, train_stochastic


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_known_answer_q_alone_leaves_the_data():
    r = train_deterministic(potential=False)
    assert r.offset == pytest.approx(SHIFT, abs=0.05)  # at Q's maximiser, 0.35 above the good mode: no data there


def test_known_answer_preset_lands_on_the_best_mode_inside_the_data():
    """loss=ppl_stable's switches at w = 3: on the good mode (its noise is 0.03), not at Q's maximiser outside the data,
    and far from the bad mode; f is clearly lower at the policy's actions than on the data's."""
    r = train_deterministic(w=3.0, potential_gp=5.0, potential_lipschitz=1.0)
    assert abs(r.offset) < 0.12 and r.to_good < 0.12, r
    assert r.to_bad > 0.85, r
    assert r.f_policy < r.f_data - 0.1, r


def test_known_answer_preset_with_gelu_units_lands_on_the_best_mode():
    """The preset's switches with f's units GELU (model.potential_activation=gelu), w = 3: on the good mode, measured
    closer to its centre than with ReLU units (offset -0.024 at seed 0, -0.018 to -0.024 over seeds 0-2)."""
    r = train_deterministic(w=3.0, potential_gp=5.0, potential_lipschitz=1.0, potential_activation="gelu")
    assert abs(r.offset) < 0.06 and r.to_bad > 0.9, r
    assert r.f_policy < r.f_data - 0.1, r


def test_known_answer_authors_setting_stays_near_q_maximiser_outside_the_data():
    """The authors' exact setting (f at lr 3e-6 = critic lr / 100, unscaled in the actor term, beta_1 = 1e-3): measured
    to leave the policy outside the data, within 0.1 of where Q alone puts it; a change here is a change in behaviour."""
    r = train_deterministic(w=3.0, actor_lr=3e-4, potential_lr=3e-6, actor_bc_coef=1e-3)
    assert r.offset > SHIFT - 0.1, r
    assert abs(r.f_data) < 0.05 and abs(r.f_policy) < 0.2, r  # f barely trained: inert


@pytest.mark.slow
@pytest.mark.parametrize("w", [1.0, 8.0])
def test_known_answer_preset_at_other_w(w):
    """What the preset does at the ends of the paper's w range, as measured (seed 0): recorded so that a change is
    seen. w = 8 (the best eighth of the data lies inside the good mode) puts the policy on the good mode, with f small
    (-0.004 on the data, -0.02 at the policy). w = 1 asks a deterministic policy to cover all the data, which one action
    per state cannot: the policy still ends on the good mode (0.09 below its centre), and f is deeper everywhere
    (-0.8 on the data, -1.5 at the policy): the balanced constraint cannot hold, so f keeps pushing."""
    r = train_deterministic(w=w, potential_gp=5.0, potential_lipschitz=1.0)
    assert abs(r.offset) < 0.15 and r.to_bad > 0.85, r
    if w == 1.0:
        assert r.f_data < -0.3 and r.f_policy < r.f_data, r
    else:
        assert abs(r.f_data) < 0.1, r


def test_known_answer_stochastic_policy_lands_on_the_best_mode_inside_the_data():
    """PPL^CQL's TanhNormal actor (CQL's actor term at a fixed temperature 0.01) with the preset's potential at w = 3:
    its mean action on the good mode and most of its samples inside it (measured 0.79 at seed 0), none near the bad
    mode; without the potential the same actor follows Q out of the data (0.34 above the mode, 0.3 % of samples in
    it)."""
    r = train_stochastic(w=3.0, potential_gp=5.0, potential_lipschitz=1.0)
    assert abs(r.offset) < 0.06 and r.on_good > 0.6 and r.on_bad == 0.0, r
    assert r.f_policy < r.f_data - 0.1, r
    alone = train_stochastic(potential=False)
    assert alone.offset > SHIFT - 0.05 and alone.on_good < 0.05, alone


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["deterministic", "stochastic"])
def test_known_answer_w_moves_the_policy_only_a_little_and_never_onto_the_bad_mode(kind):
    """What w does on this problem, as measured (benchmarks/known_answer_w.py, 3 seeds): the smaller w, the further the
    policy's centre moves from Q's side toward the bad mode (w = 8 -> 1: 0.12 for the deterministic policy, 0.18 for the
    stochastic one), f is ~0 on the data at w = 8 (the good mode alone has room for 8 x 0.3 > 1 of the policy's mass,
    so the constraint does not bind) and deep at w = 1; but at w = 1 neither policy covers the data: no action comes
    near the bad mode, which holds 70 % of it."""
    train_kind = train_deterministic if kind == "deterministic" else train_stochastic
    preset = dict(potential_gp=5.0, potential_lipschitz=1.0, potential_activation="gelu", steps=3000)
    at_1, at_8 = train_kind(w=1.0, **preset), train_kind(w=8.0, **preset)
    assert at_8.offset - at_1.offset > 0.08, (at_1, at_8)
    assert abs(at_8.f_data) < 0.02 and at_1.f_data < -0.3, (at_1, at_8)
    assert at_1.on_bad == 0.0 and at_1.to_bad > 0.8, at_1


@pytest.mark.parametrize("train", [train_deterministic, train_stochastic])
def test_known_answer_runs_potential_steps_f_steps_per_actor_step(train, monkeypatch):
    """``potential_steps`` reaches both loops: the f-step's objective is computed that many times per actor step
    (``ReBRACUpdate`` calls ``potential_objective``, the plain loop ``potential_loss``)."""
    from ppl_torchrl.objectives import PartialOTCQLLoss, PartialOTLoss

    cls, name = ((PartialOTLoss, "potential_objective") if train is train_deterministic
                 else (PartialOTCQLLoss, "potential_loss"))
    calls = []
    original = getattr(cls, name)
    monkeypatch.setattr(cls, name, lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    train(w=3.0, steps=4, potential_steps=3, potential_gp=5.0)
    assert len(calls) == 12


def test_known_answer_stochastic_trains_f_at_its_own_learning_rate(monkeypatch):
    """``potential_lr`` is the f optimizer's learning rate, ``lr`` the actor's (grid ``slowf``'s two time-scales)."""
    lrs = []
    real_adam = torch.optim.Adam

    def recording_adam(params, lr, **kw):
        lrs.append(lr)
        return real_adam(params, lr=lr, **kw)

    monkeypatch.setattr(torch.optim, "Adam", recording_adam)
    train_stochastic(w=3.0, steps=2, lr=1e-3, potential_lr=1e-4, potential_gp=5.0)
    assert lrs == [1e-3, 1e-4]


@pytest.mark.slow
def test_known_answer_strong_pull_cycles_and_traps_instead_of_transporting():
    """What raising f's slope bound to K = 10 does, as measured (benchmarks/known_answer_w.py, grids pull and inner,
    seed 0): the deterministic policy at w = 1 does not settle (its centre still sweeps over a unit of action in the
    second half; 2.0 measured) and never rests on the bad mode; the stochastic one with 10 f-steps per actor step
    settles at w = 3, but on the bad mode (98.5 % of its samples), where an early swing threw it."""
    from benchmarks.known_answer import centre_offset

    preset = dict(potential_gp=5.0, potential_lipschitz=10.0, potential_activation="gelu", steps=3000)
    late = []
    det = train_deterministic(w=1.0, **preset,
                              on_step=lambda step, actor: late.append(centre_offset(actor)) if step > 1500 else None)
    assert max(late) - min(late) > 1.0 and det.on_bad == 0.0, det
    trapped = train_stochastic(w=3.0, potential_steps=10, **preset)
    assert trapped.on_bad > 0.9 and trapped.on_good == 0.0, trapped


@pytest.mark.parametrize("train", [train_deterministic, train_stochastic])
def test_known_answer_lipschitz_schedule_sets_k_before_each_step(train, monkeypatch):
    """The K each f-step's gradient penalty reads is the schedule's value at that step."""
    from ppl_torchrl.objectives import PartialOT

    seen = []
    original = PartialOT.gradient_penalty

    def recording(self, *a, **k):
        seen.append(self.potential_lipschitz)
        return original(self, *a, **k)

    monkeypatch.setattr(PartialOT, "gradient_penalty", recording)
    train(w=3.0, steps=3, potential_gp=5.0, lipschitz_schedule=lambda step: 1.0 + step)
    assert seen == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("train", [train_deterministic, train_stochastic])
def test_known_answer_anneals_w_in_both_loops(train, monkeypatch):
    """``w_anneal_steps`` (a switch of the loss) reaches both loops: each f-step reads w = 1 + (w - 1) step / steps."""
    from ppl_torchrl.objectives import PartialOT

    seen = []
    original = PartialOT.potential_objective_on

    def recording(self, *a, **k):
        seen.append(float(self.w_now))
        return original(self, *a, **k)

    monkeypatch.setattr(PartialOT, "potential_objective_on", recording)
    train(w=3.0, steps=3, potential_gp=5.0, w_anneal_steps=4)
    assert seen == pytest.approx([1.0, 1.5, 2.0])


def test_noise_map_splits_only_when_sampled_and_reads_its_median_when_deterministic():
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    from benchmarks.known_answer import NoiseMap

    torch.manual_seed(0)
    net = NoiseMap(1, hidden_dim=8, num_hidden=1)
    with torch.no_grad():
        net.map.net[-1].weight.fill_(1.0)   # the last layer's small init would hide the noise's effect
    s = torch.zeros(64, 1)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        fixed = net(s)
    assert torch.equal(fixed, net.map(torch.zeros(64, 2)))   # z = 0
    sampled = net(s)
    assert sampled.shape == (64, 1) and sampled.std() > 1e-3 and sampled.abs().max() < 1.0


def test_good_share_leaves_the_random_stream_as_it_was():
    from benchmarks.known_answer import NoiseMap, good_share

    actor = TensorDictModule(NoiseMap(1, hidden_dim=8, num_hidden=1), in_keys=["observation"], out_keys=["action"])
    torch.manual_seed(3)
    expected = torch.rand(())
    torch.manual_seed(3)
    share = good_share(actor, samples=5)
    assert torch.rand(()) == expected and 0.0 <= share <= 1.0


def test_known_answer_map_trains_by_the_deterministic_update():
    """A map's run is PPL^R's update on a NoiseMap: with Q alone every sample leaves the data for Q's maximiser, as
    the one-point policy does."""
    out = train_deterministic(potential=False, seed=0, noise_dim=1)
    assert out.offset == pytest.approx(SHIFT, abs=0.05)
    assert out.on_good == out.on_bad == 0.0


def test_noise_map_with_a_noise_skip_starts_spread_over_the_action_range():
    from benchmarks.known_answer import NoiseMap

    torch.manual_seed(0)
    point, spread = NoiseMap(1, hidden_dim=8, num_hidden=1), NoiseMap(1, hidden_dim=8, num_hidden=1, noise_skip=1.0)
    spread.load_state_dict(point.state_dict())
    s = torch.zeros(4000, 1)
    torch.manual_seed(1)
    z = torch.randn(4000, 1)
    torch.manual_seed(1)
    a = spread(s)
    assert torch.allclose(a, torch.tanh(point.map.net(torch.cat([s, z], -1)) + z))
    assert point(s).std() < 0.01 < 0.5 < a.std()
    with pytest.raises(ValueError, match="noise_dim=1"):
        NoiseMap(2, hidden_dim=8, num_hidden=1, noise_skip=1.0)


@pytest.mark.slow
def test_known_answer_map_collapses_to_a_point_instead_of_splitting():
    """What a policy that can split its mass does, as measured (benchmarks/known_answer_w.py, grid map, seed 0): at
    K = 1 and w = 1 the map does not cover the data (all of it on the good mode, none on the bad one, where 70 % of
    the data are); at K = 10 and w = 3 it ends as one point (spread over z under 0.01; measured 0.002)."""
    from benchmarks.known_answer import sampled_actions, good

    preset = dict(potential_gp=5.0, potential_activation="gelu", steps=3000, seed=0, noise_dim=1)
    covering = train_deterministic(w=1.0, potential_lipschitz=1.0, **preset)
    assert covering.on_good > 0.9 and covering.on_bad == 0.0, covering
    final = {}
    train_deterministic(w=3.0, potential_lipschitz=10.0, on_step=lambda step, actor: final.update(actor=actor),
                        **preset)
    states, actions = sampled_actions(final["actor"], 200)
    spread = (actions - good(states)).view(200, -1).std(0).mean().item()
    assert spread < 0.01, spread


def test_value_penalty_adds_half_eps_times_the_mean_square_of_f_to_the_f_step_and_reaches_only_f():
    """ValuePenalised's f-step is the library's plus eps / 2 * mean(f(s, pi)^2 + f(s, a)^2), computed here by hand
    from the potential's own values; its gradient reaches f's parameters only, and eps = 0 is the library's f-step."""
    from tensordict import TensorDict

    from benchmarks.known_answer import _ValuePenalisedPPLR, known_qvalue, sample_data
    from ppl_torchrl.modules import make_actor, make_potential

    torch.manual_seed(0)
    s, a = sample_data(16, seed=0)
    batch = TensorDict({"observation": s, "action": a}, [16])
    loss = _ValuePenalisedPPLR(make_actor(1, 1, hidden_dim=8, num_hidden=1), known_qvalue(),
                               make_potential(1, 1, hidden_dim=8, num_hidden=1), w=3.0, potential_gp=5.0)
    with torch.no_grad():   # f's last layer away from its ~1e-3 start, so that the square is not negligible
        for p in loss.potential_network_params.values(True, True):
            p.normal_()
    pi = torch.rand(16, 1) * 2 - 1
    plain, _ = loss.potential_objective_on(batch, loss.potential_network_params, pi)
    loss.value_penalty = 0.5
    penalised, _ = loss.potential_objective_on(batch, loss.potential_network_params, pi)
    f_pi = loss.potential(batch, pi, loss.potential_network_params)
    f_a = loss.potential(batch, a, loss.potential_network_params)
    expected = plain + 0.25 * (f_pi.pow(2) + f_a.pow(2)).mean()
    assert penalised.item() == pytest.approx(expected.item(), rel=1e-6) and (penalised - plain).item() > 1e-3
    loss_f, _ = loss.potential_loss(batch)
    params = dict(loss.named_parameters())
    grads = torch.autograd.grad(loss_f, list(params.values()), allow_unused=True)
    reached = {name for (name, _), g in zip(params.items(), grads) if g is not None and g.abs().sum() > 0}
    assert reached and all(name.startswith("potential_network_params") for name in reached), reached


def test_optimistic_gradients_feed_two_g_now_minus_g_before_and_start_plain():
    from benchmarks.known_answer import optimistic_gradients

    param = torch.nn.Parameter(torch.zeros(2))
    optimizer, previous = torch.optim.SGD([param], lr=1.0), {}
    fed = []
    for g in ([1.0, 2.0], [3.0, -1.0], [0.0, 0.0]):
        param.grad = torch.tensor(g)
        optimistic_gradients(optimizer, previous)
        fed.append(param.grad.tolist())
    assert fed == [[1.0, 2.0], [5.0, -4.0], [-3.0, 1.0]]


def test_known_answer_optimistic_run_differs_from_the_plain_one_and_plain_is_unchanged():
    plain = train_stochastic(w=3.0, steps=30, potential_gp=5.0, potential_lipschitz=10.0)
    again = train_stochastic(w=3.0, steps=30, potential_gp=5.0, potential_lipschitz=10.0, optimistic=False)
    optimistic = train_stochastic(w=3.0, steps=30, potential_gp=5.0, potential_lipschitz=10.0, optimistic=True)
    assert plain == again and optimistic.f_data != plain.f_data
