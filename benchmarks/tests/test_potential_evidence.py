"""benchmarks/potential_evidence.py: every run of its fixed grid composes to the recipe config it names, the no-BC
runs differ from their BC twins by the actor's BC term alone, and the report has a row for every mechanism run."""
from __future__ import annotations

from hydra import compose, initialize_config_dir

from benchmarks.potential_evidence import MECHANISM_GROUPS, build_grid, report
from benchmarks.grid import RECIPES


def _compose(run, root):
    overrides = [o for o in run.grid_run(root).overrides if not o.startswith("resume=")]
    with initialize_config_dir(str(RECIPES / "config"), version_base="1.3"):
        return compose(config_name="ppl_antmaze", overrides=overrides)


def test_every_grid_run_composes_to_the_setting_it_names(tmp_path):
    runs = build_grid()
    assert len({(r.group, r.name, r.seed) for r in runs}) == len(runs)
    for run in runs:
        cfg = _compose(run, tmp_path)
        assert cfg.loss.name == run.loss and cfg.seed == run.seed and cfg.optim.steps == run.steps
        assert cfg.model.hidden_dim == run.hidden
        if "-w" in run.name:
            assert cfg.hparams.w == float(run.name.rsplit("-w", 1)[1])
        assert (cfg.loss.actor_bc_coef == 0.0) == (run.group == "nobc"), run.name


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


def test_the_report_lists_every_mechanism_run_before_any_has_trained(tmp_path):
    text = report(build_grid(), tmp_path)
    for run in build_grid():
        if run.group in MECHANISM_GROUPS:
            assert f"| {run.name} | 0 | 0 |" in text
    assert "0 of 9 runs finished" in text


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
