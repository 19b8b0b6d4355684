"""benchmarks/potential_evidence.py: every run of its fixed grid composes to the recipe config it names, the no-BC
runs differ from their BC twins by the actor's BC term alone, and the report has a row for every mechanism run."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

from benchmarks.potential_evidence import MECHANISM_GROUPS, build_grid, report
from benchmarks.grid import RECIPES


def _compose(run, root):
    overrides = [o for o in run.grid_run(root).overrides if not o.startswith("resume=")]
    with initialize_config_dir(str(RECIPES / "config"), version_base="1.3"):
        return compose(config_name=run.recipe.stem, overrides=overrides)


def test_every_grid_run_composes_to_the_setting_it_names(tmp_path):
    runs = build_grid()
    assert len({(r.group, r.name, r.seed) for r in runs}) == len(runs)
    for run in runs:
        cfg = _compose(run, tmp_path)
        assert cfg.loss.name == run.loss and cfg.seed == run.seed and cfg.optim.steps == run.steps
        assert cfg.model.hidden_dim == run.hidden
        if "-w" in run.name:
            assert cfg.hparams.w == float(run.name.rsplit("-w", 1)[1])
        assert cfg.dataset.id == run.dataset
        assert (cfg.loss.actor_bc_coef == 0.0) == ("-nobc" in run.name), run.name
        assert (cfg.loss.critic_bc_coef == 0.0) == ("-nobc-all" in run.name), run.name


def test_a_no_bc_run_differs_from_its_bc_twin_by_the_actor_bc_term_only(tmp_path):
    runs = {r.name: r for r in build_grid() if r.group in MECHANISM_GROUPS}
    for name, run in runs.items():
        if run.group != "nobc":
            continue
        twin = runs[name.replace("-nobc", "")]
        a, b = _compose(run, tmp_path), _compose(twin, tmp_path)
        assert a.loss.actor_bc_coef == 0.0 and b.loss.actor_bc_coef > 0
        a.loss.actor_bc_coef = b.loss.actor_bc_coef
        a.hparams.actor_bc_coef = b.hparams.actor_bc_coef
        a.run_dir = b.run_dir
        assert a == b, name


def test_a_run_without_any_bc_term_differs_from_its_twin_by_the_two_bc_terms_only(tmp_path):
    """The runs with both BC terms off against the same run with both on: on pointmaze ``gelu``'s for the potential
    and ``mechanism``'s ReBRAC, on halfcheetah the ``cheetah_me`` run of the same name without ``-nobc-all``."""
    grid = build_grid()
    runs = [r for r in grid if "-nobc-all" in r.name]
    assert {r.name for r in runs} == {"rebrac-nobc-all", "ppl_stable-gelu-nobc-all-w3", "ppl_stable-gelu-nobc-all-w8",
                                      "hc-me-rebrac-nobc-all", "hc-me-ppl_stable-gelu-nobc-all-w2",
                                      "hc-me-ppl_stable-gelu-gpall-nobc-all-w2",
                                      "hc-me-ppl_stable-gelu-guard-nobc-all-w2"}
    for run in runs:
        twin_group = (run.group if run.group.startswith("cheetah") else "mechanism" if run.loss == "rebrac"
                      else "gelu")
        twin = next(r for r in grid if r.group == twin_group and r.seed == 0
                    and r.name == run.name.replace("-nobc-all", ""))
        a, b = _compose(run, tmp_path), _compose(twin, tmp_path)
        assert a.loss.actor_bc_coef == a.loss.critic_bc_coef == 0.0
        assert b.loss.actor_bc_coef > 0 and b.loss.critic_bc_coef > 0
        for key in ("actor_bc_coef", "critic_bc_coef"):
            a.loss[key], a.hparams[key] = b.loss[key], b.hparams[key]
        a.run_dir = b.run_dir
        assert a == b, run.name


def test_the_report_lists_every_mechanism_run_before_any_has_trained(tmp_path):
    text = report(build_grid(), tmp_path)
    for run in build_grid():
        if run.group in MECHANISM_GROUPS:
            assert f"| {run.name} | 0 | 0 |" in text
    assert "0 of 9 runs finished" in text
    assert "Verdict on seeds 0-2, last three evaluations: not yet" in text


