"""The PPL^R / ReBRAC update (ppl_torchrl.update): one schedule, the loss's own formulas, compiled by a flag.

* eager ``ReBRACUpdate`` == the plain TorchRL loop (``loss.qvalue_loss`` / ``actor_loss`` / ``potential_loss``,
  ``.backward()``, ``torch.optim.Adam.step()``, ``SoftUpdate``) bit for bit, for every documented switch of
  ``loss/ppl.yaml`` and ``loss/rebrac.yaml`` and odd and even ``policy_freq``;
* compiled (``aot_eager``: the traced graph without inductor's kernels; inductor in the recipe tests) == eager;
* several updates per call == one per call; a failed compilation falls back without touching the state;
* ``compile.enabled=auto`` at a paper-length step count builds and trains with every documented switch.
"""
from __future__ import annotations

import copy
import dataclasses

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from tensordict import TensorDict
from torchrl.objectives import SoftUpdate

from ppl_torchrl import keys
from ppl_torchrl.training.algorithms import (COMPILE_AUTO_MIN_STEPS, algorithm_from_config, make_algorithm,
                                             resolve_compile)
from ppl_torchrl.training.config import CompileConfig, LossConfig, NetworkConfig, OptimConfig
from ppl_torchrl.update import ReBRACUpdate, compiler_available

CONFIG = Path(__file__).parents[1] / "recipes" / "config"
OBS, ACT, BATCH = 5, 3, 16

# Every documented switch of the two loss configs, with each of its values (a test below checks this table
# against the config files, so a new switch cannot be added without a parity test).
SWITCHES = {
    "normalize_q": [True, False],
    "critic_next_action": ["policy", "dataset"],
    "potential_uses_target_actor": [True, False],  # ppl only, as every potential_* switch and w_anneal_steps
    "potential_bound": [None, 0.5],
    "potential_gp": [0.0, 5.0],
    "potential_lipschitz": [1.0, 0.5],
    "potential_gp_directions": ["segment", "all"],
    "potential_actor_scale": ["none", "q", "self"],
    "potential_actor_coef": [1.0, 0.5],
    "potential_steps": [1, 2],
    "w_anneal_steps": [0, 3],
    "saturation_penalty": [0.0, 1.0],
    "validate_inputs": [True, False],
}


NETWORK = NetworkConfig(hidden_dim=32, num_hidden=2, num_qvalue_nets=2, activation="relu", init="corl")


def _cfg(name, policy_freq=2, compiled=False, network=NETWORK, **loss):
    """What :func:`_build` builds: the loss's settings, the networks, the optimizers and the compile switches."""
    if name == "ppl":
        loss.setdefault("potential_uses_target_actor", True)
    return SimpleNamespace(
        loss=LossConfig(name, actor_bc_coef=1e-2, critic_bc_coef=1e-2, **loss), network=network,
        optim=OptimConfig(actor_lr=1e-3, critic_lr=1e-3, potential_lr_scale=0.1, tau=0.05, policy_freq=policy_freq,
                          gamma=0.99),
        compile=CompileConfig(enabled=compiled, backend="aot_eager"))


def _batch(g, b=BATCH):
    return TensorDict({
        keys.OBSERVATION: torch.randn(b, OBS, generator=g), keys.ACTION: torch.rand(b, ACT, generator=g) * 2 - 1,
        keys.NEXT_OBSERVATION: torch.randn(b, OBS, generator=g),
        keys.NEXT_ACTION: torch.rand(b, ACT, generator=g) * 2 - 1,
        keys.REWARD: torch.randn(b, 1, generator=g), keys.DONE: torch.zeros(b, 1, dtype=torch.bool),
        keys.TERMINATED: torch.rand(b, 1, generator=g) < 0.2, keys.TRUNCATED: torch.zeros(b, 1, dtype=torch.bool),
    }, [b])


def _batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [_batch(g) for _ in range(n)]


def _make(cfg, device="cpu"):
    return make_algorithm(cfg.loss, cfg.network, cfg.optim, OBS, ACT, device, compile=cfg.compile)


