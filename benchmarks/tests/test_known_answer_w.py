"""The known-answer grids' driver: which cells each grid runs and the table its report makes from hand-made results
(the grids themselves are `known_answer_w.py`'s runs)."""
from __future__ import annotations

import dataclasses
import math

import pytest

from benchmarks import known_answer_w as driver


def _outcome(offset: float, f_data: float = math.nan, active: float = math.nan) -> dict:
    return dict(offset=offset, to_good=abs(offset), to_bad=1 - offset, on_good=1.0, on_bad=0.0, f_data=f_data,
                f_policy=math.nan, active=active, late_range=0.05)


@pytest.mark.parametrize("name", sorted(driver.GRIDS))
def test_each_grid_runs_every_policy_k_w_and_seed_once(name):
    grid = driver.GRIDS[name]
    cells = driver.cells(grid)
    per_policy = len(grid.lipschitz) * len(grid.ws) + grid.no_potential   # one no-potential row, not one per K
    assert len(cells) == len(set(cells)) == len(grid.policies) * per_policy * len(driver.SEEDS)
    assert {k for _, k, w, _ in cells if w is not None} == set(grid.lipschitz)


def test_the_later_grids_are_the_ones_stated_before_their_runs():
    pull, inner, slowf = driver.GRIDS["pull"], driver.GRIDS["inner"], driver.GRIDS["slowf"]
    assert pull.ws == inner.ws == slowf.ws == (1.0, 3.0, 8.0)
    assert pull.lipschitz == (1.0, 3.0, 10.0) and inner.lipschitz == slowf.lipschitz == (10.0,)
    assert (pull.potential_steps, inner.potential_steps, slowf.potential_steps) == (1, 10, 1)
    assert (pull.potential_lr_scale, inner.potential_lr_scale, slowf.potential_lr_scale) == (1.0, 1.0, 0.1)
    assert (pull.steps, inner.steps, slowf.steps) == (3000, 3000, 10_000)
    assert not pull.no_potential and not inner.no_potential and not slowf.no_potential
    online = driver.GRIDS["online"]
    assert online.ws == (1.0, 3.0, 8.0) and online.lipschitz == (10.0,) and online.policies == ("deterministic",)
    assert not online.potential_uses_target_actor and online.steps == 3000 and online.potential_lr_scale == 1.0
    assert all(g.potential_uses_target_actor for name, g in driver.GRIDS.items() if name != "online")
    annealk = driver.GRIDS["annealk"]
    assert annealk.ws == (1.0, 3.0, 8.0) and annealk.lipschitz == (10.0,) and annealk.lipschitz_from == 1.0
    assert annealk.steps == 3000 and annealk.potential_steps == 1 and annealk.potential_lr_scale == 1.0
    assert all(g.lipschitz_from is None for name, g in driver.GRIDS.items() if name != "annealk")


def test_the_map_grid_is_the_one_stated_before_its_run():
    grid = driver.GRIDS["map"]
    assert grid.policies == ("map",) and grid.ws == (1.0, 3.0, 8.0) and grid.lipschitz == (1.0, 10.0)
    assert grid.no_potential and grid.steps == 3000 and grid.potential_steps == 1 and grid.potential_lr_scale == 1.0
    assert grid.potential_uses_target_actor and grid.lipschitz_from is None and driver.MAP_NOISE == 1
    spread = driver.GRIDS["mapspread"]
    assert spread == dataclasses.replace(grid, section="known-answer-mapspread", map_noise_skip=1.0)
    assert grid.map_noise_skip == 0.0
    assert all("map" not in g.policies and g.map_noise_skip == 0.0
               for name, g in driver.GRIDS.items() if name not in ("map", "mapspread", "valuepen", "valuepen1"))


def test_the_value_penalty_grids_are_the_ones_stated_before_their_runs():
    low, high = driver.GRIDS["valuepen"], driver.GRIDS["valuepen1"]
    assert (low.value_penalty, high.value_penalty) == (0.1, 1.0)
    assert high == dataclasses.replace(low, section="known-answer-valuepen1", value_penalty=1.0)
    assert low.policies == ("deterministic", "stochastic", "map") and low.map_noise_skip == 1.0
    assert low.ws == (1.0, 3.0, 8.0) and low.lipschitz == (10.0,) and not low.no_potential and low.steps == 3000
    assert low.potential_steps == 1 and low.potential_lr_scale == 1.0 and low.lipschitz_from is None
    assert all(g.value_penalty == 0.0 for name, g in driver.GRIDS.items() if name not in ("valuepen", "valuepen1"))