def test_a_runs_curve_reads_its_scores_and_gradient_shares_at_each_evaluation(tmp_path):
    import json

    from benchmarks.potential_evidence import curve_cells

    run = next(r for r in build_grid() if r.name == "rebrac-nobc")
    folder = run.run_dir(tmp_path)
    folder.mkdir(parents=True)
    rows = [{"step": 10000, "eval/normalized_score_mean": 27.25}, {"step": 10000, "probe/grad_share_f": 0.2},
            {"step": 15000, "train/loss_actor": 1.0}, {"step": 20000, "eval/normalized_score_mean": -4.0}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cells = curve_cells(run, tmp_path)
    assert cells[:3] == ["27 / 0.20", "-4 / -", ""] and cells[3:] == [""] * 7


def _write_evals(run, root, late_scores, last_step=100_000):
    """Evaluations every 10k steps up to ``last_step``: 0 before 80k, then ``late_scores`` at 80k, 90k and 100k."""
    import json

    folder = run.run_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    scores = dict(zip((80_000, 90_000, 100_000), late_scores))
    rows = [{"step": s, "eval/normalized_score_mean": scores.get(s, 0.0)} for s in range(10_000, last_step + 1, 10_000)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_held_out_verdict_uses_the_last_three_evaluations_of_finished_runs_and_the_2_se_rule(tmp_path):
    from benchmarks.potential_evidence import heldout_lines, late_score

    runs = build_grid()
    pick = {(r.group, r.name, r.seed): r for r in runs}
    ours = [pick["gelu", "ppl_stable-gelu-w3", 0], pick["heldout", "ppl_stable-gelu-w3", 1],
            pick["heldout", "ppl_stable-gelu-w3", 2]]
    base = [pick["mechanism", "rebrac", 0], pick["heldout", "rebrac", 1], pick["heldout", "rebrac", 2]]
    for run, late in zip(ours, ((80, 90, 100), (70, 80, 90), (60, 70, 80))):   # means 90, 80, 70
        _write_evals(run, tmp_path, late)
    _write_evals(base[0], tmp_path, (60, 60, 60))
    _write_evals(base[1], tmp_path, (60, 60, 60))
    _write_evals(base[2], tmp_path, (60, 60, 60), last_step=90_000)             # unfinished: no score yet
    assert late_score(ours[0], tmp_path) == 90 and late_score(base[2], tmp_path) is None
    text = "\n".join(heldout_lines(runs, tmp_path))
    assert "| ReBRAC | last three evaluations | 60.0 | 60.0 | - |" in text
    assert "Verdict on seeds 0-2, last three evaluations: not yet" in text
    _write_evals(base[2], tmp_path, (60, 60, 60))  # now finished
    text = "\n".join(heldout_lines(runs, tmp_path))
    # seeds 0-2: diff 20, Welch SE sqrt(100 / 3) = 5.77, so 2 SE = 11.5: beat; held-out: diff 15, 2 SE = 10: beat
    assert ("Verdict on seeds 0-2, last three evaluations: **beat** (difference +20.0, 2 SE = 11.5; higher on 3 of "
            "3 seeds)") in text
    assert ("Verdict on held-out seeds 1-2, last three evaluations: **beat** (difference +15.0, 2 SE = 10.0; higher "
            "on 2 of 2 seeds)") in text
    assert "Verdict on seeds 0-2, final policy, 50 episodes: not yet" in text


def test_the_final_policies_are_scored_once_each_and_their_scores_get_their_own_verdict(tmp_path):
    import json

    from benchmarks.potential_evidence import FINAL_EVAL, final_eval_jobs, heldout_lines, heldout_sides

    runs = build_grid()
    sides = list(heldout_sides(runs).values())
    for run in sides[0] + sides[1]:
        _write_evals(run, tmp_path, (60, 60, 60))
    jobs = final_eval_jobs(runs, tmp_path)
    assert len(jobs) == 6 and len({j.key for j in jobs}) == 6
    first = sides[0][0].run_dir(tmp_path)
    assert jobs[0].argv[1].endswith("recipes/evaluate.py")
    assert {f"checkpoint={first / 'checkpoint.pt'}", "episodes=50", "seed=1000",
            f"output={first / FINAL_EVAL}"} <= set(jobs[0].argv)
    # the recipe's output: {"algorithm", "dataset", "seed", "steps", "final_eval": {..., "normalized_score_mean"}}
    for side, scores in zip(sides, ((70.0, 80.0, 90.0), (50.0, 50.0, 50.0))):
        for run, score in zip(side, scores):
            (run.run_dir(tmp_path) / FINAL_EVAL).write_text(json.dumps(
                {"algorithm": run.loss, "steps": 100_000, "final_eval": {"normalized_score_mean": score}}))
    assert final_eval_jobs(runs, tmp_path) == []
    text = "\n".join(heldout_lines(runs, tmp_path))
    assert "| ReBRAC | final policy, 50 episodes | 50.0 | 50.0 | 50.0 | 50.0 ± 0.0 (3) |" in text
    # diff 30, Welch SE sqrt(100 / 3) = 5.77: beat
    assert "Verdict on seeds 0-2, final policy, 50 episodes: **beat** (difference +30.0, 2 SE = 11.5;" in text


def test_a_run_not_on_this_machine_keeps_its_rows_from_the_last_report_and_a_run_here_replaces_them(tmp_path):
    """Run folders are not in the repository: a report written on a fresh checkout must not turn the finished runs
    of the last report into "never run", while a run that is here is reported from its folder."""
    import json

    grid = build_grid()
    gone = next(r for r in grid if r.name == "ppl_stable-gelu-w8")
    moved = next(r for r in grid if r.name == "rebrac-nobc")
    previous = report(grid, tmp_path).replace(f"| {gone.name} | 0 | 0 |", f"| {gone.name} | 100000 | 10 |")
    previous = previous.replace(f"| {moved.name} | 0 | 0 |", f"| {moved.name} | 100000 | 10 |")
    previous = previous.replace("0 of 9 runs finished", "2 of 9 runs finished")
    held = "**Held-out seeds** (kept paragraph)"
    previous = previous.replace(previous[previous.index("\n**Held-out seeds**"):previous.index("\n**Comparison**")],
                                f"\n{held}\n\n| kept | table |\n")
    curve_row = f"| {gone.name} | 1 / 0.50 | 2 / 0.50 | | | | | | | | |"  # its curve row, closing the curve table
    previous = previous.replace(f"\n\n{held}", f"\n{curve_row}\n\n{held}")

    folder = moved.run_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 10_000, "eval/normalized_score_mean": 42.0}) + "\n")
    text = report(grid, tmp_path, previous)
    assert f"| {gone.name} | 100000 | 10 |" in text
    assert f"| {gone.name} | 1 / 0.50 | 2 / 0.50 |" in text
    assert f"| {moved.name} | 10000 | 0 |" in text and f"| {moved.name} | 100000 | 10 |" not in text
    assert f"| {moved.name} | 42 / - |" in text
    pointmaze_part = text.split("**Held-out seeds on halfcheetah**")[0]
    assert held in pointmaze_part and "| kept | table |" in pointmaze_part and "Verdict on" not in pointmaze_part
    assert "2 of 9 runs finished" in text
    assert text.count(f"| {gone.name} |") == 2