def _build(cfg, saturated=False):
    """The algorithm of ``cfg`` from seed 0; ``saturated``: the actor's weights scaled up so that most of its action
    components sit on tanh's flat edge (where ``saturation_penalty`` acts; at the tiny init it never does)."""
    torch.manual_seed(0)
    alg = _make(cfg)
    if saturated:  # the target actor too, so that it starts equal to the actor as a built loss's does
        with torch.no_grad():
            for name, p in alg.loss.named_parameters():
                if name.startswith("actor_network_params"):
                    p.mul_(40.0)
            for name, b in alg.loss.named_buffers():
                if name.startswith("target_actor_network_params"):
                    b.mul_(40.0)
    return alg


def _train(alg, batches, start=0):
    torch.manual_seed(7)  # the smoothing noise comes from the global RNG on every path
    return [alg.update(b, start + s) for s, b in enumerate(batches)]


def _torchrl_loop(cfg, batches, saturated=False):
    """The reference: the loss's public TorchRL methods, autograd and torch's Adam, the authors' schedule
    written out here independently of ppl_torchrl.update."""
    alg = _build(cfg, saturated)
    loss, opts = alg.loss, alg.optimizers
    updater = SoftUpdate(loss, tau=cfg.optim.tau)
    torch.manual_seed(7)
    for step, batch in enumerate(batches):
        if "potential" in opts:
            loss.set_training_step(step)
        for name, term in [("critic", loss.qvalue_loss)] + (
                [("actor", loss.actor_loss)] if step % cfg.optim.policy_freq == 0 else []):
            value, _ = term(batch)
            opts[name].zero_grad()
            value.backward()
            if name == "actor":
                updater.step()  # targets move towards the pre-update actor
            opts[name].step()
        if step % cfg.optim.policy_freq == 0 and "potential" in opts:
            for _ in range(cfg.loss.potential_steps):
                value, _ = loss.potential_loss(batch)
                opts["potential"].zero_grad()
                value.backward()
                opts["potential"].step()
    return alg


def _assert_same_state(a, b, atol=0.0, rtol=0.0):
    sa, sb = a.loss.state_dict(), b.loss.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], atol=atol, rtol=rtol, msg=k)
    for name in a.optimizers:
        oa, ob = a.optimizers[name].state_dict()["state"], b.optimizers[name].state_dict()["state"]
        assert oa.keys() == ob.keys(), name
        for i in oa:
            assert float(ob[i]["step"]) == float(oa[i]["step"]), (name, i)
            for k in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(ob[i][k], oa[i][k], atol=atol, rtol=rtol, msg=f"{name}/{i}/{k}")


def _assert_compiled_follows_eager(ref, got, ref_out, got_out):
    """The compiled run ``got`` ends in the eager run ``ref``'s state and logged the same diagnostics at every step.

    fp32 rounding differs (Adam's capturable branch under compile); Adam's normalisation amplifies it on near-zero
    gradients, so the state is compared with a tolerance of a few learning-rate-sized steps at most."""
    _assert_same_state(ref, got, atol=2e-3, rtol=1e-3)
    assert len(got_out) == len(ref_out)
    for step, (ref_step, got_step) in enumerate(zip(ref_out, got_out)):
        assert set(got_step.keys()) == set(ref_step.keys()), step
        for k in ref_step.keys():
            torch.testing.assert_close(got_step[k], ref_step[k], atol=1e-4, rtol=1e-3, msg=f"{k} at step {step}")


def _switch_grid(name):
    """The defaults, then each switch flipped to each of its other values alone."""
    names = [k for k in SWITCHES if name == "ppl" or not k.startswith(("potential_", "w_anneal", "saturation"))]
    return [{}] + [{k: v} for k in names for v in SWITCHES[k][1:]]


