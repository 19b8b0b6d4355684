"""benchmarks/ogbench_evidence.py: its grids' runs (where each lives, what each trains); the report needs real runs
and is exercised by the script itself."""
from __future__ import annotations

from pathlib import Path

from benchmarks import ogbench_evidence as og


def _overrides(run, root):
    return dict(item.split("=", 1) for item in run.overrides(root))


def test_the_authors_grid_keeps_its_folders_and_settings():
    root = Path("/runs")
    runs = og.build_grid()
    assert {(r.group, r.seed) for r in runs} == {(g, s) for g in ("ppl", "rebrac") for s in og.SEEDS}
    ppl = next(r for r in runs if r.group == "ppl" and r.seed == 1)
    assert ppl.run_dir(root) == root / "ppl" / "seed1"  # the 2026-12-01 runs' folders
    assert _overrides(ppl, root)["hparams.w"] == "8.0" and _overrides(ppl, root)["loss"] == "ppl"
    assert "hparams.w" not in _overrides(next(r for r in runs if r.group == "rebrac"), root)


def test_the_preset_grid_trains_ppl_stable_at_w8_beside_its_own_rebrac_in_its_own_folder():
    root = Path("/runs")
    runs = og.build_grid("preset")
    assert {(r.group, r.seed) for r in runs} == {(g, s) for g in ("ppl_stable", "rebrac") for s in og.SEEDS}
    stable = next(r for r in runs if r.group == "ppl_stable" and r.seed == 2)
    ov = _overrides(stable, root)
    assert stable.run_dir(root) == root / "preset" / "ppl_stable" / "seed2"
    assert ov["loss"] == "ppl_stable" and ov["hparams.w"] == "8.0" and ov["optim.steps"] == str(og.STEPS)
    rebrac = next(r for r in runs if r.group == "rebrac" and r.seed == 2)
    assert rebrac.run_dir(root) == root / "preset" / "rebrac" / "seed2"  # never the authors' grid's ReBRAC folder
    assert len({r.grid_run(root).name for r in og.build_grid() + runs}) == 12  # job names (log files) differ too
    assert og.GRIDS["preset"].section != og.GRIDS["authors"].section  # its own docs section


def test_the_cube_double_grid_trains_the_preset_and_rebrac_on_task1_in_segments_of_25k_in_its_own_folder():
    root = Path("/runs")
    runs = og.build_grid("double")
    assert {(r.group, r.seed) for r in runs} == {(g, s) for g in ("ppl_stable", "rebrac") for s in og.SEEDS}
    for r in runs:
        ov = _overrides(r, root)
        assert ov["dataset"] == "cube-double-play-gen-singletask-task1-v0"
        assert r.run_dir(root) == root / "double" / r.group / f"seed{r.seed}"
        assert ov["optim.steps"] == str(og.STEPS) and ov["model.hidden_dim"] == "256"
        assert ov.get("hparams.w") == ("8.0" if r.group == "ppl_stable" else None)
    # every run reaches 25k before any goes further
    jobs = og.jobs_to_run(runs, root)
    assert [j.argv[-1] for j in jobs[:len(runs)]] == ["checkpoint.stop_after=25000"] * len(runs)
    names = {r.grid_run(root).name for g in og.GRIDS for r in og.build_grid(g)}
    assert len(names) == 18 and len({og.GRIDS[g].section for g in og.GRIDS}) == 3


def test_each_grid_prints_the_fql_paper_row_of_its_own_task():
    single, double = og._published_lines(og.GRIDS["preset"]), og._published_lines(og.GRIDS["double"])
    assert "`cube-single-play`" in single[0] and "default task (task2)" in single[0]
    assert "`cube-double-play`" in double[0] and "| task 1 |" in double[0]
    rebrac = next(line for line in double if line.startswith("| ReBRAC"))
    assert rebrac == "| ReBRAC | 45 ± 6 | 12 ± 1 |"  # FQL paper Tables 2-3, cube-double-play task 1 and 5-task mean