def test_a_whole_gradient_penalty_run_differs_from_its_cheetah_twin_by_that_switch_only(tmp_path):
    grid = build_grid()
    for run in (r for r in grid if r.group == "cheetah_gp_all"):
        twin = next(r for r in grid if r.group == "cheetah_me" and r.name == run.name.replace("-gpall", ""))
        a, b = _compose(run, tmp_path), _compose(twin, tmp_path)
        assert a.loss.potential_gp_directions == "all" and b.loss.potential_gp_directions == "segment"
        a.loss.potential_gp_directions = "segment"
        a.run_dir = b.run_dir
        assert a == b, run.name


def test_a_guarded_run_differs_from_its_cheetah_twin_by_the_saturation_penalty_only(tmp_path):
    grid = build_grid()
    guarded = [r for r in grid if r.group == "cheetah_guard"]
    assert len(guarded) == 2
    for run in guarded:
        twin = next(r for r in grid if r.group == "cheetah_me" and r.name == run.name.replace("-guard", ""))
        a, b = _compose(run, tmp_path), _compose(twin, tmp_path)
        assert a.loss.saturation_penalty == 1.0 and b.loss.saturation_penalty == 0.0
        a.loss.saturation_penalty = 0.0
        a.run_dir = b.run_dir
        assert a == b, run.name