def test_switch_table_covers_every_documented_switch():
    for name in ("ppl", "rebrac"):
        documented = yaml.safe_load((CONFIG / "loss" / f"{name}.yaml").read_text())
        # ppl.yaml builds on rebrac.yaml and takes the potential's switches from potential/authors.yaml
        for base in documented.pop("defaults", []):
            if base == "_self_":
                continue
            path = (CONFIG / "loss" / f"{base}.yaml" if isinstance(base, str) else
                    CONFIG / next(iter(base)).split("@")[0].strip("/") / f"{next(iter(base.values()))}.yaml")
            documented = {**yaml.safe_load(path.read_text()), **documented}
        if name == "ppl":
            assert "potential_gp" in documented and "w_anneal_steps" in documented
        boolean_or_choice = {k for k, v in documented.items() if isinstance(v, bool) or k == "critic_next_action"
                             or k.startswith(("potential_", "w_anneal", "saturation"))}
        assert boolean_or_choice <= set(SWITCHES), f"loss/{name}.yaml has a switch without a parity test"


@pytest.mark.parametrize("policy_freq", [1, 2, 3])
@pytest.mark.parametrize("name", ["ppl", "rebrac"])
def test_eager_update_equals_the_plain_torchrl_loop_for_every_switch(name, policy_freq):
    batches = _batches(7)
    for switches in _switch_grid(name):
        cfg = _cfg(name, policy_freq=policy_freq, **switches)
        got = _build(cfg)
        assert isinstance(got.update, ReBRACUpdate) and not got.compiled
        _train(got, batches)
        _assert_same_state(_torchrl_loop(cfg, batches), got)  # bit for bit


def test_the_saturation_penalty_acts_on_a_saturated_actor_and_equals_the_plain_loop():
    """At the tiny init no action reaches tanh's flat edge, so the switch table's run cannot see the penalty: here the
    actor starts saturated, the penalty is large, it moves the actor where the run without it does not, and the
    eager update still equals the plain TorchRL loop bit for bit."""
    batches = _batches(7)
    cfg = _cfg("ppl", policy_freq=1, saturation_penalty=1.0)
    got = _build(cfg, saturated=True)
    terms = got.loss.actor_terms(batches[0], got.loss.actor_network_params, got.loss.qvalue_network_params.detach(),
                                 got.loss.potential_network_params.detach())[0]
    assert terms["saturation"].mean() > 1.0
    _train(got, batches)
    _assert_same_state(_torchrl_loop(cfg, batches, saturated=True), got)
    without = _build(_cfg("ppl", policy_freq=1), saturated=True)
    _train(without, batches)
    moved = {k: (got.loss.actor_network_params[k] - without.loss.actor_network_params[k]).abs().max()
             for k in got.loss.actor_network_params.keys(True, True)}
    assert max(moved.values()) > 1e-3, moved


@pytest.mark.slow
def test_the_compiled_update_follows_the_eager_one_with_the_saturation_penalty_acting():
    batches = _batches(6)
    ref = _build(_cfg("ppl", policy_freq=2, saturation_penalty=1.0), saturated=True)
    ref_out = _train(ref, batches)
    got = _build(_cfg("ppl", policy_freq=2, compiled=True, saturation_penalty=1.0), saturated=True)
    got_out = _train(got, batches)
    assert got.update.compiled
    _assert_compiled_follows_eager(ref, got, ref_out, got_out)


def test_the_update_trains_and_reports_the_loss_diagnostics():
    alg = _build(_cfg("ppl"))
    before = {k: v.clone() for k, v in alg.loss.state_dict().items()}
    outs = _train(alg, _batches(4))
    after = alg.loss.state_dict()
    for prefix in ("actor_network_params", "qvalue_network_params", "potential_network_params",
                   "target_actor_network_params", "target_qvalue_network_params"):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix
    critic_only = {"loss_qvalue", "pred_value", "target_value"}
    assert set(outs[1].keys()) == critic_only
    assert set(outs[0].keys()) == critic_only | {"loss_actor", "bc_distance", "lmbda", "state_action_value_actor",
                                                 "potential_actor", "loss_potential", "potential_policy",
                                                 "potential_data"}
    assert all(not v.requires_grad for v in outs[0].values())


@pytest.mark.parametrize("name", ["ppl", "rebrac"])
def test_the_update_owns_the_target_updates_so_torchrl_does_not_warn_that_nothing_does(name, monkeypatch):
    import warnings

    import torchrl.objectives.common

    monkeypatch.setattr(torchrl.objectives.common, "rl_warnings", lambda: True)  # tests/conftest.py turns them off
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alg = _build(_cfg(name))
        _train(alg, _batches(2))
        alg.loss(_batches(1)[0])  # the loss read on its own, as evaluation and the probe do
        alg.loss.target_actor_network_params, alg.loss.target_qvalue_network_params
    assert not [w for w in caught if "target network updater" in str(w.message)]