def test_the_optimism_grid_is_the_one_stated_before_its_run():
    grid = driver.GRIDS["optimism"]
    assert grid.optimistic and grid.policies == ("stochastic",) and grid.ws == (1.0, 3.0, 8.0)
    assert grid.lipschitz == (10.0,) and grid.value_penalty == 0.0 and grid.steps == 3000 and not grid.no_potential
    assert grid.potential_steps == 1 and grid.potential_lr_scale == 1.0 and grid.lipschitz_from is None
    assert not any(g.optimistic for name, g in driver.GRIDS.items() if name != "optimism")
    with pytest.raises(ValueError, match="stochastic policy's loop only"):
        driver.run_cell(("deterministic", 10.0, 1.0, 0), grid)


def test_a_map_grid_s_table_names_what_its_range_measures():
    results = {("map", 10.0, 1.0, s): _outcome(-0.5) for s in (0, 1)}
    head = driver.report(driver.GRIDS["map"], results).splitlines()[0]
    assert driver.MAP_RANGE in head and "centre's range" not in head
    assert "centre's range" in driver.report(driver.GRIDS["pull"], {}).splitlines()[0]
    mixed = driver.report(driver.GRIDS["valuepen"], {}).splitlines()[0]
    assert "range, 2nd half (centre's; a map's good-mode share's)" in mixed and driver.MIXED_RANGE in mixed


def test_a_map_cell_traces_its_good_mode_share_without_perturbing_the_run(monkeypatch):
    """For a map, run_cell reads the share of its actions on the good mode; the read draws on a forked random stream,
    so the traced run ends exactly where the same run without a trace ends."""
    from benchmarks.known_answer import good_share, train_deterministic

    monkeypatch.setattr(driver, "TRACE_EVERY", 50)
    short = driver.Grid("known-answer-test", ws=(1.0,), lipschitz=(10.0,), no_potential=False, steps=100,
                        policies=("map",))
    out = driver.run_cell(("map", 10.0, 1.0, 0), short)
    untraced = train_deterministic(w=1.0, seed=0, steps=100, noise_dim=1, potential_lipschitz=10.0, **driver.PRESET)
    assert out["on_good"] == untraced.on_good and out["f_data"] == untraced.f_data
    assert [step for step, _ in out["trace"]] == [50, 100]
    assert all(0.0 <= share <= 1.0 for _, share in out["trace"])
    assert out["late_range"] == pytest.approx(0.0)   # one read in the second half (step 100)


def test_annealed_k_grows_linearly_then_holds():
    k = [driver.annealed(step, start=1.0, end=10.0, steps=1500) for step in (0, 750, 1500, 2999)]
    assert k == pytest.approx([1.0, 5.5, 10.0, 10.0])
    assert len({g.section for g in driver.GRIDS.values()}) == len(driver.GRIDS)


def test_report_gives_mean_and_std_over_seeds_and_leaves_f_out_without_a_potential():
    results = {("deterministic", 1.0, None, 0): _outcome(0.3), ("deterministic", 1.0, None, 1): _outcome(0.5),
               ("stochastic", 1.0, 3.0, 0): _outcome(-0.1, -0.2, 0.3),
               ("stochastic", 1.0, 3.0, 1): _outcome(0.1, -0.4, 0.5)}
    lines = driver.report(driver.GRIDS["w"], results).splitlines()
    assert len(lines) == 4  # header, rule, the two cells that have runs
    assert lines[0].startswith("| policy | w |")
    assert lines[2].startswith("| deterministic | none | 0.400 ± 0.100 | 0.05 ± 0.00 |")
    assert lines[2].count("–") == 3
    assert lines[3].startswith("| stochastic | 3 | 0.000 ± 0.100 |")
    assert "| -0.300 ± 0.100 | 0.40 ± 0.10 | 0.33 |" in lines[3]