def test_the_halfcheetah_held_out_comparison_pairs_the_guarded_run_with_rebrac_on_seeds_0_to_2(tmp_path):
    from benchmarks.potential_evidence import HELDOUTS, heldout_lines, heldout_sides

    runs = build_grid()
    sides = heldout_sides(runs, HELDOUTS[1])
    guarded, rebrac = sides.values()
    assert [(r.group, r.seed) for r in guarded] == [("cheetah_guard", 0), ("cheetah_guard_seeds", 1),
                                                    ("cheetah_guard_seeds", 2)]
    assert [(r.group, r.seed) for r in rebrac] == [("cheetah_me", 0), ("cheetah_guard_seeds", 1),
                                                   ("cheetah_guard_seeds", 2)]
    for run in guarded + rebrac:
        assert run.dataset == "halfcheetah-medium-expert-gen-v0"
        a, b = _compose(run, tmp_path), _compose(guarded[0] if run in guarded else rebrac[0], tmp_path)
        assert a.seed == run.seed and a.loss.name == b.loss.name
        assert a.loss.get("saturation_penalty") == b.loss.get("saturation_penalty") == (1.0 if run in guarded else None)
    for run, late in zip(guarded + rebrac, ((30, 30, 30), (20, 20, 20), (10, 10, 10), (30, 30, 30), (30, 30, 30),
                                            (30, 30, 30))):
        _write_evals(run, tmp_path, late)
    text = "\n".join(heldout_lines(runs, tmp_path, HELDOUTS[1]))
    assert text.count("**Held-out seeds on halfcheetah**") == 1
    # diff -10, Welch SE sqrt(100 / 3) = 5.77: lost
    assert "Verdict on seeds 0-2, last three evaluations: **matched** (difference -10.0, 2 SE = 11.5;" in text