def _configs_covering_every_switch():
    """Few configurations in which every value of every switch and odd and even policy_freq appear: the potential's
    switches together (w annealed over the run, f bounded and gradient-penalised, two f-steps) with f's units GELU,
    and each of the actor-term scales."""
    gelu_f = dataclasses.replace(NETWORK, potential_activation="gelu")
    return [("ppl", 3, dict(normalize_q=False, critic_next_action="dataset", potential_uses_target_actor=False,
                            validate_inputs=False)),
            ("rebrac", 1, dict(normalize_q=False, critic_next_action="dataset")),
            ("ppl", 2, dict(network=gelu_f, potential_bound=0.5, potential_gp=5.0, potential_lipschitz=0.5,
                            potential_actor_scale="self", potential_actor_coef=0.5, potential_steps=2,
                            w_anneal_steps=3)),
            ("ppl", 1, dict(potential_actor_scale="q", potential_gp=5.0, potential_gp_directions="all",
                            saturation_penalty=1.0))]


@pytest.mark.slow
@pytest.mark.parametrize("name,policy_freq,switches", _configs_covering_every_switch())
def test_compiled_update_equals_eager_update(name, policy_freq, switches):
    batches = _batches(6)
    ref = _build(_cfg(name, policy_freq=policy_freq, **switches))
    ref_out = _train(ref, batches)
    got = _build(_cfg(name, policy_freq=policy_freq, compiled=True, **switches))
    assert got.compiled and got.update.compiled
    got_out = _train(got, batches)
    assert got.update.compiled  # it did not fall back
    _assert_compiled_follows_eager(ref, got, ref_out, got_out)


def test_several_updates_per_call_equal_one_call_per_update():
    batches = _batches(5, seed=5)
    one = _build(_cfg("ppl"))
    outs = _train(one, batches)
    for phases in ([(0, 2), (2, 4), (4, 5)], [(0, 1), (1, 3), (3, 5)]):  # even and odd starting phases
        grouped = _build(_cfg("ppl"))
        torch.manual_seed(7)
        results = [grouped.run_updates(batches[a:b], a) for a, b in phases]
        _assert_same_state(one, grouped)
        for (a, b), res in zip(phases, results):
            # the latest value of each diagnostic over the chunk
            for k in res.keys():
                want = next(outs[s][k] for s in reversed(range(a, b)) if k in outs[s].keys())
                torch.testing.assert_close(res[k], want, atol=0, rtol=0, msg=k)


def test_eager_torch_func_gradients_equal_the_eager_autograd_ones(monkeypatch):
    """``ppl_torchrl.update.EAGER_AUTOGRAD = False`` differentiates eagerly with torch.func (what the compiled update
    traces) instead of autograd on the update's parameter handles: the same states, bit for bit."""
    from ppl_torchrl import update

    batches = _batches(4, seed=4)
    ref = _build(_cfg("ppl"))
    _train(ref, batches)
    monkeypatch.setattr(update, "EAGER_AUTOGRAD", False)
    got = _build(_cfg("ppl"))
    _train(got, batches)
    assert got.update._views is None  # no handles: torch.func took every gradient
    _assert_same_state(ref, got)


def test_a_state_loaded_into_a_running_update_is_the_state_it_trains_on():
    """The eager update keeps handles on the parameters (built at its first call): a checkpoint loaded into the
    same algorithm afterwards (in place, as resume does) must be what the next updates train, exactly as a fresh
    algorithm loaded from that checkpoint."""
    batches = _batches(6, seed=3)
    source = _build(_cfg("ppl"))
    _train(source, batches[:3])
    # a copy, as torch.save / torch.load give: optimizer.load_state_dict keeps the tensors it is handed
    checkpoint = copy.deepcopy(source.state_dict())

    running = _build(_cfg("ppl"))
    torch.manual_seed(11)
    _train(running, _batches(2, seed=9))  # its handles now exist, on other values
    running.load_state_dict(copy.deepcopy(checkpoint))
    fresh = _build(_cfg("ppl"))
    fresh.load_state_dict(copy.deepcopy(checkpoint))
    _train(running, batches[3:], start=3)
    _train(fresh, batches[3:], start=3)
    _assert_same_state(fresh, running)
    _train(source, batches[3:], start=3)
    _assert_same_state(source, running)


