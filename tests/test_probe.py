"""The mechanism probe (ppl_torchrl/training/probe.py): its numbers against hand computations, its groups from
real behaviour labels, and that a run with it trains exactly as one without."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from ppl_torchrl import keys
from ppl_torchrl.objectives import PartialOTLoss, ReBRACLoss
from ppl_torchrl.training.probe import MechanismProbe, ProbeData, load_probe_data
from ppl_torchrl.training.build import build_trainer
from tiny_networks import tiny_networks

CONFIG_DIR = Path(__file__).resolve().parents[1] / "recipes" / "config"
OBS, ACT, N = 3, 2, 12


def _losses():
    actor, critic, potential = tiny_networks(OBS, ACT)
    ppl = PartialOTLoss(actor, critic, potential, w=4.0, actor_bc_coef=0.3)
    rebrac = ReBRACLoss(actor, critic, actor_bc_coef=0.3)
    return ppl, rebrac, actor, critic, potential


def _data(labels=True):
    g = torch.Generator().manual_seed(1)
    obs, act = torch.randn(N, OBS, generator=g), torch.rand(N, ACT, generator=g) * 2 - 1
    behavior = torch.tensor([0, 1, 2] * (N // 3)) if labels else None
    return ProbeData(obs, act, behavior, {0: "planner", 1: "wander", 2: "detour"} if labels else None)


def _actor_grad_norm(loss, value_fn):
    leaves = list(loss.actor_network_params.values(True, True))
    grads = torch.autograd.grad(value_fn(), leaves)
    return torch.sqrt(sum(g.pow(2).sum() for g in grads)).item()


def test_probe_numbers_match_hand_computations():
    ppl, _, actor, critic, potential = _losses()
    data = _data()
    out = MechanismProbe(data)(ppl)
    td = {keys.OBSERVATION: data.observation}
    from tensordict import TensorDict

    def pi():
        t = TensorDict(td, [N])
        with ppl.actor_network_params.to_module(ppl.actor_network):
            return ppl.actor_network(t).get(keys.ACTION)

    def q(a):
        t = TensorDict({**td, keys.ACTION: a}, [N])
        return critic(t).get("state_action_value").min(-1).values

    def f(a):
        t = TensorDict({**td, keys.ACTION: a}, [N])
        return potential(t).get("potential").squeeze(-1)

    with torch.no_grad():
        a_pi = pi()
        qp = q(a_pi)
        dist = (a_pi - data.action).norm(dim=-1)
        f_data = f(data.action)
    assert out["q_policy"] == pytest.approx(qp.mean().item(), rel=1e-5)
    assert out["q_data"] == pytest.approx(q(data.action).mean().item(), rel=1e-5)
    assert out["term_q"] == pytest.approx((qp.mean() / qp.abs().mean()).item(), rel=1e-5)
    assert out["term_bc"] == pytest.approx(0.3 * (a_pi - data.action).pow(2).sum(-1).mean().item(), rel=1e-5)
    assert out["f_policy"] == pytest.approx(f(a_pi).mean().item(), rel=1e-5)
    assert out["f_data"] == pytest.approx(f_data.mean().item(), rel=1e-5)
    assert out["dist"] == pytest.approx(dist.mean().item(), rel=1e-5)
    for label, name in data.names.items():
        mask = data.behavior == label
        assert out[f"dist/{name}"] == pytest.approx(dist[mask].mean().item(), rel=1e-5)
        assert out[f"f_data/{name}"] == pytest.approx(f_data[mask].mean().item(), rel=1e-5)
    eff = data.behavior == 0
    assert out["dist/efficient"] == pytest.approx(dist[eff].mean().item(), rel=1e-5)
    assert out["dist/inefficient"] == pytest.approx(dist[~eff].mean().item(), rel=1e-5)
    # gradient norms of each term with respect to the actor, and the potential's share of them
    g_f = _actor_grad_norm(ppl, lambda: f(pi()).mean())
    g_bc = _actor_grad_norm(ppl, lambda: 0.3 * (pi() - data.action).pow(2).sum(-1).mean())
    assert out["grad_norm_f"] == pytest.approx(g_f, rel=1e-4)
    assert out["grad_norm_bc"] == pytest.approx(g_bc, rel=1e-4)
    total = out["grad_norm_f"] + out["grad_norm_bc"] + out["grad_norm_q"]
    assert out["grad_share_f"] == pytest.approx(out["grad_norm_f"] / total, rel=1e-6)
    assert 0 < out["grad_share_f"] < 1
    # where each term moves the action: the cosine of its descent direction in the action with the way to the data
    a = a_pi.clone().requires_grad_(True)
    toward = data.action - a_pi

    def cos(term):
        (g,) = torch.autograd.grad(term(a).sum(), a)
        return torch.nn.functional.cosine_similarity(-g, toward, dim=-1).mean().item()

    assert out["toward_data_f"] == pytest.approx(cos(lambda x: -f(x)), abs=1e-5)
    assert out["toward_data_q"] == pytest.approx(cos(lambda x: -q(x) / qp.abs().mean()), abs=1e-5)
    assert out["toward_data_bc"] == pytest.approx(1.0, abs=1e-5)  # BC's descent points at the data by construction
    assert out["saturated"] == pytest.approx((a_pi.abs() > 0.99).float().mean().item())


def test_the_saturation_penalty_is_a_probed_term_of_its_own():
    """With ``saturation_penalty`` on and an actor scaled onto tanh's edge, the probe reports the penalty's value,
    its gradient norm and direction, and counts it in f's share's denominator."""
    actor, critic, potential = tiny_networks(OBS, ACT)
    with torch.no_grad():
        for p in actor.parameters():
            p.mul_(300.0)
    loss = PartialOTLoss(actor, critic, potential, w=4.0, actor_bc_coef=0.3, saturation_penalty=2.0)
    data = _data()
    out = MechanismProbe(data)(loss)
    from tensordict import TensorDict

    action = loss.policy_action(TensorDict({keys.OBSERVATION: data.observation}, [N]), loss.actor_network_params)
    assert out["saturated"] > 0.3
    assert out["term_saturation"] == pytest.approx(2.0 * loss.saturation(action.detach()).mean().item(), rel=1e-5)
    assert out["term_saturation"] > 0 and out["grad_norm_saturation"] > 0
    total = sum(out[f"grad_norm_{k}"] for k in ("bc", "q", "f", "saturation"))
    assert out["grad_share_f"] == pytest.approx(out["grad_norm_f"] / total, rel=1e-6)
    assert -1.0 <= out["toward_data_saturation"] <= 1.0


def test_a_constant_potential_has_no_share_of_the_actor_gradient():
    ppl, *_ = _losses()
    with torch.no_grad():
        for p in ppl.potential_network_params.values(True, True):
            p.zero_()
    out = MechanismProbe(_data())(ppl)
    assert out["grad_norm_f"] == 0 and out["grad_share_f"] == 0
    assert out["grad_norm_q"] > 0 and out["grad_norm_bc"] > 0


def test_rebrac_has_no_potential_terms_and_unlabelled_data_no_groups():
    _, rebrac, *_ = _losses()
    out = MechanismProbe(_data(labels=False))(rebrac)
    assert not [k for k in out if "f" in k.split("_")[0].split("/")[0] and k.startswith("f")]
    assert "grad_share_f" not in out and not [k for k in out if "/" in k]
    assert {"q_policy", "q_data", "term_bc", "term_q", "grad_norm_q", "grad_norm_bc", "dist"} <= set(out)


def test_the_probe_does_not_touch_parameters_or_gradients():
    ppl, *_ = _losses()
    before = ppl.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    MechanismProbe(_data())(ppl)
    for k, v in ppl.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in ppl.parameters())


def test_labels_and_names_come_from_a_d4rl_format_file(tmp_path):
    path = tmp_path / "mixed.hdf5"
    n = 50
    with h5py.File(path, "w") as h5:
        h5["observations"] = np.arange(n * OBS, dtype=np.float32).reshape(n, OBS)
        h5["actions"] = np.zeros((n, ACT), np.float32)
        h5["infos/behavior"] = np.arange(n, dtype=np.int32) % 2
        h5.attrs["behavior_names"] = np.array([b"0:expert", b"1:medium"])

    class Buffer:  # what load_probe_data reads of a replay buffer: its state normalization
        state_mean, state_std = torch.full((OBS,), 1.0), torch.full((OBS,), 2.0)

    data = load_probe_data(path, Buffer(), size=20, seed=3)
    rows = (data.observation[:, 0] * 2 + 1).round().long() // OBS  # undo the normalization, recover the row
    assert len(set(rows.tolist())) == 20
    assert torch.equal(data.behavior, rows % 2)
    assert data.names == {0: "expert", 1: "medium"}
    assert set(MechanismProbe(data).groups()) == {"expert", "medium", "efficient", "inefficient"}
    assert load_probe_data(path, Buffer(), size=0) is None


def _cfg(run_dir, probe_size):
    overrides = {
        "dataset": "pointmaze-umaze-mixed-gen-v0", "optim.steps": 30, "optim.batch_size": 32, "model.hidden_dim": 16,
        "model.num_hidden": 1, "eval.episodes": 0, "eval.every": 10, "logger.backend": "", "logger.progress": "false",
        "logger.log_every": 10, "checkpoint.every": 10, "checkpoint.every_minutes": "null", "threads": 1,
        "run_dir": str(run_dir), "probe.size": probe_size, "compile.enabled": "false",
    }
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="ppl_antmaze", overrides=[f"{k}={v}" for k, v in overrides.items()])


def test_a_probed_run_trains_exactly_as_an_unprobed_one_and_logs_the_labelled_groups(tmp_path):
    threads = torch.get_num_threads()
    try:
        states = {}
        for size in (0, 64):
            trainer = build_trainer(_cfg(tmp_path / f"p{size}", size))
            trainer.run()
            states[size] = trainer.algorithm.loss.state_dict()
    finally:
        torch.set_num_threads(threads)
    for k, v in states[0].items():
        assert torch.equal(v, states[64][k]), k
    rows = [json.loads(line) for line in (tmp_path / "p64" / "metrics.jsonl").read_text().splitlines()]
    probed = [r for r in rows if "probe/f_data" in r]
    assert [r["step"] for r in probed] == [10, 20, 30]
    assert {"probe/dist/planner", "probe/dist/wander", "probe/dist/detour", "probe/dist/inefficient",
            "probe/f_data/efficient", "probe/grad_share_f"} <= set(probed[-1])
    assert not any(k.startswith("probe/") for r in
                   (json.loads(line) for line in (tmp_path / "p0" / "metrics.jsonl").read_text().splitlines())
                   for k in r)


def test_active_share_counts_data_actions_deeper_than_a_tenth_of_f_at_the_policy():
    from ppl_torchrl.training.probe import active_share

    f_data = torch.tensor([0.0, -0.05, -0.11, -0.5, -2.0])
    assert active_share(f_data, torch.tensor(-1.0)) == pytest.approx(3 / 5)  # -0.11, -0.5, -2.0 lie below -0.1
    assert active_share(f_data, torch.tensor(-0.2)) == pytest.approx(4 / 5)  # threshold -0.02
    assert active_share(torch.zeros(4), torch.tensor(0.0)) == 0.0  # f = 0 everywhere: active nowhere