def test_report_of_a_grid_over_k_has_a_k_column_and_one_row_per_k():
    results = {("deterministic", k, 1.0, s): _outcome(-0.1 * k) for k in (1.0, 10.0) for s in (0, 1)}
    lines = driver.report(driver.GRIDS["pull"], results).splitlines()
    assert lines[0].startswith("| policy | K | w |") and lines[1].count("|") == lines[0].count("|")
    assert lines[2].startswith("| deterministic | 1 | 1 | -0.100 ± 0.000 |")
    assert lines[3].startswith("| deterministic | 10 | 1 | -1.000 ± 0.000 |")
    assert len(lines) == 4


def test_a_cell_reports_the_range_its_centre_swept_over_the_second_half(monkeypatch):
    """run_cell reads the policy's centre every TRACE_EVERY steps past half the grid's steps and reports max - min:
    checked against the same short run read by hand at steps 300 and 400 (the run is deterministic, so both see one
    path)."""
    from benchmarks.known_answer import centre_offset, train_deterministic

    monkeypatch.setattr(driver, "TRACE_EVERY", 100)
    short = driver.Grid("known-answer-test", ws=(3.0,), lipschitz=(1.0,), no_potential=True, steps=400)
    out = driver.run_cell(("deterministic", 1.0, None, 0), short)   # no potential: Q drives the policy out of the data
    read = {}
    final = train_deterministic(potential=False, seed=0, steps=400,
                                on_step=lambda step, actor: read.__setitem__(step, centre_offset(actor)))
    assert final.offset == pytest.approx(out["offset"]) == pytest.approx(read[400])   # reading does not perturb
    assert out["late_range"] == pytest.approx(abs(read[400] - read[300])) and out["late_range"] > 0.0
    assert [step for step, _ in out["trace"]] == [100, 200, 300, 400]
    assert [c for _, c in out["trace"]] == pytest.approx([read[step] for step in (100, 200, 300, 400)])


@pytest.mark.parametrize("name", sorted(driver.GRIDS))
def test_run_cell_hands_each_grid_s_settings_to_the_trainer(name, monkeypatch):
    from benchmarks import known_answer

    grid, seen = driver.GRIDS[name], {}

    def fake_train(**kw):
        seen.update(kw)
        kw["on_step"](grid.steps, None)
        return known_answer.Outcome(0.0, 0.0, 1.0, 1.0, 0.0)

    monkeypatch.setattr(known_answer, "train_deterministic", fake_train)
    monkeypatch.setattr(known_answer, "train_stochastic", lambda **kw: fake_train(actor_lr=kw["lr"], **kw))
    monkeypatch.setattr(known_answer, "centre_offset", lambda actor: 0.0)
    monkeypatch.setattr(known_answer, "good_share", lambda actor: 0.0)
    for policy in grid.policies:
        seen.clear()
        driver.run_cell((policy, grid.lipschitz[-1], grid.ws[0], 0), grid)
        assert seen.get("noise_dim", 0) == (driver.MAP_NOISE if policy == "map" else 0)
        assert seen.get("noise_skip", 0.0) == (grid.map_noise_skip if policy == "map" else 0.0)
        assert seen["value_penalty"] == grid.value_penalty
        assert seen.get("optimistic", False) is grid.optimistic
        assert seen["steps"] == grid.steps and seen["potential_steps"] == grid.potential_steps
        assert seen["potential_lipschitz"] == grid.lipschitz[-1] and seen["w"] == grid.ws[0]
        assert seen["potential_lr"] == pytest.approx(seen["actor_lr"] * grid.potential_lr_scale)
        if policy != "stochastic":   # PPL^CQL's loss always takes its f-step on the online actor
            assert seen["potential_uses_target_actor"] is grid.potential_uses_target_actor
        schedule = seen.get("lipschitz_schedule")
        assert (schedule is None) == (grid.lipschitz_from is None)
        if schedule is not None:
            assert schedule(0) == grid.lipschitz_from
            assert schedule(grid.steps // 2) == schedule(grid.steps) == grid.lipschitz[-1]