def test_failed_compilation_falls_back_to_the_eager_update_without_touching_the_state():
    batches = _batches(4)
    ref = _build(_cfg("ppl"))
    _train(ref, batches)

    def broken_program(*args):  # what torch.compile raises when inductor cannot build (no C++ compiler, ...)
        raise RuntimeError("no C++ compiler on this machine")

    alg = _build(_cfg("ppl"))
    alg.update = ReBRACUpdate(alg.loss, alg.optimizers, tau=0.05, compile=True, backend="eager", fallback=True)
    alg.update._program = broken_program
    with pytest.warns(RuntimeWarning, match="eager update"):
        _train(alg, batches)
    assert not alg.update.compiled
    _assert_same_state(ref, alg)  # bit for bit: the failed attempt changed nothing, not even the RNG stream
    strict = _build(_cfg("ppl"))
    strict.update = ReBRACUpdate(strict.loss, strict.optimizers, tau=0.05, compile=True, backend="eager")
    strict.update._program = broken_program
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        _train(strict, batches[:1])


@pytest.mark.skipif(not compiler_available("cpu"), reason="compile.enabled=auto compiles only where inductor works")
def test_a_run_whose_compilation_fails_says_so_and_records_an_eager_run(tmp_path, capsys, tiny, make_cfg):
    from ppl_torchrl.training.build import build_trainer

    over = {"compile.enabled": "auto", "checkpoint.stop_after": 4, "logger.log_every": 2, "eval.every": 10**6}
    trainer = build_trainer(make_cfg(tiny(tmp_path, steps=COMPILE_AUTO_MIN_STEPS, **over)))
    assert trainer.algorithm.compiled

    def broken_program(*args):
        raise RuntimeError("no C++ compiler on this machine")

    trainer.algorithm.update._program = broken_program
    with pytest.warns(RuntimeWarning, match="eager update"):
        assert trainer.run() == {"stopped_at": 4}
    assert not trainer.algorithm.compiled and not trainer.algorithm.update.compiled
    out = capsys.readouterr()
    assert "compiling failed" in out.out + out.err and "compiled in" not in out.out + out.err


def test_resolve_compile_and_bad_values():
    long, short = COMPILE_AUTO_MIN_STEPS, COMPILE_AUTO_MIN_STEPS - 1
    assert resolve_compile(True, "ppl", short) is True
    assert resolve_compile(False, "ppl", long) is False
    assert resolve_compile("auto", "ppl", long) is compiler_available("cpu")
    assert resolve_compile("auto", "ppl", short) is False
    assert resolve_compile("auto", "iql", long) is False
    with pytest.raises(ValueError, match="true, false or auto"):
        resolve_compile("sometimes", "ppl", long)
    alg = _build(_cfg("ppl"))
    with pytest.raises(ValueError, match="policy_freq"):
        ReBRACUpdate(alg.loss, alg.optimizers, tau=0.05, policy_freq=0)
    with pytest.raises(ValueError, match="potential"):
        ReBRACUpdate(alg.loss, {k: v for k, v in alg.optimizers.items() if k != "potential"}, tau=0.05)
    with pytest.raises(ValueError, match="CUDA"):
        ReBRACUpdate(alg.loss, alg.optimizers, tau=0.05, compile=True, cudagraphs=True)
    alg.loss.reduction = "none"  # per-sample terms: nothing to step on
    with pytest.raises(ValueError, match="reduction='mean'"):
        ReBRACUpdate(alg.loss, alg.optimizers, tau=0.05)
    alg.loss.reduction = "mean"
    sgd = dict(alg.optimizers, critic=torch.optim.SGD(alg.loss.qvalue_network_params.values(True, True), lr=0.1))
    with pytest.raises(TypeError, match="Adam"):
        ReBRACUpdate(alg.loss, sgd, tau=0.05)(_batches(1)[0], 1)


