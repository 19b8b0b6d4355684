"""The compiled PPL^R / ReBRAC update (ppl_torchrl.compiled) against the default TorchRL-loss update."""
import json

import pytest
import torch
from omegaconf import OmegaConf
from test_fast import _batch, _cfg

from ppl_torchrl import compiled
from ppl_torchrl.algorithms import COMPILE_AUTO_MIN_STEPS, make_algorithm, resolve_compile

pytestmark = pytest.mark.skipif(not compiled.compiler_available("cpu"), reason="inductor needs a C++ compiler")


def _run(cfg, steps, *, compile_it, alg=None, start=0, data_seed=1):
    if alg is None:
        torch.manual_seed(0)
        cfg = OmegaConf.merge(cfg, {"compile": compile_it})
        alg = make_algorithm(cfg, 5, 3)
    g = torch.Generator().manual_seed(data_seed)
    torch.manual_seed(7 + start)  # the smoothing noise comes from the global RNG in both paths
    outs = [alg.update(_batch(g), s) for s in range(start, start + steps)]
    return alg, outs


def _assert_same_state(a, b, atol=1e-5, rtol=1e-4):
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
                torch.testing.assert_close(ob[i][k].to(oa[i][k].device), oa[i][k], atol=atol, rtol=rtol,
                                           msg=f"{name}/{i}/{k}")


@pytest.mark.parametrize("name", ["ppl", "rebrac"])
def test_compiled_update_matches_default_update(name):
    ref, ref_out = _run(_cfg(name), 6, compile_it=False)
    got, got_out = _run(_cfg(name), 6, compile_it=True)
    assert isinstance(got.update, compiled.CompiledReBRACUpdate)
    assert not isinstance(ref.update, compiled.CompiledReBRACUpdate)
    _assert_same_state(ref, got)
    torch.manual_seed(0)
    init = make_algorithm(_cfg(name), 5, 3).loss.state_dict()
    sd = got.loss.state_dict()
    assert sum(not torch.equal(init[k], sd[k]) for k in init) > len(init) // 2  # it trained
    for step in (3, 4):  # a critic-only step and a full step: the same diagnostics, the same values
        assert set(got_out[step].keys()) == set(ref_out[step].keys())
        for k in ref_out[step].keys():
            torch.testing.assert_close(got_out[step][k], ref_out[step][k], atol=1e-5, rtol=1e-4, msg=k)
    if name == "ppl":
        assert "loss_potential" in got_out[4].keys() and "loss_potential" not in got_out[3].keys()


def test_compiled_update_resumes_from_a_checkpoint_exactly():
    """State saved mid-run and loaded into a fresh compiled algorithm gives the same parameters as going on."""
    cfg = _cfg("ppl")
    alg, _ = _run(cfg, 4, compile_it=True)
    state = alg.state_dict()
    saved = {"loss": {k: v.clone() for k, v in state["loss"].items()},
             "optimizers": {k: _clone(v) for k, v in state["optimizers"].items()}, "target_updater": None}
    _run(cfg, 3, compile_it=True, alg=alg, start=4, data_seed=2)
    fresh, _ = _run(cfg, 1, compile_it=True)  # its update has gathered the optimizer state once
    fresh.load_state_dict(saved)  # replaces the optimizers' state objects: the update must pick them up
    _run(cfg, 3, compile_it=True, alg=fresh, start=4, data_seed=2)
    a, b = alg.loss.state_dict(), fresh.loss.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert float(fresh.optimizers["critic"].state_dict()["state"][0]["step"]) == 7


def _clone(opt_state):
    return {"state": {i: {k: v.clone() for k, v in st.items()} for i, st in opt_state["state"].items()},
            "param_groups": opt_state["param_groups"]}


def test_compiled_and_eager_updates_can_hand_over():
    """Optimizer state written by the compiled update is torch.optim.Adam's: the eager update continues it."""
    cfg = _cfg("rebrac")
    ref, _ = _run(cfg, 4, compile_it=False)
    _run(cfg, 2, compile_it=False, alg=ref, start=4, data_seed=2)
    mixed, _ = _run(cfg, 4, compile_it=True)
    eager = make_algorithm(OmegaConf.merge(cfg, {"compile": False}), 5, 3)
    eager.load_state_dict(mixed.state_dict())  # the default update goes on from the compiled update's state
    _run(cfg, 2, compile_it=False, alg=eager, start=4, data_seed=2)
    _assert_same_state(ref, eager)


