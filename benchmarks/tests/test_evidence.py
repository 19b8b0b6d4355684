"""benchmarks/evidence.py end to end at the smoke budget, and the report pieces it is built from."""
from __future__ import annotations

import json
import math
import re

import pytest

from benchmarks.evidence_report import make_cell
from benchmarks.markdown import replace_section
from benchmarks.verdict import compare
from ppl_torchrl.reporting.aggregate import Cell, RunResult


def load_evidence():
    import benchmarks.evidence

    return benchmarks.evidence


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from ppl_torchrl.datagen import generate_dataset

    path = tmp_path_factory.mktemp("data") / "umaze-tiny.hdf5"
    generate_dataset("pointmaze-umaze-gen-v0", path, seed=0, num_episodes=4, episode_steps=60, progress=False)
    return path


def _row_numbers(docs: str, dataset: str, method: str) -> list[float]:
    """The numbers of the results-table row of (dataset, method): score mean, std, success mean, std."""
    for line in docs.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] == dataset and cells[1] == method:
            return [float(x) for x in re.findall(r"-?\d+\.\d+", " ".join(cells[4:]))]
    raise AssertionError(f"no table row for {dataset} / {method}")


@pytest.mark.slow
def test_smoke_budget_end_to_end(tmp_path, tiny_dataset):
    ev = load_evidence()
    runs, docs, figs = tmp_path / "runs", tmp_path / "evidence.md", tmp_path / "figs"
    docs.write_text("# Evidence\n\nHand-written intro.\n")
    argv = ["--budget", "smoke", "--runs-dir", str(runs), "--docs", str(docs), "--figures", str(figs),
            "--no-toy", "--no-progress", "--override", f"dataset.path={tiny_dataset}"]
    assert ev.main(argv) == 0

    results = [json.loads(p.read_text()) for p in sorted(runs.rglob("results.json"))]
    # 2 algorithms x 2 seeds, plus PPL at w=3 x 2 seeds (w=8 and ReBRAC are shared with the table).
    assert len(results) == 6
    assert {(r["algorithm"], r["config"]["loss"].get("w"), r["seed"]) for r in results} == {
        ("ppl", 8.0, 0), ("ppl", 8.0, 1), ("ppl", 3.0, 0), ("ppl", 3.0, 1), ("rebrac", None, 0), ("rebrac", None, 1)}
    assert all(r["steps"] == 30 and r["final_eval"]["num_episodes"] == 1 for r in results)

    text = docs.read_text()
    assert text.startswith("# Evidence\n\nHand-written intro.\n")
    for algorithm, w, label in (("ppl", 8.0, "PPL^R (w=8)"), ("rebrac", None, "ReBRAC")):
        group = [r["final_eval"] for r in results if r["algorithm"] == algorithm and r["config"]["loss"].get("w") == w]
        expected = []
        for key, scale in (("normalized_score_mean", 1.0), ("success_rate", 100.0)):
            vals = [scale * e[key] for e in group]
            mean = sum(vals) / len(vals)
            expected += [mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))]
        got = _row_numbers(text, "pointmaze-umaze-gen-v0", label)
        assert got == pytest.approx(expected, abs=0.051), (label, got, expected)

    for name in ("evidence_curves.png", "evidence_w_ablation.png"):
        png = figs / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 300_000
        assert f"](figs/{name})" in text
    assert (runs / "timing.json").exists()

    # A second invocation trains nothing, keeps the hand-written text and replaces (not duplicates) the section.
    docs.write_text(docs.read_text() + "\nHand-written outro.\n")
    assert ev.main([*argv, "--report-only"]) == 0
    again = docs.read_text()
    assert again.count("<!-- evidence-results:begin") == 1 and again.count("<!-- evidence-results:end -->") == 1
    assert "Hand-written intro." in again and again.rstrip().endswith("Hand-written outro.")
    assert len(list(runs.rglob("results.json"))) == 6