def test_updates_per_call_uses_one_call_length_and_single_updates_for_remainders(tmp_path, tiny, make_cfg):
    """A compiled call of a new length compiles a new graph (minutes on a small CPU): with updates_per_call=3
    and logs every 8 steps, the loop makes calls of 3 and single updates, never of 2, and never crosses a
    log, eval or checkpoint step."""
    from ppl_torchrl.training.build import build_trainer

    over = {"compile.enabled": "false", "compile.updates_per_call": 3, "logger.log_every": 8, "eval.every": 16,
            "eval.episodes": 1, "checkpoint.every": 16}
    trainer = build_trainer(make_cfg(tiny(tmp_path, steps=20, **over)))
    calls = []
    many, one = trainer.algorithm.run_updates, trainer.algorithm.update
    trainer.algorithm.run_updates = lambda batches, step: calls.append((step, len(batches))) or many(batches, step)
    trainer.algorithm.update = lambda batch, step: calls.append((step, 1)) or one(batch, step)
    trainer.run()
    assert calls == [(0, 3), (3, 3), (6, 1), (7, 1), (8, 3), (11, 3), (14, 1), (15, 1), (16, 3), (19, 1)]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss_qvalue" in r] == [8, 16, 20]


@pytest.mark.parametrize("name", ["ppl", "iql"])
def test_a_checkpoint_of_a_cuda_run_resumes_on_cpu_with_this_devices_optimizer_flags(name):
    """A CUDA run saves capturable (ReBRAC update) or fused (TorchRL losses) Adam groups with step counters on the
    GPU; loaded on a CPU machine they must step as this machine's optimizers do, and reach the numbers of a CPU
    resume."""
    import copy

    cfg = _cfg(name)
    batches = _batches(4)
    torch.manual_seed(0)
    alg = _make(cfg)
    _train(alg, batches[:2])
    state = copy.deepcopy(alg.state_dict())
    as_cuda = copy.deepcopy(state)
    for opt_state in as_cuda["optimizers"].values():
        for group in opt_state["param_groups"]:
            group.update(capturable=True, foreach=None) if name == "ppl" else group.update(fused=True, foreach=None)
    resumed = {}
    for label, saved in (("cpu", state), ("cuda", as_cuda)):
        alg = _make(cfg)
        alg.load_state_dict(saved)
        for opt in alg.optimizers.values():
            group = opt.param_groups[0]
            assert not group["capturable"] and not group.get("fused") and group["foreach"]
        _train(alg, batches[2:], start=2)
        resumed[label] = alg
    _assert_same_state(resumed["cpu"], resumed["cuda"])


def test_cuda_graphs_on_an_update_that_has_none_is_a_config_error(tiny, make_cfg):
    from ppl_torchrl.errors import ConfigError

    iql = make_cfg(tiny("unused", loss="iql", **{"compile.enabled": "true", "compile.cudagraphs": "true"}))
    with pytest.raises(ConfigError, match="compile.cudagraphs=true"):
        algorithm_from_config(iql, OBS, ACT)
    eager = _cfg("ppl")
    eager.compile = CompileConfig(cudagraphs=True)
    with pytest.raises(ConfigError, match="compile.cudagraphs=true"):
        _make(eager)


def test_the_update_checks_the_first_batch_and_names_the_missing_key():
    alg = _build(_cfg("ppl"))
    batch = _batches(1)[0].exclude(keys.NEXT_ACTION)
    with pytest.raises(KeyError, match="'next', 'action'"):
        alg.update(batch, 0)