def _write_comparison(run, root, score_of_step, last_step):
    """A comparison run's evaluations (and probe rows) every 10k steps up to ``last_step``."""
    import json

    folder = run.run_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"step": s, "eval/normalized_score_mean": score_of_step(s), "eval/num_episodes": 5,
             "probe/grad_share_f": 0.001} for s in range(10_000, last_step + 1, 10_000)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_comparison_is_marked_interim_until_every_run_ends_then_verdicts_on_the_last_ten_evaluations(tmp_path):
    import json

    from benchmarks.long_evidence_report import FINAL_EVAL as LONG_FINAL_EVAL
    from benchmarks.potential_evidence import comparison_final_jobs, comparison_lines

    runs = build_grid()
    comp = [r for r in runs if r.group == "comparison"]
    # the preset 20 above ReBRAC from 210k on (seed spread 1 each), the authors' PPL^R equal to ReBRAC
    base = {0: 50.0, 1: 51.0, 2: 49.0}

    def score(run):
        return lambda s: base[run.seed] + (20.0 if run.name == "ppl_stable-w8" and s > 200_000 else 0.0)

    for run in comp:  # every run at 100k, one of them further
        _write_comparison(run, tmp_path, score(run), 150_000 if run.name == "rebrac" and run.seed == 1 else 100_000)
    text = "\n".join(comparison_lines(runs, tmp_path))
    assert "*Interim, at step 100k of 300k*" in text and "no verdict is read" in text
    assert "The machines that trained the runs are not recorded." in text
    from benchmarks.grid import record_invocation
    record_invocation(tmp_path, {"group": "comparison", "machine": "2-core AMD EPYC, torch 2.13.0+cpu"})
    record_invocation(tmp_path, {"group": "gelu", "machine": "another"})  # another group's invocation
    text = "\n".join(comparison_lines(runs, tmp_path))
    assert "Trained on 2-core AMD EPYC, torch 2.13.0+cpu, one torch thread per run." in text and "another" not in text
    assert "| ReBRAC | 3 | 50.0 ± 0.8 | 50.0, 51.0, 49.0 |" in text
    assert "Mean of the last 10 evaluations (10k-100k)" in text
    assert comparison_final_jobs(runs, tmp_path) == []  # none finished

    for run in comp:
        _write_comparison(run, tmp_path, score(run), 300_000)
    text = "\n".join(comparison_lines(runs, tmp_path))
    assert "Interim" not in text and "At step **300k**" in text
    last_ten = text.split("Mean of the last 10 evaluations (210k-300k)")[1]
    # +20 on every seed, Welch SE sqrt(1/3 + 1/3) = 0.82: beat; the authors' PPL^R equal to ReBRAC: matched
    assert "| ppl_stable (w=8) − ReBRAC | +20.0 ± 0.8 | 3/3 | beat |" in last_ten
    assert "| PPL^R, the authors' f (w=8) − ReBRAC | +0.0 ± 0.8 | 0/3 | matched |" in last_ten
    assert "final policies" not in text

    jobs = comparison_final_jobs(runs, tmp_path)
    assert len(jobs) == 9 and len({j.key for j in jobs}) == 9
    folder = comp[0].run_dir(tmp_path)
    assert {"episodes=100", f"checkpoint={folder / 'checkpoint.pt'}", f"output={folder / LONG_FINAL_EVAL}"} <= set(
        jobs[0].argv)
    for run in comp:  # recipes/evaluate.py's summary of each final policy
        (run.run_dir(tmp_path) / LONG_FINAL_EVAL).write_text(json.dumps(
            {"steps": 300_000, "final_eval": {"normalized_score_mean": base[run.seed], "num_episodes": 100}}))
    assert comparison_final_jobs(runs, tmp_path) == []
    assert "#### The final policies (300k) on 100 episodes each" in "\n".join(comparison_lines(runs, tmp_path))


def test_a_comparison_not_on_this_machine_keeps_its_whole_block_from_the_last_report(tmp_path):
    grid = build_grid()
    previous = report(grid, tmp_path).replace("0 of 9 runs finished", "9 of 9 runs finished")
    previous += "\n\nAt step **300k**, kept\n\n| ReBRAC | 3 | kept |"
    text = report(grid, tmp_path / "elsewhere", previous)
    assert "9 of 9 runs finished" in text and "At step **300k**, kept" in text and "| ReBRAC | 3 | kept |" in text


def test_a_second_grid_driver_on_the_same_runs_exits_in_one_line_and_starts_nothing(tmp_path, capsys):
    import subprocess
    import sys

    import pytest

    from benchmarks.grid import Job, run_jobs

    logs, marker = tmp_path / "logs", tmp_path / "started"
    job = Job("touch", (sys.executable, "-c", f"open({str(marker)!r}, 'w')"))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from ppl_torchrl.atomic import exclusive\n"
                               f"with exclusive({str(logs)!r}):\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit) as exit_:
            run_jobs([job], 1, logs, poll_s=0.01)
        assert exit_.value.code == 2 and not marker.exists()
        assert capsys.readouterr().err.strip().startswith(f"error: {logs} is in use by another process")
    finally:
        holder.kill()
        holder.wait()
    assert run_jobs([job], 1, logs, poll_s=0.01) == [] and marker.exists()  # the lock went with the first driver


def test_every_segment_of_every_group_ends_on_a_checkpoint():
    """``checkpoint.stop_after`` stops as a kill would: a segment that does not end on a checkpoint leaves steps that
    the next segment trains again."""
    from benchmarks.grid import in_segments
    from benchmarks.potential_evidence import EVAL_EVERY, SEGMENTS

    runs = build_grid()
    for group, segment in SEGMENTS.items():
        chosen = [r for r in runs if r.group == group]
        for run, stop in in_segments(chosen, segment):
            assert stop % EVAL_EVERY == 0, (group, stop)  # EVAL_EVERY is every run's checkpoint.every
    assert all(f"checkpoint.every={EVAL_EVERY}" in r.grid_run(Path("/x")).overrides for r in runs)
