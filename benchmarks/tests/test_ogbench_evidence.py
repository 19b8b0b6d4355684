"""benchmarks/ogbench_evidence.py: its two grids' runs (where each lives, what each trains); the report needs real runs
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
    assert og.GRIDS["preset"][1] != og.GRIDS["authors"][1]  # its own docs section