@pytest.mark.slow
@pytest.mark.skipif(not compiler_available("cpu"), reason="inductor needs a C++ compiler")
def test_recipe_compiled_with_inductor_resumes_bit_identically_and_follows_the_eager_curve(tmp_path, tiny, make_cfg,
                                                                                          assert_same_run):
    from ppl_torchrl.training.recipe import train

    def run(name, **extra):
        over = {"eval.every": 20, "eval.episodes": 1, "logger.log_every": 10, "compile.enabled": "true",
                "compile.updates_per_call": 2, **extra}
        return train(make_cfg(tiny(tmp_path / name, steps=40, **over)))

    run("eager", **{"compile.enabled": "false", "compile.updates_per_call": 1})
    run("full")
    assert run("cut", **{"checkpoint.stop_after": 25}) == {"stopped_at": 25}
    run("cut", resume="true")
    assert_same_run(tmp_path / "full", tmp_path / "cut")  # chunks stop at checkpoints: resume is exact

    def rows(name):
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return {r["step"]: r for r in map(json.loads, lines) if "train/loss_qvalue" in r}
    eager, full = rows("eager"), rows("full")
    assert sorted(eager) == sorted(full) == [10, 20, 30, 40]
    for step, row in eager.items():
        for key, value in row.items():
            if key.startswith("train/") and key != "train/steps_per_second":
                assert full[step][key] == pytest.approx(value, rel=1e-2, abs=1e-4), (step, key)


@pytest.mark.slow
@pytest.mark.skipif(not compiler_available("cpu"), reason="inductor needs a C++ compiler")
def test_compile_auto_at_paper_length_builds_and_trains_with_the_switches_flipped(tmp_path, tiny, make_cfg):
    """compile.enabled=auto with optim.steps >= 100k compiles with inductor, here with every documented switch
    away from its default (``critic_next_action=dataset`` once crashed every long run)."""
    from ppl_torchrl.training.build import build_trainer

    switches = {"loss.critic_next_action": "dataset", "loss.normalize_q": "false",
                "loss.potential_uses_target_actor": "false", "loss.validate_inputs": "false"}
    over = {"compile.enabled": "auto", "checkpoint.stop_after": 6, "logger.log_every": 3, "eval.every": 10**6,
            **switches}
    trainer = build_trainer(make_cfg(tiny(tmp_path, steps=COMPILE_AUTO_MIN_STEPS, **over)))
    assert trainer.algorithm.compiled and trainer.algorithm.update.fallback
    assert trainer.run() == {"stopped_at": 6}
    assert trainer.algorithm.update.compiled  # inductor built it: no fallback
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss_qvalue" in r] == [3, 6]


def test_any_network_the_loss_accepts_works_on_the_update_eager_and_compiled():
    """TorchRL's own modules (an MLP actor with a tanh, a single ValueOperator critic, an MLP potential) instead
    of ppl_torchrl.modules: the update differentiates whatever networks the loss holds."""
    from tensordict.nn import TensorDictModule
    from torch import nn
    from torchrl.modules import MLP, ValueOperator

    from ppl_torchrl.objectives import PartialOTLoss

    class NegAbsMLP(MLP):  # f = -|g(s, a)|, the inputs concatenated by torchrl's MLP
        def forward(self, *inputs):
            return -super().forward(*inputs).abs()

    def build(compile_it):
        torch.manual_seed(0)
        actor = TensorDictModule(nn.Sequential(MLP(in_features=OBS, out_features=ACT, num_cells=[16]), nn.Tanh()),
                                 in_keys=[keys.OBSERVATION], out_keys=[keys.ACTION])
        critic = ValueOperator(MLP(in_features=OBS + ACT, out_features=1, num_cells=[16]),
                               in_keys=[keys.OBSERVATION, keys.ACTION])
        potential = ValueOperator(NegAbsMLP(in_features=OBS + ACT, out_features=1, num_cells=[16]),
                                  in_keys=[keys.OBSERVATION, keys.ACTION], out_keys=["potential"])
        loss = PartialOTLoss(actor, critic, potential, w=4.0, actor_bc_coef=0.1, critic_bc_coef=0.1)
        loss.make_value_estimator(gamma=0.9)
        opts = {n: torch.optim.Adam(p.values(True, True), lr=1e-2) for n, p in (
            ("critic", loss.qvalue_network_params), ("actor", loss.actor_network_params),
            ("potential", loss.potential_network_params))}
        return loss, opts, ReBRACUpdate(loss, opts, tau=0.1, compile=compile_it, backend="aot_eager")

    batches = _batches(4)
    results = []
    for compile_it in (False, True):
        loss, opts, update = build(compile_it)
        before = {k: v.clone() for k, v in loss.state_dict().items()}
        torch.manual_seed(7)
        outs = [update(b, s) for s, b in enumerate(batches)]
        assert all(torch.isfinite(v).all() for o in outs for v in o.values())
        assert update.compiled == compile_it  # no silent fallback
        after = loss.state_dict()
        assert all(any(not torch.equal(before[k], after[k]) for k in before if k.startswith(p))
                   for p in ("actor_network_params", "qvalue_network_params", "potential_network_params"))
        results.append(after)
    for k in results[0]:
        torch.testing.assert_close(results[1][k], results[0][k], atol=2e-3, rtol=1e-3, msg=k)



