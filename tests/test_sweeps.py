"""Sweeps: the sweep/launcher configs, the aggregation into paper tables, and a real multirun.

The end-to-end test launches a real 2 losses x 2 seeds grid through hydra-submitit-launcher's local
executor (no mocks), aggregates it, then "kills" one run (re-created with checkpoint.stop_after) and
relaunches the sweep: only that run may be trained again, and it must resume, not restart.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppl_torchrl.reporting.aggregate import (
    collect_local, csv_table, load_results, markdown_tables, run_from_wandb,
    suite_tables, summarize, write_outputs,
)
from ppl_torchrl.evaluation.published import REFERENCE, REFERENCE_TOTALS, SUITE_ORDER, reference
from ppl_torchrl.reporting.metrics import read_curve, seed_band

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "recipes" / "config"


# ----------------------------------------------------------------------------------- helpers
def write_run(root: Path, algorithm: str, dataset: str, seed: int, score: float, w: float | None = 8.0,
              curve: list[tuple[int, float]] = ()) -> Path:
    """A run folder as the trainer leaves it: results.json (+ metrics.jsonl eval rows)."""
    run_dir = root / algorithm / dataset / (f"w{w}" if w is not None else "") / f"seed{seed}"
    run_dir.mkdir(parents=True)
    loss = {"name": algorithm, **({"w": w} if w is not None else {})}
    results = {"algorithm": algorithm, "dataset": dataset, "seed": seed, "steps": 100, "train_wall_time_s": 1.0,
               "final_eval": {"return_mean": score / 100, "normalized_score_mean": score, "normalized_score_std": 0.0,
                              "success_rate": score / 100, "returns": [1.0, 2.0]},
               "config": {"seed": seed, "loss": loss, "dataset": {"id": dataset}, "sweep_name": "unit"}}
    (run_dir / "results.json").write_text(json.dumps(results))
    rows = [{"step": s, "train/loss_qvalue": 1.0} for s, _ in curve] + \
           [{"step": s, "eval/normalized_score_mean": v} for s, v in curve]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def pop_std(values):
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


# ----------------------------------------------------------------------------------- reference table
KNOWN_TOTAL_DEVIATIONS = {("mujoco", "bc"): -1.0, ("mujoco", "onestep"): -1.0, ("adroit", "rebrac"): 0.1}


def test_reference_cells_sum_to_the_printed_totals():
    for suite, totals in REFERENCE_TOTALS.items():
        for method, printed in totals.items():
            cells = [reference(method, d) for d in SUITE_ORDER[suite]]
            if not all(cells):
                continue  # e.g. Adroit PPL^R: only the total is known
            deviation = round(sum(c.mean for c in cells) - printed, 2)
            assert deviation == pytest.approx(KNOWN_TOTAL_DEVIATIONS.get((suite, method), 0.0), abs=1e-6), (suite, method)


def test_reference_ids_are_registered_datasets():
    from ppl_torchrl.registry import get_dataset_spec

    for method, cells in REFERENCE.items():
        for dataset_id in cells:
            assert get_dataset_spec(dataset_id).suite in SUITE_ORDER
    assert reference("ppl", "antmaze-large-play-v2") == (76.8, 4.0)
    assert reference("ppl", "antmaze-umaze-v2").std is None  # the source prints a garbled "± 14"
    assert reference("ppl", "pointmaze-umaze-gen-v0") is None


def test_fql_paper_ogbench_table_is_consistent_and_resolves_every_id_form():
    from ppl_torchrl.evaluation.published import OGBENCH_ENVIRONMENTS, OGBENCH_TASKS

    assert len(OGBENCH_TASKS) == 10 and len(SUITE_ORDER["ogbench"]) == 50
    for env, tasks in OGBENCH_TASKS.items():
        for method, per_env in OGBENCH_ENVIRONMENTS.items():
            # Table 3's task means average to Table 2's environment mean up to the rounding of the printed cells
            # (each printed to +-0.5: at most 1 apart; the largest gap is 0.6)
            assert sum(reference(method, t).mean for t in tasks) / 5 == pytest.approx(per_env[env].mean, abs=1.0)
    assert reference("rebrac", "cube-single-play-singletask-task2-v0") == (92.0, 4.0)
    assert reference("rebrac", "cube-single-play-singletask-v0") == (92.0, 4.0)       # default task = task 2
    assert reference("rebrac", "cube-single-play-gen-singletask-v0") == (92.0, 4.0)   # regenerated: published data's
    assert reference("fql", "puzzle-3x3-play-singletask-v0") == (16.0, 5.0)           # puzzle's default task is 4
    assert reference("fql", "antsoccer-arena-navigate-singletask-task1-v0") == (77.0, 4.0)
    assert reference("ppl", "cube-single-play-singletask-task2-v0") is None
    assert reference("rebrac", "pointmaze-medium-navigate-singletask-v0") is None  # not in the FQL paper


def test_ogbench_table_prints_tasks_and_environment_means_beside_the_fql_paper(tmp_path):
    scores = [80.0, 90.0, 100.0, 70.0, 60.0]
    for k, s in enumerate(scores, start=1):
        for seed in (0, 1):
            write_run(tmp_path, "rebrac", f"cube-single-play-gen-singletask-task{k}-v0", seed, s + 10 * seed, w=None)
    write_run(tmp_path, "rebrac", "cube-single-play-gen-singletask-v0", 0, 0.0, w=None)  # the alias: not a 6th task
    for k in (1, 2):  # 2 of scene's 5 tasks: no environment row
        write_run(tmp_path, "rebrac", f"scene-play-singletask-task{k}-v0", 0, 50.0, w=None)
    md = markdown_tables(summarize(collect_local([tmp_path])))
    assert "| cube-single-play-gen-singletask-v0 | 0.0 ± 0.0 (n=1) | 92.0 ± 4.0 (published data) |" in md
    assert "| scene-play-singletask-task2-v0 | 50.0 ± 0.0 (n=1) | 50.0 ± 13.0 |" in md and "scene-play (5 tasks)" not in md
    assert "| cube-single-play-gen-singletask-task2-v0 | 95.0 ± 5.0 (n=2) | 92.0 ± 4.0 (published data) |" in md
    assert f"| **cube-single-play-gen (5 tasks)** | {sum(scores) / 5 + 5:.1f} | 91.0 ± 2.0 (published data) |" in md
    assert "**total**" not in md and "FQL paper" in md


# ----------------------------------------------------------------------------------- aggregation
def test_summarize_mean_std_totals_and_reference(tmp_path):
    ppl = {"antmaze-umaze-v2": [90.0, 100.0, 80.0], "antmaze-large-play-v2": [70.0, 50.0, 60.0]}
    rebrac = {"antmaze-umaze-v2": [95.0, 99.0]}
    for dataset, scores in ppl.items():
        for seed, s in enumerate(scores):
            write_run(tmp_path, "ppl", dataset, seed, s, curve=[(10, s / 2), (20, s)])
    for seed, s in enumerate(rebrac["antmaze-umaze-v2"]):
        write_run(tmp_path, "rebrac", "antmaze-umaze-v2", seed, s, w=None)
    cells = summarize(collect_local([tmp_path]))
    got = {(c.method, c.dataset): c for c in cells}
    assert set(got) == {("ppl", "antmaze-umaze-v2"), ("ppl", "antmaze-large-play-v2"), ("rebrac", "antmaze-umaze-v2")}
    umaze = got[("ppl", "antmaze-umaze-v2")]
    assert umaze.mean == pytest.approx(90.0) and umaze.std == pytest.approx(math.sqrt(200 / 3))
    assert umaze.seeds == [0, 1, 2] and umaze.ref_mean == 98.0
    assert got[("rebrac", "antmaze-umaze-v2")].std == pytest.approx(2.0)
    # paper row order within the suite: umaze before large-play
    assert [c.dataset for c in cells if c.method == "ppl"] == ["antmaze-umaze-v2", "antmaze-large-play-v2"]

    tables = suite_tables(cells)["antmaze"]
    assert tables["totals"]["ppl"]["total"] == pytest.approx(150.0) and tables["totals"]["ppl"]["complete"]
    assert not tables["totals"]["rebrac"]["complete"]            # rebrac lacks large-play
    assert tables["totals"]["ppl"]["ref_total"] is None           # 2 of 6 datasets: no paper total beside it

    md = markdown_tables(cells)
    assert "| antmaze-umaze-v2 | 90.0 ± 8.2 (n=3) | 98.0 | 97.0 ± 2.0 (n=2) | 97.8 ± 1.0 |" in md
    assert "| **total** | 150.0 | – | 97.0 (partial: 1 datasets) | – |" in md

    rows = list(csv.DictReader(io.StringIO(csv_table(cells))))
    row = next(r for r in rows if r["method"] == "ppl" and r["dataset"] == "antmaze-large-play-v2")
    assert float(row["mean"]) == pytest.approx(60.0) and float(row["std"]) == pytest.approx(pop_std([70, 50, 60]))
    assert row["seeds"] == "0 1 2" and float(row["paper_mean"]) == 76.8 and float(row["paper_std"]) == 4.0

    written = write_outputs(cells, tmp_path / "out")
    assert (tmp_path / "out" / "table.md").read_text() == md
    assert [p.name for p in written["bars"]] == ["bars_antmaze.png"]
    assert [p.name for p in written["curves"]] == ["curves_antmaze.png"]
    assert (tmp_path / "out" / "curves_antmaze.png").stat().st_size > 1000


def test_other_metric_and_w_sweep_labels(tmp_path):
    for w, scores in {3.0: [10.0, 20.0], 12.0: [40.0, 60.0]}.items():
        for seed, s in enumerate(scores):
            write_run(tmp_path, "ppl", "antmaze-large-diverse-v2", seed, s, w=w)
    cells = summarize(collect_local([tmp_path]))
    assert {c.method: c.mean for c in cells} == {"ppl@w=3": 15.0, "ppl@w=12": 50.0}
    assert all(c.ref_mean == 76.6 for c in cells)                  # the paper's PPL^R beside every w
    assert "PPL^R (w=12) (ours)" in markdown_tables(cells)
    success = summarize(collect_local([tmp_path]), metric="success_rate")
    assert {c.method: c.mean for c in success} == {"ppl@w=3": pytest.approx(0.15), "ppl@w=12": pytest.approx(0.5)}
    assert all(c.ref_mean is None for c in success)                # the paper reports normalized scores only


def test_duplicates_and_runs_without_the_metric_are_left_out(tmp_path):
    write_run(tmp_path / "a", "ppl", "hopper-medium-v2", 0, 50.0)
    write_run(tmp_path / "b", "ppl", "hopper-medium-v2", 0, 99.0)   # the same seed again (e.g. also on wandb)
    broken = write_run(tmp_path / "c", "ppl", "hopper-medium-v2", 1, 0.0)
    data = json.loads((broken / "results.json").read_text())
    data["final_eval"] = None                                         # a run without evaluation
    (broken / "results.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning):
        cells = summarize(collect_local([tmp_path / "a", tmp_path / "b", tmp_path / "c"]))
    assert [(c.method, c.values) for c in cells] == [("ppl", [50.0])]


def test_bad_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="sweep_root"):
        collect_local([tmp_path / "missing"])
    bad = tmp_path / "run" / "results.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_results(bad)
    bad.write_text(json.dumps({"algorithm": "ppl"}))
    with pytest.raises(KeyError, match="final_eval"):
        load_results(bad)
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        read_curve(tmp_path / "run")
    assert markdown_tables([]).startswith("No finished runs")


def test_wandb_records_become_runs():
    config = {"seed": 3, "loss": {"name": "ppl", "w": 12}, "dataset": {"id": "antmaze-large-diverse-v2"},
              "sweep_name": "w_ablation"}
    summary = {"final/normalized_score_mean": 71.5, "final/success_rate": 0.715, "_step": 1000000, "final/x": "s"}
    run = run_from_wandb(config, summary, source="wandb:me/proj/abc")
    assert (run.algorithm, run.dataset, run.seed, run.w, run.sweep, run.steps) == \
        ("ppl", "antmaze-large-diverse-v2", 3, 12.0, "w_ablation", 1000000)
    assert run.final == {"normalized_score_mean": 71.5, "success_rate": 0.715}
    assert run_from_wandb(config, {"_step": 5}) is None              # crashed / unfinished: no final eval
    with pytest.raises(KeyError, match="loss.name"):
        run_from_wandb({"seed": 0}, summary)


def test_seed_band_uses_the_steps_every_seed_has():
    steps, mean, std = seed_band([([10, 20, 30], [1.0, 2.0, 3.0]), ([10, 20], [3.0, 6.0])])
    assert steps == [10, 20] and mean == [2.0, 4.0] and std == [1.0, 2.0]
    assert seed_band([([], [])]) == ([], [], [])


# ----------------------------------------------------------------------------------- sweep configs
def compose(config_name: str, overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


def _values(param: str) -> list[str]:
    param = str(param)
    if param.startswith("range("):
        start, stop = (int(x) for x in param[len("range("):-1].split(","))
        return [str(i) for i in range(start, stop)]
    return param.split(",")


@pytest.mark.parametrize("sweep, recipe, runs", [
    ("antmaze_table1", "ppl_antmaze", 60), ("mujoco_table2", "ppl_mujoco", 90),
    ("adroit_table3", "ppl_mujoco", 120), ("w_ablation", "ppl_antmaze", 120), ("smoke", "ppl_antmaze", 4),
])
def test_sweep_grid_and_run_dirs(sweep, recipe, runs):
    cfg = compose(recipe, [f"+sweep={sweep}"])
    params = {k: _values(v) for k, v in cfg.hydra.sweeper.params.items()}
    assert math.prod(len(v) for v in params.values()) == runs
    assert str(cfg.resume) == "auto"
    assert params["seed"] == (["0", "1"] if sweep == "smoke" else ["0", "1", "2", "3", "4"])
    for d in params["dataset"]:
        assert (CONFIG_DIR / "dataset" / f"{d}.yaml").exists(), d
    # run_dir: a function of the grid point only (stable across relaunches) and unique per job
    corners = [[(k, x) for x in dict.fromkeys([v[0], v[-1]])] for k, v in params.items()]
    dirs = set()
    for combo in itertools.product(*corners):
        job = compose(recipe, [f"+sweep={sweep}"] + [f"{k}={v}" for k, v in combo])
        run_dir = str(job.run_dir)
        assert run_dir == str(compose(recipe, [f"+sweep={sweep}"] + [f"{k}={v}" for k, v in combo]).run_dir)
        assert run_dir.startswith(f"runs/{sweep}/") and "${" not in run_dir
        assert job.hydra.sweep.subdir == run_dir[len(f"runs/{sweep}/"):] + "/hydra"
        dirs.add(run_dir)
    assert len(dirs) == len(list(itertools.product(*corners)))


def test_w_ablation_w_reaches_the_loss():
    cfg = compose("ppl_antmaze", ["+sweep=w_ablation", "hparams.w=3.0", "seed=2", "dataset=antmaze-large-play-v2"])
    assert cfg.loss.w == 3.0 and cfg.run_dir == "runs/w_ablation/ppl/antmaze-large-play-v2/w3.0/seed2"
    cfg = compose("ppl_antmaze", ["+sweep=w_ablation", "loss.w=5", "dataset=antmaze-umaze-v2"])
    assert cfg.run_dir == "runs/w_ablation/ppl/antmaze-umaze-v2/w5/seed0" and cfg.logger.group.endswith("-w5")


@pytest.mark.parametrize("launcher, key, expected", [
    ("submitit_slurm", "gpus_per_node", 1), ("submitit_slurm", "timeout_min", 240), ("submitit_slurm", "mem_gb", 24),
    ("submitit_slurm", "max_num_timeout", 3), ("submitit_local", "cpus_per_task", 6), ("ray", "ray.remote.num_gpus", 1),
])
def test_launcher_resources_come_from_the_sweep(launcher, key, expected):
    from omegaconf import OmegaConf

    cfg = compose("ppl_antmaze", ["+sweep=antmaze_table1", f"hydra/launcher={launcher}"])
    assert OmegaConf.select(cfg.hydra.launcher, key) == expected
    mujoco = compose("ppl_mujoco", ["+sweep=mujoco_table2", "hydra/launcher=submitit_slurm"])
    assert mujoco.hydra.launcher.mem_gb == 32
    plain = compose("ppl_antmaze", ["hydra/launcher=submitit_slurm"])     # no sweep config: the defaults
    assert plain.hydra.launcher.gpus_per_node == 1 and plain.hydra.launcher.timeout_min == 720


# ----------------------------------------------------------------------------------- a real multirun
TINY = ["optim.steps=20", "eval.every=10", "checkpoint.every=10", "logger.log_every=5"]


def _launch(sweep_root: Path, extra: list[str] = ()) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "recipes/ppl_antmaze.py", "-m", "+sweep=smoke", "hydra/launcher=submitit_local",
           f"sweep_root={sweep_root}", *TINY, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


RUN_FILES = ("results.json", "checkpoint.pt", "metrics.jsonl", "metrics.csv")


@pytest.mark.slow
def test_submitit_local_multirun_aggregate_and_relaunch(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install '.[sweep]'")
    root = tmp_path / "smoke"
    _launch(root)
    runs = {(a, s): root / a / "pointmaze-umaze-gen-v0" / f"seed{s}" for a in ("ppl", "rebrac") for s in (0, 1)}
    results = {}
    for key, run_dir in runs.items():
        assert (run_dir / "hydra" / ".hydra" / "overrides.yaml").exists()      # hydra's job folder inside run_dir
        results[key] = json.loads((run_dir / "results.json").read_text())
        assert results[key]["steps"] == 20 and results[key]["config"]["sweep_name"] == "smoke"
        assert results[key]["seed"] == key[1] and results[key]["algorithm"] == key[0]
    assert any((root / ".submitit").iterdir())                                   # it went through submitit

    # The aggregate table's numbers, checked against the results.json files by hand.
    proc = subprocess.run([sys.executable, "recipes/aggregate.py", str(root), "--out", str(tmp_path / "table")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["method"]: r for r in csv.DictReader(open(tmp_path / "table" / "table.csv"))}
    assert set(rows) == {"ppl", "rebrac"}
    for algo in ("ppl", "rebrac"):
        scores = [results[(algo, s)]["final_eval"]["normalized_score_mean"] for s in (0, 1)]
        assert float(rows[algo]["mean"]) == pytest.approx(sum(scores) / 2)
        assert float(rows[algo]["std"]) == pytest.approx(abs(scores[0] - scores[1]) / 2)
        assert rows[algo]["n_seeds"] == "2" and rows[algo]["seeds"] == "0 1"
        mean, std = sum(scores) / 2, abs(scores[0] - scores[1]) / 2
        assert f"{mean:.1f} ± {std:.1f} (n=2)" in proc.stdout
    assert (tmp_path / "table" / "curves_pointmaze-gen.png").exists()
    assert (tmp_path / "table" / "bars_pointmaze-gen.png").exists()

    # Kill one run after its step-10 checkpoint: its folder is as a killed job leaves it.
    killed = runs[("ppl", 1)]
    uninterrupted = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    for item in killed.iterdir():
        if item.is_file():
            item.unlink()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    subprocess.run([sys.executable, "recipes/ppl_antmaze.py", "+sweep=smoke", f"sweep_root={root}", "loss=ppl", "dataset=pointmaze-umaze-gen-v0",
                    "seed=1", "checkpoint.stop_after=10", *TINY], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=200)
    assert (killed / "checkpoint.pt").exists() and not (killed / "results.json").exists()
    prefix = (killed / "metrics.jsonl").read_bytes()
    before = {k: {f: (d / f).stat().st_mtime_ns for f in RUN_FILES} for k, d in runs.items() if d != killed}

    _launch(root)                                                               # the same command again
    for key, mtimes in before.items():                                          # finished runs: untouched
        assert {f: (runs[key] / f).stat().st_mtime_ns for f in RUN_FILES} == mtimes, key
    resumed = json.loads((killed / "results.json").read_text())
    assert resumed["steps"] == 20
    log = (killed / "metrics.jsonl").read_bytes()
    assert log.startswith(prefix)                                               # resumed at step 10, not restarted
    rows = [json.loads(line) for line in log.decode().splitlines()]
    assert [r["step"] for r in rows] == [r["step"] for r in uninterrupted]
    drop = "train/steps_per_second"
    assert [{k: v for k, v in r.items() if k != drop} for r in rows] == \
           [{k: v for k, v in r.items() if k != drop} for r in uninterrupted]  # exact resume on CPU


def test_metrics_jsonl_has_one_reader_that_skips_a_line_being_written(tmp_path):
    from ppl_torchrl.reporting.metrics import read_metrics

    assert read_metrics(tmp_path) == []
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 1}) + "\n\n" + json.dumps({"step": 2}) + '\n{"step": 3, "eval/')
    assert read_metrics(tmp_path) == [{"step": 1}, {"step": 2}]  # the last line is still being written
    path.write_text(json.dumps({"step": 1}) + "\nnot json\n" + json.dumps({"step": 2}) + "\n")
    with pytest.raises(ValueError, match="metrics.jsonl:2 is not a JSON line"):
        read_metrics(tmp_path)
