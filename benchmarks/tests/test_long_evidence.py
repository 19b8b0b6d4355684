"""benchmarks/long_evidence.py: the grid, its segment schedule, and the report at the step every run reached
(the runs' metrics.jsonl rows are written here in the trainer's format: step, eval/..., probe/...)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def le():
    import benchmarks.long_evidence

    return benchmarks.long_evidence


def test_the_grid_is_the_issue_s(le):
    runs = le.build_grid()
    by = {}
    for r in runs:
        by.setdefault(r.group, []).append(r)
    assert [r.seed for r in by["ppl"]] == [0, 1, 2] and [r.seed for r in by["rebrac"]] == [0, 1, 2]
    assert all(r.steps >= 300_000 for g in ("ppl", "rebrac") for r in by[g])
    assert all(r.steps >= 100_000 for r in by["ppl_trainable_f"])
    sweep = {g for g in by if g.startswith("ppl_trainable_f_w")}
    assert sweep == {"ppl_trainable_f_w1", "ppl_trainable_f_w2", "ppl_trainable_f_w4", "ppl_trainable_f_w16"}
    assert all(len(by[g]) >= 2 and by[g][0].steps >= 100_000 for g in sweep)
    # the sweep varies w of the trainable-potential variant, whose w = 8 runs complete it
    assert all("optim.potential_lr_scale=1.0" in " ".join(by[g][0].overrides(Path("/r"))) for g in sweep)
    variant = " ".join(by["ppl_trainable_f"][0].overrides(Path("/r")))
    assert "optim.potential_lr_scale=1.0" in variant and "hparams.w=8.0" in variant
    assert "potential_lr_scale" not in " ".join(by["ppl"][0].overrides(Path("/r")))
    assert "loss=rebrac" in " ".join(by["rebrac"][0].overrides(Path("/r")))
    # the check at the authors' potential lr: the extreme w, 2 seeds, 100k, no potential_lr_scale override
    assert {g for g in by if g.startswith("ppl_w")} == {"ppl_w1", "ppl_w16"}
    for g in ("ppl_w1", "ppl_w16"):
        args = " ".join(by[g][0].overrides(Path("/r")))
        assert [r.seed for r in by[g]] == [0, 1] and by[g][0].steps == 100_000
        assert "potential_lr_scale" not in args and f"hparams.w={float(g[5:])}" in args


def test_the_schedule_brings_every_main_seed_to_100k_first_and_every_run_to_its_end(le):
    runs = le.build_grid()
    order = le.schedule(runs)
    last = {}
    for r, stop in order:  # each run's segments are increasing and end at its budget
        key = (r.group, r.seed)
        assert stop > last.get(key, 0)
        last[key] = stop
    assert all(last[(r.group, r.seed)] == r.steps for r in runs)
    first_variant = next(i for i, (r, _) in enumerate(order) if r.group == "ppl_trainable_f")
    before = [(r.group, s) for r, s in order[:first_variant]]
    assert sorted(before) == sorted((g, s) for g in ("ppl", "rebrac") for s in (50_000, 100_000) for _ in range(3))
    # the main runs' steps past 100k come last, after the variant and the sweep
    first_late = next(i for i, (r, s) in enumerate(order) if s > 100_000)
    assert all(r.group in ("ppl", "rebrac") for r, _ in order[first_late:])


def _write(run_dir: Path, rows):
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_report_compares_at_the_step_every_run_reached(le, tmp_path):
    runs = le.build_grid()
    scores = {("ppl", 0): 60, ("ppl", 1): 50, ("ppl", 2): 40, ("rebrac", 0): 30, ("rebrac", 1): 35,
              ("rebrac", 2): 25, ("ppl_trainable_f", 0): 10, ("ppl_trainable_f", 1): 20, ("ppl_trainable_f", 2): 30}
    for r in runs:
        if (r.group, r.seed) not in scores:
            continue
        reach = 30_000 if (r.group, r.seed) == ("rebrac", 2) else 50_000  # one run is behind
        rows = []
        for step in range(10_000, reach + 1, 10_000):
            rows.append({"step": step, "probe/f_policy": -1.0, "probe/grad_share_f": 0.25,
                         "probe/f_data/efficient": -0.5, "probe/f_data/inefficient": -2.0})
            rows.append({"step": step, "eval/normalized_score_mean": scores[(r.group, r.seed)] + step / 10_000})
        _write(r.run_dir(tmp_path), rows)
    from benchmarks.long_evidence_report import write_report

    body = write_report(runs, tmp_path, tmp_path / "doc.md", tmp_path)
    assert "step **30k**" in body
    # PPL^R at 30k: 63, 53, 43 -> 53.0 ± 8.2; ReBRAC: 33, 38, 28 -> 33.0 ± 4.1
    assert "| PPL^R (w=8) | 3 | 53.0 ± 8.2 | 63.0, 53.0, 43.0 |" in body
    assert "| ReBRAC | 3 | 33.0 ± 4.1 | 33.0, 38.0, 28.0 |" in body
    assert "| PPL^R (w=8) − ReBRAC | +20.0 ±" in body
    assert "50k, 50k, 30k / 300k" in body
    assert "Mean of the last" not in body  # fewer than 10 evaluations
    assert (tmp_path / "long_budget.png").exists()
    # a variant that has not reached the step yet leaves the PPL^R vs ReBRAC comparison alone
    late = runs[[r.group for r in runs].index("ppl_trainable_f")].run_dir(tmp_path) / "metrics.jsonl"
    late.write_text(json.dumps({"step": 10_000, "eval/normalized_score_mean": 1.0}) + "\n")
    body = write_report(runs, tmp_path, tmp_path / "doc.md", tmp_path)
    assert "step **30k**" in body and "has not reached this step" in body
    assert "| PPL^R, trainable potential" not in body.split("has not reached")[1].split("![")[0]
    assert "long-budget-results:begin" in (tmp_path / "doc.md").read_text()


def test_a_variant_with_a_shorter_budget_is_compared_at_its_own_last_step(le, tmp_path):
    runs = le.build_grid()
    variant_steps = next(r.steps for r in runs if r.group == "ppl_trainable_f")
    main_steps = variant_steps + 50_000
    for r in runs:
        if r.group not in ("ppl", "rebrac", "ppl_trainable_f"):
            continue
        last = variant_steps if r.group == "ppl_trainable_f" else main_steps
        base = {"ppl": 50, "rebrac": 40, "ppl_trainable_f": 30}[r.group] + r.seed
        rows = [{"step": s, "eval/normalized_score_mean": base + s / 10_000, "eval/num_episodes": 10,
                 "probe/dist/inefficient": 0.5} for s in range(10_000, last + 1, 10_000)]
        _write(r.run_dir(tmp_path), rows)
    from benchmarks.long_evidence_report import write_report

    body = write_report(runs, tmp_path, tmp_path / "doc.md", tmp_path)
    head, own = body.split(f"#### The trainable-potential variant at its last step, **{variant_steps // 1000}k**")
    assert f"step **{main_steps // 1000}k**" in head and f"stops at {variant_steps // 1000}k" in head
    assert "| PPL^R, trainable potential (f lr = critic lr) |" not in head.split("### Progress")[1].split("stops at")[1]
    v = variant_steps / 10_000  # scores at the variant's last step: base + seed + v
    assert f"| PPL^R, trainable potential (f lr = critic lr) | 3 | {31 + v:.1f} ± 0.8 |" in own
    assert f"| ReBRAC | 3 | {41 + v:.1f} ± 0.8 |" in own
    assert "| PPL^R, trainable potential (f lr = critic lr) − ReBRAC | -10.0 ± " in own
    # each seed's mean over its last 10 evaluations (60k-150k: base + seed + 10.5), at the main step
    smooth = head.split(f"#### Mean of the last 10 evaluations ({main_steps // 1000 - 90}k-{main_steps // 1000}k)")[1]
    assert "100 episodes per seed" in smooth and "| PPL^R (w=8) | 3 | 61.5 ± 0.8 | 60.5, 61.5, 62.5 |" in smooth
    assert "| ReBRAC | 3 | 51.5 ± 0.8 | 50.5, 51.5, 52.5 |" in smooth
    assert "| PPL^R (w=8) − ReBRAC | +10.0 ± 0.8 | 3/3 | beat |" in smooth


def test_the_w_sweep_table_takes_w8_from_the_trainable_potential_variant(le, tmp_path):
    runs = le.build_grid()
    for r in runs:
        if not r.group.startswith("ppl_trainable_f") or r.seed > 1:
            continue
        w = 8.0 if r.group == "ppl_trainable_f" else float(r.group[len("ppl_trainable_f_w"):])
        rows = []
        for step in range(10_000, 40_001, 10_000):
            rows.append({"step": step, "probe/f_policy": -w * 1e6 - r.seed, "probe/f_data": -2.0,
                         "probe/f_data/efficient": -1.0, "probe/f_data/inefficient": -1.0 - w,
                         "probe/dist/efficient": 0.3 + r.seed, "probe/dist/inefficient": 0.5,
                         "probe/grad_share_f": 0.0 if w >= 8 else 0.1})
            rows.append({"step": step, "eval/normalized_score_mean": 10 * w + r.seed})
        _write(r.run_dir(tmp_path), rows)
    from benchmarks.long_evidence_report import write_report

    body = write_report(runs, tmp_path, tmp_path / "doc.md", tmp_path)
    sweep = body.split("### w sweep")[1]
    assert "At step **40k**" in sweep and "trainable-potential variant" in sweep
    # w | score | f(s,π(s)) | f efficient | f inefficient | dist efficient | dist inefficient | f's share
    assert "| 1 | 10.5 ± 0.5 | -1e+06 | -1 | -2 | 0.8 | 0.5 | 0.1 |" in sweep
    assert "| 8 | 80.5 ± 0.5 | -8e+06 | -1 | -9 | 0.8 | 0.5 | 0 |" in sweep  # the variant's runs, seeds 0-1
    assert (tmp_path / "long_budget_sweep.png").exists() and "long_budget_sweep.png" in sweep
    assert sweep.index("| 4 |") < sweep.index("| 8 |") < sweep.index("| 16 |")
    # the other sweep's runs have not started here: its section says so instead of a table
    assert "No step has been evaluated by every run of the sweep yet." in body.split("authors' potential lr")[1]


def test_the_authors_lr_sweep_takes_w8_from_the_main_ppl_runs(le, tmp_path):
    runs = le.build_grid()
    for r in runs:
        if r.group not in ("ppl", "ppl_w1", "ppl_w16") or r.seed > 1:
            continue
        w = 8.0 if r.group == "ppl" else float(r.group[len("ppl_w"):])
        rows = []
        for step in range(10_000, (150_000 if r.group == "ppl" else 100_000) + 1, 10_000):
            rows.append({"step": step, "probe/f_policy": -w * 1e-5, "probe/f_data": -w * 1e-6,
                         "probe/f_data/efficient": -1e-6, "probe/f_data/inefficient": -2e-6,
                         "probe/dist/efficient": 0.3, "probe/dist/inefficient": 0.6, "probe/grad_share_f": w / 100})
            rows.append({"step": step, "eval/normalized_score_mean": w + r.seed + step / 1e4})
        _write(r.run_dir(tmp_path), rows)
    from benchmarks.long_evidence_report import write_report

    body = write_report(runs, tmp_path, tmp_path / "doc.md", tmp_path)
    sweep = body.split("### w sweep (PPL^R at the authors' potential lr")[1]
    # at 100k (the sweep's target), though the main runs went on to 150k
    assert "At step **100k**" in sweep and "the main PPL^R runs" in sweep
    assert "| 1 | 11.5 ± 0.5 | -1.00e-05 | -1.00e-06 | -2.00e-06 | 0.3 | 0.6 | 0.01 |" in sweep
    assert "| 8 | 18.5 ± 0.5 | -8.00e-05 | -1.00e-06 | -2.00e-06 | 0.3 | 0.6 | 0.08 |" in sweep  # main PPL^R at 100k
    assert sweep.index("| 1 |") < sweep.index("| 8 |") < sweep.index("| 16 |") and "| 4 |" not in sweep
    assert (tmp_path / "long_budget_sweep_authors_lr.png").exists() and "long_budget_sweep_authors_lr.png" in sweep
    assert "No step has been evaluated" in body.split("### w sweep (PPL^R with the trainable potential")[1].split(
        "### w sweep")[0]


def _final(run_dir: Path, steps: int, score: float, success: float):
    summary = {"algorithm": "x", "dataset": "pointmaze-medium-mixed-gen-v0", "seed": 0, "steps": steps,
               "final_eval": {"num_episodes": 100, "normalized_score_mean": score, "success_rate": success}}
    (run_dir / "final_eval.json").write_text(json.dumps(summary))


def test_each_main_run_s_final_policy_is_scored_once_after_its_last_segment(le, tmp_path):
    runs = le.build_grid()
    main = [r for r in runs if r.group in ("ppl", "rebrac")]
    for r in main:  # ppl seed 0 is one segment short
        reach = r.steps - 50_000 if (r.group, r.seed) == ("ppl", 0) else r.steps
        _write(r.run_dir(tmp_path), [{"step": reach, "eval/normalized_score_mean": 1.0}])
    _final(main[1].run_dir(tmp_path), main[1].steps, 50.0, 0.5)  # rebrac seed 0: scored at its last step
    _final(main[3].run_dir(tmp_path), 150_000, 50.0, 0.5)        # rebrac seed 1: a stale file from an earlier step
    todo = le.jobs_to_run(runs, tmp_path)
    evals = [j for j in todo if j.name.endswith("final evaluation")]
    assert sorted(j.key for j in evals) == sorted(f"{r.group}-seed{r.seed}" for r in main if r is not main[1])
    ppl0 = [j.name for j in todo if j.key == "ppl-seed0"]
    assert ppl0 == ["ppl-seed0 to 300k", "ppl-seed0 final evaluation"]  # its last segment first, same key
    argv = next(j.argv for j in evals if j.key == "rebrac-seed1")
    assert argv[1] == str(le.EVALUATE) and f"episodes={le.FINAL_EPISODES}" in argv and le.FINAL_EPISODES >= 100
    assert f"checkpoint={main[3].run_dir(tmp_path) / 'checkpoint.pt'}" in argv
    assert f"output={main[3].run_dir(tmp_path) / 'final_eval.json'}" in argv


def test_the_report_adds_the_final_policies_once_every_main_run_has_one(le, tmp_path):
    runs = le.build_grid()
    main = [r for r in runs if r.group in ("ppl", "rebrac")]
    for r in main:
        _write(r.run_dir(tmp_path), [{"step": s, "eval/normalized_score_mean": 10.0} for s in (10_000, r.steps)])
    from benchmarks.long_evidence_report import write_report

    finals = {("ppl", 0): 60, ("ppl", 1): 70, ("ppl", 2): 80, ("rebrac", 0): 40, ("rebrac", 1): 50, ("rebrac", 2): 60}
    for r in main[:-1]:
        _final(r.run_dir(tmp_path), r.steps, finals[(r.group, r.seed)], finals[(r.group, r.seed)] / 100)
    assert "The final policies" not in write_report(runs, tmp_path, tmp_path / "doc.md", tmp_path)  # one missing
    last = main[-1]
    _final(last.run_dir(tmp_path), last.steps, finals[(last.group, last.seed)], 0.6)
    body = write_report(runs, tmp_path, tmp_path / "doc.md", tmp_path)
    final = body.split("#### The final policies (300k) on 100 episodes each")[1]
    assert "| PPL^R (w=8) | 3 | 70.0 ± 8.2 | 60.0, 70.0, 80.0 | 0.60, 0.70, 0.80 |" in final
    assert "| ReBRAC | 3 | 50.0 ± 8.2 | 40.0, 50.0, 60.0 | 0.40, 0.50, 0.60 |" in final
    assert "| PPL^R (w=8) − ReBRAC | +20.0 ± 8.2 | 3/3 |" in final  # SE = sqrt(10²/3 + 10²/3), std with ddof 1


def test_a_method_keeps_its_color_on_a_panel_that_leaves_others_out():
    from types import SimpleNamespace

    from ppl_torchrl.reporting.figures import pyplot
    from benchmarks.long_evidence_report import band

    run = SimpleNamespace(group="ppl_trainable_f", seed=0)
    series = {("ppl_trainable_f", 0): {"probe/f_data": {10: -1.0, 20: -2.0}}}
    fig, ax = pyplot().subplots()
    band(ax, series, {"variant": [run]}, "probe/f_data", colors={"ppl": "C0", "variant": "C2"})
    assert [line.get_color() for line in ax.lines] == ["C2"]
    pyplot().close(fig)