# ----------------------------------------------------------------------------------------- CUDA (skipped on CPU)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _on(device, batches):
    return [b.to(device) for b in batches]


@CUDA
def test_cuda_eager_update_follows_the_cpu_update():
    """The same update on a GPU: networks, targets and optimizer state follow the CPU run (fp32, cuBLAS rounding;
    TF32 stays off, torch's default for matmuls)."""
    batches = _batches(6)
    cfg = _cfg("ppl", policy_freq=2, policy_noise=0.0)  # no smoothing noise: the CPU and CUDA streams differ
    ref = _build(cfg)
    got = _make(cfg, device="cuda")
    got.loss.load_state_dict(ref.loss.state_dict())  # the CPU run's initial weights
    ref_out = _train(ref, batches)
    got_out = _train(got, _on("cuda", batches))
    for k, v in got.loss.state_dict().items():
        torch.testing.assert_close(v.cpu(), ref.loss.state_dict()[k], atol=2e-3, rtol=1e-3, msg=k)
    for step in range(len(batches)):
        for k in ref_out[step].keys():
            torch.testing.assert_close(got_out[step][k].cpu(), ref_out[step][k], atol=1e-4, rtol=1e-3, msg=k)


@CUDA
@pytest.mark.parametrize("cudagraphs", [False, True])
def test_cuda_compiled_update_follows_the_eager_update(cudagraphs):
    """The fast path on a GPU: inductor's kernels (and with ``compile.cudagraphs`` each call replayed as a CUDA graph,
    parameters and optimizer state at static addresses) give the eager update's numbers, over critic-only and delayed
    steps and across calls that reuse the graph."""
    batches = _on("cuda", _batches(8))

    def build(compiled):
        cfg = _cfg("ppl", policy_freq=2)
        cfg.compile = CompileConfig(enabled=compiled, backend="inductor", cudagraphs=bool(compiled and cudagraphs))
        torch.manual_seed(0)
        return _make(cfg, device="cuda")

    ref, got = build(False), build(True)
    ref_out, got_out = _train(ref, batches), _train(got, batches)
    assert got.update.compiled  # it did not fall back
    _assert_compiled_follows_eager(ref, got, ref_out, got_out)
    if cudagraphs:  # diagnostics survive the next replay (they are copied out of the graph's memory)
        first = got_out[0]["loss_qvalue"].clone()
        _train(got, batches[:2], start=8)
        assert torch.equal(got_out[0]["loss_qvalue"], first)


@CUDA
def test_cuda_state_resumes_on_cpu():
    """An algorithm trained on a GPU continues on the CPU from its state_dict (weights, Adam moments and step counts)
    exactly as the GPU run continues, up to cuBLAS/CPU rounding."""
    batches = _batches(6)
    cfg = _cfg("ppl", policy_freq=2, policy_noise=0.0)  # no smoothing noise: the CPU and CUDA streams differ
    torch.manual_seed(0)
    gpu = _make(cfg, device="cuda")
    _train(gpu, _on("cuda", batches[:3]))
    cpu = _build(cfg)
    cpu.load_state_dict(gpu.state_dict())
    for name, opt in cpu.optimizers.items():
        for state in opt.state.values():
            assert state["step"].device.type == "cpu", name
    _train(gpu, _on("cuda", batches[3:]), start=3)
    _train(cpu, batches[3:], start=3)
    for k, v in cpu.loss.state_dict().items():
        torch.testing.assert_close(v, gpu.loss.state_dict()[k].cpu(), atol=2e-3, rtol=1e-3, msg=k)