def test_grid_shares_runs_between_table_and_ablation(tmp_path):
    ev = load_evidence()
    budget = ev.BUDGETS["small"]
    specs = ev.build_grid(budget, tmp_path)
    # 6 algorithms x 2 datasets x 3 seeds + PPL at the 4 other w values x 3 seeds.
    assert len(specs) == 6 * 2 * 3 + 4 * 3
    assert len({s.run_dir for s in specs}) == len(specs)
    assert [s.seed for s in specs] == sorted(s.seed for s in specs)  # seed-major: partial grids hold whole seeds
    cql = next(s for s in specs if s.algorithm == "cql").overrides(budget)
    assert "loss.num_random=4" in cql and "optim.steps=1500" in cql and "eval.every=500" in cql
    assert not any(o.startswith("hparams.w") for o in next(s for s in specs if s.algorithm == "rebrac").overrides(budget))


def test_bad_arguments_fail_clearly():
    ev = load_evidence()
    with pytest.raises(SystemExit, match="unknown"):
        ev.budget_from_args(ev.parse_args(["--algorithms", "ppl,sac"]))
    with pytest.raises(SystemExit, match="--ws"):
        ev.budget_from_args(ev.parse_args(["--ws", "3,x"]))
    with pytest.raises(SystemExit, match="--name"):
        ev.main(["--name", "../x", "--report-only"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        ev.main(["--override", "device", "--report-only"])


def _cell(values, seeds=None):
    return Cell(suite="", dataset="d", method="m", values=list(values), seeds=list(seeds or range(len(values))))


def test_verdict_rule_by_hand():
    # diff = 10, sample variances 1 and 1 with n = 3: se = sqrt(2/3) = 0.816 -> beat.
    v = compare(_cell([11, 12, 13]), _cell([1, 2, 3]))
    assert v.outcome == "beat" and v.diff == pytest.approx(10.0) and v.se == pytest.approx(math.sqrt(2 / 3))
    assert (v.wins, v.paired) == (3, 3)
    # diff = 1 < 2 se = 2 * sqrt(2 * 4 / 3) -> matched; the mirror image is lost.
    assert compare(_cell([0, 2, 4]), _cell([-1, 1, 3])).outcome == "matched"
    assert compare(_cell([1, 2, 3]), _cell([11, 12, 13])).outcome == "lost"
    with pytest.raises(ValueError, match="both sides"):
        compare(_cell([]), _cell([1.0]))


def test_make_cell_refuses_runs_without_the_metric():
    ok = RunResult("ppl", "d", 0, 10, {"normalized_score_mean": 4.0, "success_rate": 0.5})
    bad = RunResult("ppl", "d", 1, 10, {"success_rate": 0.5}, source="x/results.json")
    cell = make_cell([ok, RunResult("ppl", "d", 1, 10, {"normalized_score_mean": 8.0})], "normalized_score_mean")
    assert (cell.mean, cell.std, cell.seeds) == (6.0, 2.0, [0, 1])
    with pytest.raises(ValueError, match="x/results.json"):
        make_cell([ok, bad], "normalized_score_mean")


def test_replace_section():
    once = replace_section("intro\n", "s", "A")
    assert once.startswith("intro\n\n<!-- s:begin") and "\nA\n<!-- s:end -->" in once
    twice = replace_section(once + "outro\n", "s", "B")
    assert "A" not in twice.split("intro")[1].split("outro")[0].replace("begin", "")
    assert twice.count("<!-- s:begin") == 1 and twice.endswith("outro\n") and "\nB\n" in twice
    with pytest.raises(ValueError, match="broken"):
        replace_section("<!-- s:end -->\n", "s", "C")
    with pytest.raises(ValueError, match="section name"):
        replace_section("", "bad name", "C")


def test_finished_runs_of_another_budget_are_not_reused(tmp_path):
    ev = load_evidence()
    budget = ev.BUDGETS["smoke"]
    spec = ev.build_grid(budget, tmp_path)[0]
    spec.run_dir.mkdir(parents=True)
    (spec.run_dir / "results.json").write_text(json.dumps({
        "algorithm": spec.algorithm, "dataset": spec.dataset, "seed": spec.seed, "steps": 999,
        "final_eval": {}, "config": {"optim": {"batch_size": budget.batch_size}}}))
    with pytest.raises(SystemExit, match="another budget"):
        ev.run_grid([spec], budget, progress=False)