def test_resolve_compile():
    base = OmegaConf.create({"optim": {"steps": COMPILE_AUTO_MIN_STEPS}})
    assert resolve_compile(OmegaConf.merge(base, {"compile": "auto"})) is True
    assert resolve_compile(OmegaConf.merge(base, {"compile": "auto", "optim": {"steps": 3000}})) is False
    assert resolve_compile(OmegaConf.merge(base, {"compile": True, "optim": {"steps": 10}})) is True
    assert resolve_compile(OmegaConf.merge(base, {"compile": False})) is False
    assert resolve_compile(base) is False  # no switch: eager
    with pytest.raises(ValueError, match="true, false or auto"):
        resolve_compile(OmegaConf.merge(base, {"compile": "always"}))


def test_compiled_update_rejects_what_it_does_not_write_out():
    torch.manual_seed(0)
    alg = make_algorithm(_cfg("ppl"), 5, 3)
    opts = dict(alg.optimizers)
    opts["critic"] = torch.optim.SGD(alg.loss.qvalue_network_params.values(True, True), lr=1e-3)
    with pytest.raises(TypeError, match="writes Adam out"):
        compiled.CompiledReBRACUpdate(alg.loss, opts, tau=0.05)
    opts["critic"] = torch.optim.Adam(alg.loss.qvalue_network_params.values(True, True), lr=1e-3, weight_decay=1e-4)
    with pytest.raises(ValueError, match="weight_decay"):
        compiled.CompiledReBRACUpdate(alg.loss, opts, tau=0.05)
    opts["critic"] = torch.optim.Adam(alg.loss.actor_network_params.values(True, True), lr=1e-3)
    with pytest.raises(ValueError, match="does not hold exactly"):
        compiled.CompiledReBRACUpdate(alg.loss, opts, tau=0.05)
    with pytest.raises(ValueError, match="covers 'ppl' and 'rebrac'"):
        compiled.apply_compiled(type("A", (), {"name": "iql"})(), tau=0.05, policy_freq=2)


# ------------------------------------------------------------------------------ several seeds in one process
def _seed_algs(name, seeds, cfg=None):
    cfg = OmegaConf.merge(cfg or _cfg(name), {"compile": False})
    algs = []
    for s in seeds:
        torch.manual_seed(s)
        algs.append(make_algorithm(cfg, 5, 3))
    return algs


@pytest.mark.parametrize("name", ["ppl", "rebrac"])
def test_multiseed_update_equals_each_seed_trained_alone(name):
    from ppl_torchrl.multiseed import MultiSeedReBRACUpdate

    seeds, steps, tau = (0, 1, 2), 4, 0.05
    gen = torch.Generator().manual_seed(3)
    batches = [[_batch(gen) for _ in seeds] for _ in range(steps)]
    noise = [torch.randn(len(seeds), 16, 3, generator=gen) for _ in range(steps)]

    alone = _seed_algs(name, seeds)
    for i, alg in enumerate(alone):
        upd = compiled.CompiledReBRACUpdate(alg.loss, alg.optimizers, tau=tau, policy_freq=2)
        for t in range(steps):
            upd._normal_like = lambda _x, t=t, i=i: noise[t][i]
            upd(batches[t][i], t)

    together = _seed_algs(name, seeds)
    multi = MultiSeedReBRACUpdate(together, tau=tau, policy_freq=2)
    before = {k: v.clone() for k, v in together[1].loss.state_dict().items()}
    for t in range(steps):
        multi._normal_like = lambda _x, t=t: noise[t]
        out = multi(batches[t], t)
        assert out["loss_qvalue"].shape == (len(seeds),)
    # training does not touch the algorithms until write_back
    assert all(torch.equal(v, together[1].loss.state_dict()[k]) for k, v in before.items())
    multi.write_back()
    for a, b in zip(alone, together):
        _assert_same_state(a, b)
    weight = next(k for k in before if k.endswith("weight"))
    assert not torch.equal(together[0].loss.state_dict()[weight], together[1].loss.state_dict()[weight])  # seeds differ


