"""Every grid driver that rewrites a generated section from its runs leaves the docs alone when none of its runs is
under ``--runs-dir`` (the runs were made on another machine): a report from here would replace measured sections
with empty ones."""
from __future__ import annotations

import importlib

import pytest

FIGURES = ("--figures", "{tmp}")
DRIVERS = {  # driver -> its extra arguments (where its figures go, a file it may also write besides --docs)
    "ogbench_evidence": (*FIGURES, "--summary", "{summary}"),
    "ogbench_evidence --grid double": (*FIGURES, "--summary", "{summary}", "--grid", "double"),
    "compose_evidence": (),
    "long_evidence": FIGURES,
    "finetune": FIGURES,
    "evidence": (*FIGURES, "--no-toy"),
}


@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_a_report_with_no_run_of_the_grid_leaves_the_docs_as_they_are(driver, tmp_path, capsys):
    module = importlib.import_module(f"benchmarks.{driver.split()[0]}")
    docs, summary, runs = tmp_path / "page.md", tmp_path / "results.md", tmp_path / "runs"
    text = "# measured elsewhere\n\n<!-- a:begin (generated; edits here are overwritten) -->\n42\n<!-- a:end -->\n"
    docs.write_text(text)
    summary.write_text(text)
    extra = [a.format(summary=summary, tmp=tmp_path) for a in DRIVERS[driver]]
    assert module.main(["--report-only", "--runs-dir", str(runs), "--docs", str(docs), *extra]) == 0
    assert docs.read_text() == text and summary.read_text() == text
    assert not runs.exists() or not any(runs.iterdir())  # nothing recorded for a report that was not written
    assert "--runs-dir" in capsys.readouterr().out  # says what to do