def test_multiseed_update_rejects_mixed_seeds():
    from ppl_torchrl.multiseed import MultiSeedReBRACUpdate

    with pytest.raises(ValueError, match="all 'rebrac'"):
        MultiSeedReBRACUpdate(_seed_algs("ppl", [0]) + _seed_algs("rebrac", [1]), tau=0.05)
    wider = OmegaConf.merge(_cfg("rebrac"), {"model": {"hidden_dim": 16}})
    with pytest.raises(ValueError, match="share the architecture"):
        MultiSeedReBRACUpdate(_seed_algs("rebrac", [0]) + _seed_algs("rebrac", [1], wider), tau=0.05)
    multi = MultiSeedReBRACUpdate(_seed_algs("rebrac", [0, 1]), tau=0.05)
    with pytest.raises(ValueError, match="2 seeds"):
        multi([_batch(torch.Generator().manual_seed(0))], 0)


def test_many_architectures_in_one_process_do_not_exhaust_the_recompile_limit():
    """Dynamo allows 8 recompilations per code object; each configuration gets its own program copy."""
    limit = torch._dynamo.config.recompile_limit
    g = torch.Generator().manual_seed(0)
    for hidden in range(4, 4 + limit + 2):
        torch.manual_seed(0)
        alg = make_algorithm(OmegaConf.merge(_cfg("rebrac"), {"model": {"hidden_dim": hidden}}), 5, 3)
        upd = compiled.CompiledReBRACUpdate(alg.loss, alg.optimizers, tau=0.05, backend="eager")
        out = upd(_batch(g), 1)  # a critic-only step
        assert torch.isfinite(out["loss_qvalue"])


def test_recipe_with_compile_true_trains_logs_and_resumes_bit_identically(tmp_path):
    from test_recipes import _assert_same_run, make_cfg, tiny

    from ppl_torchrl.recipe import train

    full, cut = tmp_path / "full", tmp_path / "cut"
    train(make_cfg(tiny(full, steps=40, **{"eval.every": 20, "compile": "true"})))
    stopped = train(make_cfg(tiny(cut, steps=40, **{"eval.every": 20, "compile": "true", "checkpoint.stop_after": 25})))
    assert stopped == {"stopped_at": 25}
    results = train(make_cfg(tiny(cut, steps=40, **{"eval.every": 20, "compile": "true", "resume": "true"})))
    assert results["steps"] == 40
    _assert_same_run(full, cut)
    rows = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "train/loss_potential" in r]
    assert rows and all(abs(r["train/loss_potential"]) < 1e3 for r in rows)


def _broken_backend(gm, example_inputs):
    raise RuntimeError("no C++ compiler on this machine")


def test_failed_compilation_falls_back_to_the_eager_update_without_touching_the_state():
    ref, ref_out = _run(_cfg("ppl"), 4, compile_it=False)
    torch.manual_seed(0)
    alg = make_algorithm(_cfg("ppl"), 5, 3)
    compiled.apply_compiled(alg, tau=0.05, policy_freq=2, backend=_broken_backend, fallback=True)
    with pytest.warns(RuntimeWarning, match="eager fused update"):
        got, got_out = _run(_cfg("ppl"), 4, compile_it=True, alg=alg)
    assert alg.update.eager
    _assert_same_state(ref, got, atol=0, rtol=0)  # the failed attempt changed nothing, not even the RNG stream
    # without fallback (compile=true) the error is raised
    torch.manual_seed(0)
    strict = make_algorithm(_cfg("ppl"), 5, 3)
    compiled.apply_compiled(strict, tau=0.05, policy_freq=2, backend=_broken_backend)
    with pytest.raises(Exception, match="no C\\+\\+ compiler"):
        _run(_cfg("ppl"), 1, compile_it=True, alg=strict)


def test_compile_auto_probes_on_copies_and_then_trains_exactly_like_compile_true():
    strict, _ = _run(_cfg("ppl"), 4, compile_it=True)
    torch.manual_seed(0)
    auto = make_algorithm(OmegaConf.merge(_cfg("ppl"), {"compile": "auto", "optim": {"steps": 10**6}}), 5, 3)
    assert isinstance(auto.update, compiled.CompiledReBRACUpdate) and auto.update.fallback
    _run(_cfg("ppl"), 4, compile_it=True, alg=auto)
    assert not auto.update.eager
    _assert_same_state(strict, auto, atol=0, rtol=0)


def test_several_updates_in_one_compiled_call_equal_one_call_per_update():
    gen = torch.Generator().manual_seed(5)
    batches = [_batch(gen) for _ in range(5)]
    noise = torch.randn(5, 16, 3, generator=torch.Generator().manual_seed(6))

    def build():
        torch.manual_seed(0)
        alg = make_algorithm(OmegaConf.merge(_cfg("ppl"), {"compile": True}), 5, 3)
        draws = iter(noise)
        alg.update._normal_like = lambda _x: next(draws)
        return alg

    one_by_one = build()
    outs = [one_by_one.update(b, s) for s, b in enumerate(batches)]
    grouped = build()
    first = grouped.update.run(batches[:2], 0)    # phase 0: critic+delayed, critic
    second = grouped.update.run(batches[2:4], 2)  # the same program again
    last = grouped.update(batches[4], 4)
    _assert_same_state(one_by_one, grouped)
    # the latest value of each diagnostic: critic terms from step 1, actor/potential terms from step 0
    assert set(first) == set(outs[0].keys())
    for k, v in first.items():
        want = outs[1][k] if k in outs[1].keys() else outs[0][k]
        torch.testing.assert_close(v, want, atol=1e-5, rtol=1e-4, msg=k)
    for k, v in second.items():
        want = outs[3][k] if k in outs[3].keys() else outs[2][k]
        torch.testing.assert_close(v, want, atol=1e-5, rtol=1e-4, msg=k)
    assert set(last.keys()) == set(outs[4].keys())
    odd = build()
    odd.update(batches[0], 0)
    odd.update.run(batches[1:3], 1)  # phase 1: critic, then critic+delayed
    odd.update.run(batches[3:5], 3)
    _assert_same_state(one_by_one, odd)


def test_training_curves_of_compiled_and_default_updates_match(tmp_path):
    from test_recipes import make_cfg, tiny

    from ppl_torchrl.recipe import train

    runs = {}
    for name, flag in (("eager", "false"), ("compiled", "true")):
        train(make_cfg(tiny(tmp_path / name, steps=60, **{"compile": flag, "logger.log_every": 20, "eval.every": 60})))
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        runs[name] = {r["step"]: r for r in rows if "train/loss_qvalue" in r}
    assert sorted(runs["eager"]) == sorted(runs["compiled"]) == [20, 40, 60]
    for step, row in runs["eager"].items():
        for key, value in row.items():
            if key.startswith("train/") and key != "train/steps_per_second":
                assert runs["compiled"][step][key] == pytest.approx(value, rel=1e-3, abs=1e-5), (step, key)


def test_recipe_with_several_updates_per_call_matches_one_per_call_and_resumes_exactly(tmp_path):
    from test_recipes import _assert_same_run, make_cfg, tiny

    from ppl_torchrl.recipe import train

    def run(name, **extra):
        over = {"eval.every": 20, "compile": "true", "logger.log_every": 10, **extra}
        return train(make_cfg(tiny(tmp_path / name, steps=40, **over)))

    run("one")
    run("grouped", **{"optim.updates_per_call": 2})
    assert run("cut", **{"optim.updates_per_call": 2, "checkpoint.stop_after": 25}) == {"stopped_at": 25}
    run("cut", **{"optim.updates_per_call": 2, "resume": "true"})
    _assert_same_run(tmp_path / "grouped", tmp_path / "cut")  # chunks stop at checkpoints: exact resume

    def rows(name):
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return {r["step"]: r for r in map(json.loads, lines) if "train/loss_qvalue" in r}
    one, grouped = rows("one"), rows("grouped")
    assert sorted(one) == sorted(grouped) == [10, 20, 30, 40]
    for step, row in one.items():
        for key, value in row.items():
            if key.startswith("train/") and key != "train/steps_per_second":
                assert grouped[step][key] == pytest.approx(value, rel=1e-3, abs=1e-5), (step, key)
