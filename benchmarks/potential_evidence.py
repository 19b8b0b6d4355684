"""One command for issue 34's measurement: does a well-posed potential (loss=ppl_stable) stay alive and move the
policy, at every w, and does it beat ReBRAC?

    python benchmarks/potential_evidence.py                 # train what is missing (2 runs at a time), then report
    python benchmarks/potential_evidence.py --group mechanism   # only the mechanism grid
    python benchmarks/potential_evidence.py --report-only   # the tables from the runs as they are now
    python benchmarks/potential_evidence.py --plan          # the grid and how far each run got

The grid is fixed here, before any run (no setting is chosen on the evaluation seeds). Every run is
``recipes/ppl_antmaze.py`` on ``pointmaze-medium-mixed-gen-v0`` (70 % of its episodes inefficient on purpose, labelled
per step) at its dataset config's settings (lr 3e-4, batch 256, beta_1 = 0.003, beta_2 = 0.001), compiled, one torch
thread, with the mechanism probe (``ppl_torchrl/training/probe.py``) at every evaluation:

* ``mechanism`` (seed 0, 100k steps, 3 x 64 networks: the CPU budget of one session; the authors' setting was
  measured at 3 x 256): ``ppl_stable`` (gradient penalty 5, f about 1-Lipschitz, f at the critic's lr) at
  w in {1, 3, 8, 16}; its scale, ``loss.potential_lipschitz = 0.3``, at w in {3, 8}; the authors' PPL^R (``ppl``,
  w = 8) and ReBRAC on the same networks and budget;
* ``nobc`` (added 2026-12-04, before any of its runs, after ``mechanism`` showed f inert at w = 8 and 16 from its
  first probe; same seed, budget and networks): the same runs with the actor's BC term off
  (``hparams.actor_bc_coef = 0``), ``ppl_stable`` at w in {3, 8, 16} and ReBRAC. With the BC term on, the BC term
  keeps the policy on the data, the partial-transport constraint holds and f = 0 is the f-step's optimum
  (docs/algorithm.md); with it off only f keeps the policy on the data. So this grid asks whether f does the
  support job when nothing else does (f alive, score held) where ReBRAC without its BC term leaves the data;
* ``gelu`` (added 2026-12-04, before any of its runs, after the ``nobc`` checkpoints showed f's last hidden ReLU
  layer with 1 of 64 units active on any input at w = 8 and 16, so f is a constant that no gradient can revive; 11
  of 64 at w = 3): ``ppl_stable`` at w in {1, 3, 8, 16} with ``model.potential_activation = gelu`` (f's units only;
  the actor and critics keep ReLU), same seed, budget and networks as ``mechanism``. It asks whether f stays alive
  at w >= 8 once its units cannot die;
* ``heldout`` (added 2026-12-04, before any of its runs, after ``gelu``'s w = 3 was the one run inside the
  mechanism's band; same budget and networks as ``mechanism``): that setting (``ppl_stable``, GELU f, w = 3) and
  ReBRAC on seeds 1 and 2, which chose nothing. With their seed-0 runs (``gelu`` / ``mechanism``) they make a
  3-seed comparison at the small budget; seed 0 chose the setting, so the report also states the held-out
  seeds alone. The verdict is the 2-SE rule (``benchmarks/verdict.py``) on the mean of the last three
  evaluations (80k-100k, 15 episodes per run), which a single noisy 5-episode evaluation would not settle; beside
  it, each of the six final policies is scored on 50 more episodes (``recipes/evaluate.py``, evaluation seed 1000,
  never used in training's evaluations), once the grid has trained it;
* ``nobc_all`` (added 2026-12-05, before any of its runs, after ``nobc`` showed ReBRAC holding the data without
  its actor BC term, because the critic's penalty on the next action still keeps Q low off the data; same seed,
  budget and networks as ``mechanism``): both BC terms off (``hparams.actor_bc_coef = 0``,
  ``hparams.critic_bc_coef = 0``, paper eq. 12 without any BC term): ReBRAC is then TD3 with a LayerNorm critic
  ensemble, and ``ppl_stable`` with GELU f at w in {3, 8}. Stated before the runs: if ReBRAC without both terms
  leaves the data (its policy's distance to the data actions grows and its score falls) and f keeps the policy
  near the data and the score up, f does the support job partial transport gives it; if ReBRAC stays on the data,
  there is nothing for f to do on this dataset and the group cannot show an effect either way;
* ``cheetah_me`` (added 2026-12-05, before any of its runs, after ``nobc_all`` showed ReBRAC without both BC terms
  still solving the pointmaze as well as with them, so that dataset has no support job for f): the same question
  on ``halfcheetah-medium-expert-gen-v0`` (``recipes/ppl_mujoco.py``; 100k transitions, half from a medium SAC
  policy with mean return 554, half from its best checkpoint with 2809, labelled per step, so partial transport at
  w = 2 has a known best half: the expert's), seed 0, 100k steps, 3 x 64 networks, the suite's settings (batch 1024,
  lr 1e-3) and the dataset's BC coefficients: ReBRAC, ReBRAC with both BC terms off (TD3 with a LayerNorm
  ensemble), ``ppl_stable`` with GELU f at w = 2 with both BC terms off, and the same with the BC terms on. Stated
  before the runs: offline TD3 without a behaviour constraint is expected to leave the data on medium-expert
  locomotion and score far below ReBRAC; if f does the support job, the BC-free ``ppl_stable`` run keeps its
  policy nearer the expert actions than the medium ones (``dist eff`` below ``dist ineff``) and scores above the
  BC-free ReBRAC run; if it scores with it, f does not replace the BC terms here either;
* ``cheetah_gp_all`` (added 2026-12-05, before any of its 100k runs, after ``cheetah_me`` showed both ``ppl_stable``
  runs collapsing into a corner of the action box, and a 4000-step probe of seed 0 (docs/evidence.md) showed f's
  slope across the policy-to-data segment, which the segment penalty leaves free, driving it there; with the
  penalty on the whole action gradient the same 4000 steps did not collapse with the BC terms on and did without
  them): ``cheetah_me``'s two ``ppl_stable`` runs with ``loss.potential_gp_directions = all``, same seed, budget,
  networks and dataset. Stated before the runs: if the sideways slope was the cause, the BC-on run keeps its policy
  off the box's edge and scores near ReBRAC (31) or above; a BC-free run that still collapses says the penalty
  alone does not do the support job;
* ``cheetah_guard`` (added 2026-12-05, before any of its runs, after ``cheetah_gp_all`` collapsed too, and its probes
  showed f pointing straight at the data (cosine 0.95-0.98) once the policy sat in the corner, where tanh passed no
  gradient to the actor): ``cheetah_me``'s two ``ppl_stable`` runs (GELU f, w = 2, segment penalty) with the actor's
  saturation penalty ``loss.saturation_penalty = 1`` (a hinge on the pre-tanh value beyond |a| = 0.99,
  docs/algorithm.md), same seed, budget, networks and dataset; one value, not tuned. Stated before the runs: if the
  corner was a trap that f could have left (f pulls towards the data once the policy is off it), the guarded BC-on
  run ends off the box's edge (saturated share near ReBRAC's), nearer the expert's actions than the medium ones, and
  scores near ReBRAC (31) or above; if it still scores near the collapsed runs (-2.6) or below BC-free ReBRAC (18),
  the guard alone does not make f useful here;
* ``cheetah_guard_seeds`` and ``cheetah_guard_w`` (added 2026-12-05, before any of their runs, when
  ``cheetah_guard``'s BC-on run had reached 40k without collapsing and scored 26 at 30k-40k against ReBRAC's 30):
  the robustness checks of that one run, whatever its end. ``cheetah_guard_seeds``: it and ReBRAC on seeds 1 and 2,
  which chose nothing (with their seed-0 runs a 3-seed comparison at this budget, reported like ``heldout``: the
  mean of the last three evaluations, the 2-SE rule, on seeds 0-2 and on the held-out seeds alone).
  ``cheetah_guard_w``: it at w in {1, 4, 8} (seed 0), for stability at every w: at w = 1 the balanced constraint
  cannot hold for a deterministic policy and f takes over (``mechanism``'s w = 1); at w = 8, f = 0 is near-optimal
  once the BC terms hold the policy on the data. Stated before the runs: a guard that makes the potential work keeps
  f's share inside 5-80 % at every probe at w = 4 and 8 and the score near ReBRAC's on the held-out seeds;
* ``cheetah_actor_bc`` (added 2026-12-05, before any of its runs, after the known-answer w grid and
  docs/algorithm.md's reading that under the penalty f is an actor-side support constraint): is there a support
  job on the actor's side of ``halfcheetah-medium-expert-gen-v0`` once the critic keeps its BC term? ReBRAC and
  the guarded ``ppl_stable`` (GELU f, w = 2, saturation penalty 1) with the actor's BC term off
  (``hparams.actor_bc_coef = 0``, the critic's kept at 0.1), seed 0, 100k steps, 3 x 64. Stated before the runs: if
  ReBRAC without the actor's term still scores near ReBRAC (31), the critic's term does the support job and an
  actor-side potential has nothing to add on this dataset; if it falls and the guarded potential keeps the score
  up, f does the actor's support job;
* ``comparison`` (seeds 0-2, 300k steps, 3 x 256 networks, as docs/evidence.md's long budget): ``ppl_stable``
  (w = 8) against ReBRAC and the authors' PPL^R. About 1.5 CPU-hours per 100k steps each on a 2-core CPU: a job for
  several sessions or a GPU; it resumes where it stopped. Stated on 2026-12-05, before any of its runs: with both
  BC terms on, f at w = 8 was inert on this dataset from the first probe (``mechanism``, 3 x 64) and carried under
  1 % of the actor's gradient at every probe of the OGBench cube grids (3 x 256), so all three arms are expected to
  match by the 2-SE rule; a preset above ReBRAC here with f's share under 1 % would be seed noise, not f's pull.
  Stated on 2026-12-06, before any of its evaluations was read: the comparison is reported as the long budget's
  (``benchmarks/long_evidence_report.py``): the verdict is on each seed's mean of its last 10 evaluations
  (210k-300k, 50 episodes per run); beside it, the last evaluation alone and each final policy scored again on
  100 episodes (``recipes/evaluate.py``, as the long budget). Before every run reaches 300k the same tables at the
  largest step all nine have reached are marked interim, and no verdict is read from them.

The mechanism runs go to their end in one process each (on a loaded 2-core CPU a compilation took 12 minutes,
too much to pay every 25k steps); the comparison runs advance in segments of 30k steps (``checkpoint.stop_after``,
then a resume) so that an unfinished grid still compares every run at one step. A segment ends on a checkpoint
(a multiple of ``checkpoint.every``, 10k): ``stop_after`` stops as a kill would, so the steps after the last
checkpoint are trained again by the next segment (exactly, but twice). The first 75k steps ran in 25k segments (5k steps
trained twice per segment); from there on 30k. Each run is its own folder under ``--runs-dir`` with ``resume=auto``, so a
relaunch (or a kill) costs only the unfinished segment. The report is section ``potential-evidence`` of
docs/evidence.md.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # `python benchmarks/potential_evidence.py`: the repository root instead of this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.grid import (REPO, RECIPES, GridRun, Job, add_grid_arguments, in_segments, machine,  # noqa: E402
                             plan, read_invocations, record_invocation, run_jobs, segment_jobs)

RECIPE = RECIPES / "ppl_antmaze.py"
DATASET = "pointmaze-medium-mixed-gen-v0"
#: steps per segment (each segment is one process: a compilation, then training to its end)
SEGMENTS = {"mechanism": 100_000, "nobc": 100_000, "gelu": 100_000, "heldout": 100_000, "nobc_all": 100_000,
            "cheetah_me": 100_000, "cheetah_gp_all": 100_000, "cheetah_guard": 100_000,
            "cheetah_guard_seeds": 100_000, "cheetah_guard_w": 100_000, "cheetah_actor_bc": 100_000,
            "comparison": 30_000}
#: the groups reported in the mechanism table (seed 0, 100k steps, 3 x 64 networks, probed)
MECHANISM_GROUPS = ("mechanism", "nobc", "gelu", "nobc_all", "cheetah_me", "cheetah_gp_all", "cheetah_guard",
                    "cheetah_guard_w", "cheetah_actor_bc")
#: the ``cheetah_me`` group's dataset and recipe (every other group: :data:`DATASET` with :data:`RECIPE`)
CHEETAH_ME = "halfcheetah-medium-expert-gen-v0"
EVAL_EVERY = 10_000
EVAL_EPISODES = 5
SECTION = "potential-evidence"
#: the ``heldout`` group: seeds that chose nothing, and the setting they test (``gelu``'s w = 3)
HELDOUT_SEEDS = (1, 2)
GELU_W3 = (("hparams.w", 3), ("model.potential_activation", "gelu"))
#: the held-out comparison's final policies, scored again on more episodes with an evaluation seed of their own
FINAL_EPISODES, FINAL_EVAL_SEED, FINAL_EVAL = 50, 1000, "final_eval_50.json"


@dataclass(frozen=True)
class Run:
    group: str          # one of SEGMENTS' keys
    name: str           # the run's folder and label, e.g. "ppl_stable-w3"
    loss: str
    seed: int
    steps: int
    hidden: int
    settings: tuple = ()  # extra overrides, (key, value) pairs
    dataset: str = DATASET

    @property
    def recipe(self) -> Path:
        return RECIPE if self.dataset == DATASET else RECIPES / "ppl_mujoco.py"

    @property
    def label(self) -> str:
        """The run's name in the tables: its folder name, with its seed where that is not 0."""
        return self.name if self.seed == 0 else f"{self.name} (seed {self.seed})"

    def run_dir(self, root: Path) -> Path:
        return root / self.group / self.name / f"seed{self.seed}"

    def grid_run(self, root: Path) -> GridRun:
        ov = {"loss": self.loss, "dataset": self.dataset, "seed": self.seed, "run_dir": str(self.run_dir(root)),
              "resume": "auto", "optim.steps": self.steps, "model.hidden_dim": self.hidden, "model.num_hidden": 3,
              "eval.every": EVAL_EVERY, "eval.episodes": EVAL_EPISODES, "checkpoint.every": EVAL_EVERY,
              "compile.enabled": "true", "threads": 1, "logger.backend": "", "logger.progress": "false",
              "logger.log_every": 1000, **dict(self.settings)}
        return GridRun(f"{self.group}-{self.name}-seed{self.seed}", self.recipe, self.run_dir(root),
                       tuple(f"{k}={v}" for k, v in ov.items()), self.steps)


def build_grid() -> list[Run]:
    runs = []
    for w in (1, 3, 8, 16):
        runs.append(Run("mechanism", f"ppl_stable-w{w}", "ppl_stable", 0, 100_000, 64, (("hparams.w", w),)))
    runs.append(Run("mechanism", "ppl-w8", "ppl", 0, 100_000, 64, (("hparams.w", 8),)))
    runs.append(Run("mechanism", "rebrac", "rebrac", 0, 100_000, 64))
    for w in (3, 8):
        runs.append(Run("mechanism", f"ppl_stable-K0.3-w{w}", "ppl_stable", 0, 100_000, 64,
                        (("hparams.w", w), ("loss.potential_lipschitz", 0.3))))
    no_bc = (("hparams.actor_bc_coef", 0.0),)
    for w in (3, 8, 16):
        runs.append(Run("nobc", f"ppl_stable-nobc-w{w}", "ppl_stable", 0, 100_000, 64, (("hparams.w", w),) + no_bc))
    runs.append(Run("nobc", "rebrac-nobc", "rebrac", 0, 100_000, 64, no_bc))
    for w in (1, 3, 8, 16):
        runs.append(Run("gelu", f"ppl_stable-gelu-w{w}", "ppl_stable", 0, 100_000, 64,
                        (("hparams.w", w), ("model.potential_activation", "gelu"))))
    for seed in HELDOUT_SEEDS:
        runs.append(Run("heldout", "ppl_stable-gelu-w3", "ppl_stable", seed, 100_000, 64, GELU_W3))
        runs.append(Run("heldout", "rebrac", "rebrac", seed, 100_000, 64))
    no_bc_at_all = (("hparams.actor_bc_coef", 0.0), ("hparams.critic_bc_coef", 0.0))
    runs.append(Run("nobc_all", "rebrac-nobc-all", "rebrac", 0, 100_000, 64, no_bc_at_all))
    for w in (3, 8):
        runs.append(Run("nobc_all", f"ppl_stable-gelu-nobc-all-w{w}", "ppl_stable", 0, 100_000, 64,
                        (("hparams.w", w), ("model.potential_activation", "gelu")) + no_bc_at_all))
    gelu_w2 = (("hparams.w", 2), ("model.potential_activation", "gelu"))
    # the BC-free pair first: it is the group's question, and with two runs at a time it finishes first
    for name, loss, settings in (("hc-me-rebrac-nobc-all", "rebrac", no_bc_at_all),
                                 ("hc-me-ppl_stable-gelu-nobc-all-w2", "ppl_stable", gelu_w2 + no_bc_at_all),
                                 ("hc-me-rebrac", "rebrac", ()), ("hc-me-ppl_stable-gelu-w2", "ppl_stable", gelu_w2)):
        runs.append(Run("cheetah_me", name, loss, 0, 100_000, 64, settings, CHEETAH_ME))
    gp_all = gelu_w2 + (("loss.potential_gp_directions", "all"),)
    for name, settings in (("hc-me-ppl_stable-gelu-gpall-w2", gp_all),
                           ("hc-me-ppl_stable-gelu-gpall-nobc-all-w2", gp_all + no_bc_at_all)):
        runs.append(Run("cheetah_gp_all", name, "ppl_stable", 0, 100_000, 64, settings, CHEETAH_ME))
    guard = gelu_w2 + (("loss.saturation_penalty", 1.0),)
    for name, settings in (("hc-me-ppl_stable-gelu-guard-w2", guard),
                           ("hc-me-ppl_stable-gelu-guard-nobc-all-w2", guard + no_bc_at_all)):
        runs.append(Run("cheetah_guard", name, "ppl_stable", 0, 100_000, 64, settings, CHEETAH_ME))
    for seed in HELDOUT_SEEDS:
        runs.append(Run("cheetah_guard_seeds", "hc-me-ppl_stable-gelu-guard-w2", "ppl_stable", seed, 100_000, 64, guard,
                        CHEETAH_ME))
        runs.append(Run("cheetah_guard_seeds", "hc-me-rebrac", "rebrac", seed, 100_000, 64, (), CHEETAH_ME))
    for w in (4, 8, 1):  # w = 1 last: the regime where a deterministic policy cannot meet the constraint
        runs.append(Run("cheetah_guard_w", f"hc-me-ppl_stable-gelu-guard-w{w}", "ppl_stable", 0, 100_000, 64,
                        (("hparams.w", w),) + guard[1:], CHEETAH_ME))
    no_actor_bc = (("hparams.actor_bc_coef", 0.0),)
    runs.append(Run("cheetah_actor_bc", "hc-me-rebrac-nobc", "rebrac", 0, 100_000, 64, no_actor_bc, CHEETAH_ME))
    runs.append(Run("cheetah_actor_bc", "hc-me-ppl_stable-gelu-guard-nobc-w2", "ppl_stable", 0, 100_000, 64,
                    guard + no_actor_bc, CHEETAH_ME))
    for seed in (0, 1, 2):
        for name, loss in (("ppl_stable-w8", "ppl_stable"), ("rebrac", "rebrac"), ("ppl-w8", "ppl")):
            runs.append(Run("comparison", name, loss, seed, 300_000, 256, (("hparams.w", 8),) if "w8" in name else ()))
    return runs


# ------------------------------------------------------------------------------------------ report
def _rows(run_dir: Path) -> list[dict]:
    from ppl_torchrl.reporting.metrics import read_metrics

    return read_metrics(run_dir)


def _fmt(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if abs(v) >= 1e3 or (v != 0 and abs(v) < 1e-2):
        return f"{v:.1e}"
    return f"{v:.{digits}f}"


def mechanism_row(run: Run, root: Path) -> dict:
    """The mechanism at every probe of a run: f's share of the actor's gradient (min and max over probes), f's largest
    magnitude, whether f stayed non-constant, and, at the last probe, f on efficient vs inefficient data actions,
    the policy's distance to each, the share of data actions where f is active, and the score."""
    rows = _rows(run.run_dir(root))
    probes = [r for r in rows if "probe/grad_share_f" in r or "probe/q_policy" in r]
    evals = [r for r in rows if "eval/normalized_score_mean" in r]
    out = {"run": run.label, "w": dict(run.settings).get("hparams.w"), "steps": max((r["step"] for r in rows), default=0),
           "probes": len(probes)}
    if probes:
        shares = [r["probe/grad_share_f"] for r in probes if "probe/grad_share_f" in r]
        f_mags = [max(abs(r.get("probe/f_policy", 0.0)), abs(r.get("probe/f_data", 0.0))) for r in probes]
        last = probes[-1]
        out.update(share_min=min(shares) if shares else None, share_max=max(shares) if shares else None,
                   f_max=max(f_mags) if shares else None,
                   f_eff=last.get("probe/f_data/efficient"), f_ineff=last.get("probe/f_data/inefficient"),
                   d_eff=last.get("probe/dist/efficient"), d_ineff=last.get("probe/dist/inefficient"),
                   active=last.get("probe/f_active_share"))
        # "constant": f's spread between efficient and inefficient data actions below 1 % of its magnitude
        if out["f_eff"] is not None and out["f_ineff"] is not None and out["f_max"]:
            out["alive"] = abs(out["f_eff"] - out["f_ineff"]) > 0.01 * out["f_max"]
    if evals:
        out["score"] = evals[-1]["eval/normalized_score_mean"]
    checkpoint = run.run_dir(root) / "checkpoint.pt"
    if run.loss != "rebrac" and checkpoint.exists():
        from benchmarks.potential_units import checkpoint_potential_units

        out["units"] = checkpoint_potential_units(checkpoint)
    return out


def _units(counts: dict | None) -> str:
    return "-" if not counts else f"{counts['data']} / {counts['policy']} of {counts['units']}"


def curve_cells(run: Run, root: Path) -> list[str]:
    """``score / share`` at each evaluation step 10k, 20k, ... 100k of a mechanism run ('' where it has not got)."""
    by_step: dict[int, dict] = {}
    for row in _rows(run.run_dir(root)):
        by_step.setdefault(int(row["step"]) // 1000 * 1000, {}).update(row)
    cells = []
    for step in range(EVAL_EVERY, 100_001, EVAL_EVERY):
        row = by_step.get(step, {})
        score, share = row.get("eval/normalized_score_mean"), row.get("probe/grad_share_f")
        cells.append("" if score is None and share is None else f"{_fmt(score, 0)} / {_fmt(share)}")
    return cells


def late_score(run: Run, root: Path, last: int = 3) -> float | None:
    """The mean of a finished run's last ``last`` evaluations (None before it finished)."""
    evals = [r for r in _rows(run.run_dir(root)) if "eval/normalized_score_mean" in r]
    if not evals or not run.grid_run(root).finished():
        return None
    return sum(r["eval/normalized_score_mean"] for r in evals[-last:]) / len(evals[-last:])


@dataclass(frozen=True)
class HeldOut:
    """A 3-seed comparison whose seed 0 chose the setting: each side's seed-0 run (group, name) and the group that
    holds its seeds 1-2 under the same name; the report's paragraph opens with ``title`` and ``intro``."""
    title: str
    intro: str
    dataset: str
    sides: tuple  # ((label, (seed-0 group, name), held-out group), ...)


HELDOUTS = (
    HeldOut("**Held-out seeds**", "(`heldout`: the one setting inside the band, `gelu`'s w = 3, against ReBRAC; same "
            "budget and networks; seed 0 chose the setting).", DATASET,
            (("ppl_stable, GELU f, w = 3", ("gelu", "ppl_stable-gelu-w3"), "heldout"),
             ("ReBRAC", ("mechanism", "rebrac"), "heldout"))),
    HeldOut("**Held-out seeds on halfcheetah**", f"(`cheetah_guard_seeds`, on `{CHEETAH_ME}`: `cheetah_guard`'s BC-on "
            "run, GELU f at w = 2 with the actor's saturation penalty, against ReBRAC; 100k steps, 3 x 64 networks; "
            "seed 0 chose the setting).", CHEETAH_ME,
            (("ppl_stable, GELU f, w = 2, saturation penalty 1", ("cheetah_guard", "hc-me-ppl_stable-gelu-guard-w2"),
              "cheetah_guard_seeds"),
             ("ReBRAC", ("cheetah_me", "hc-me-rebrac"), "cheetah_guard_seeds"))),
)


def heldout_sides(runs: list[Run], spec: HeldOut = HELDOUTS[0]) -> dict[str, list[Run]]:
    """A held-out comparison's two sides, seeds 0-2 each: seed 0 from its own group, seeds 1-2 from the held-out
    group (for ``heldout``: seed 0 from ``gelu`` / ``mechanism``)."""
    def find(group, name, seed):
        return next(r for r in runs if (r.group, r.name, r.seed) == (group, name, seed))

    return {label: [find(*first, 0)] + [find(group, first[1], s) for s in HELDOUT_SEEDS]
            for label, first, group in spec.sides}


def final_eval_jobs(runs: list[Run], root: Path) -> list[Job]:
    """``recipes/evaluate.py`` on each finished run of the held-out comparison not scored yet (its JSON beside the
    checkpoint, written atomically by the recipe)."""
    jobs = []
    for run in (r for spec in HELDOUTS for side in heldout_sides(runs, spec).values() for r in side):
        folder = run.run_dir(root)
        if late_score(run, root) is None or (folder / FINAL_EVAL).exists():
            continue
        argv = (sys.executable, str(RECIPES / "evaluate.py"), f"checkpoint={folder / 'checkpoint.pt'}",
                f"episodes={FINAL_EPISODES}", f"seed={FINAL_EVAL_SEED}", f"output={folder / FINAL_EVAL}")
        jobs.append(Job(f"final evaluation of {run.group}/{run.name}/seed{run.seed}", argv,
                        key=f"eval-{run.group}-{run.name}-seed{run.seed}"))
    return jobs


def final_score(run: Run, root: Path) -> float | None:
    """The normalized score of the run's final policy on :data:`FINAL_EPISODES` episodes (None before it is scored)."""
    import json

    path = run.run_dir(root) / FINAL_EVAL
    return json.loads(path.read_text())["final_eval"]["normalized_score_mean"] if path.exists() else None


def heldout_lines(runs: list[Run], root: Path, spec: HeldOut = HELDOUTS[0]) -> list[str]:
    """A 3-seed comparison (for ``heldout``: ``gelu``'s w = 3 against ReBRAC): seed 0 the seed that chose the
    setting, seeds 1-2 held out; the 2-SE verdict on all three and on the held-out seeds alone, for the stated score
    (the last three evaluations) and for the final policies' 50-episode score."""
    from benchmarks.verdict import compare
    from ppl_torchrl.reporting.aggregate import Cell

    sides = heldout_sides(runs, spec)
    metrics = {"last three evaluations": late_score, f"final policy, {FINAL_EPISODES} episodes": final_score}
    lines = ["", f"{spec.title} {spec.intro} The stated score is the mean of the last three "
             "evaluations (80k-100k, 15 episodes per run); beside it, the final policy on "
             f"{FINAL_EPISODES} more episodes (evaluation seed {FINAL_EVAL_SEED}). Verdict: the difference of means "
             "against 2 standard errors (Welch).", "",
             "| method | score | seed 0 | seed 1 | seed 2 | mean ± std over finished seeds (n) |",
             "|---|---|---:|---:|---:|---|"]
    verdicts = []
    for metric, score_of in metrics.items():
        cells = {}
        for name, side in sides.items():
            by_seed = {r.seed: score_of(r, root) for r in side}
            done = {s: v for s, v in by_seed.items() if v is not None}
            cells[name] = {seeds: Cell("", spec.dataset, name, [done[s] for s in seeds if s in done],
                                       [s for s in seeds if s in done]) for seeds in ((0, 1, 2), HELDOUT_SEEDS)}
            lines.append(f"| {name} | {metric} | " + " | ".join(_fmt(by_seed[s], 1) for s in (0, 1, 2))
                         + f" | {cells[name][(0, 1, 2)].text() if done else '-'} ({len(done)}) |")
        ours, base = (cells[k] for k in sides)
        for seeds, label in (((0, 1, 2), "seeds 0-2"), (HELDOUT_SEEDS, "held-out seeds 1-2")):
            if ours[seeds].n == len(seeds) and base[seeds].n == len(seeds):
                v = compare(ours[seeds], base[seeds], spec.dataset)
                verdicts.append(f"Verdict on {label}, {metric}: **{v.outcome}** (difference {v.diff:+.1f}, "
                                f"2 SE = {2 * v.se:.1f}; higher on {v.wins} of {v.paired} seeds).")
            else:
                verdicts.append(f"Verdict on {label}, {metric}: not yet (runs unfinished).")
    return lines + [""] + [f"* {v}" for v in verdicts]


#: the comparison's arms (run names, in table order) and their labels; every arm is compared with ``rebrac``
COMPARISON_ARMS = {"ppl_stable-w8": "ppl_stable (w=8)", "ppl-w8": "PPL^R, the authors' f (w=8)", "rebrac": "ReBRAC"}
#: the comparison's final policies, scored again on as many episodes as the long budget's (its ``final_eval.json``)
COMPARISON_FINAL_EPISODES = 100
COMPARISON_FIGURE = "potential_comparison.png"


@dataclass(frozen=True)
class Arm:
    """A comparison run as ``benchmarks/long_evidence_report.py``'s tables read one: ``group`` is the arm's name, so
    that runs are grouped (and their series keyed) by arm, not by this grid's group."""
    run: Run

    @property
    def group(self) -> str:
        return self.run.name

    @property
    def seed(self) -> int:
        return self.run.seed

    @property
    def steps(self) -> int:
        return self.run.steps

    def run_dir(self, root: Path) -> Path:
        return self.run.run_dir(root)


def comparison_final_jobs(runs: list[Run], root: Path) -> list[Job]:
    """``recipes/evaluate.py`` on each finished comparison run whose final policy is not scored yet
    (:data:`COMPARISON_FINAL_EPISODES` episodes, the recipe's evaluation seed, as the long budget)."""
    from benchmarks.long_evidence_report import FINAL_EVAL as LONG_FINAL_EVAL, read_final_eval

    jobs = []
    for run in (r for r in runs if r.group == "comparison"):
        folder = run.run_dir(root)
        if not run.grid_run(root).finished() or read_final_eval(folder, run.steps) is not None:
            continue
        argv = (sys.executable, str(RECIPES / "evaluate.py"), f"checkpoint={folder / 'checkpoint.pt'}",
                f"episodes={COMPARISON_FINAL_EPISODES}", "num_envs=10", f"output={folder / LONG_FINAL_EVAL}")
        jobs.append(Job(f"final evaluation of comparison/{run.name}/seed{run.seed}", argv,
                        key=f"eval-comparison-{run.name}-seed{run.seed}"))
    return jobs


def comparison_lines(runs: list[Run], root: Path, docs: Path | None = None, figures: Path | None = None) -> list[str]:
    """The comparison's tables, as the long budget's: every arm against ReBRAC at the largest evaluation step all
    its runs have reached (the score, then the mechanism probe), the mean of each seed's last 10 evaluations, the
    final policies once scored, and the curves (where ``figures`` is given). Marked interim before 300k."""
    from benchmarks.long_evidence_report import (common_step, comparison, figures_block, final_section,
                                                 last_evaluations_section, read_series)

    arms = [Arm(r) for r in runs if r.group == "comparison"]
    series = {(a.group, a.seed): read_series(a.run_dir(root)) for a in arms}
    step = common_step(list(series.values()))
    if step is None:
        return []
    groups: dict[str, list[Arm]] = {}
    for a in arms:
        groups.setdefault(a.group, []).append(a)
    names = [n for n in COMPARISON_ARMS if n in groups]
    target = max(a.steps for a in arms)
    if step < target:
        head = (f"*Interim, at step {step // 1000}k of {target // 1000}k* (the largest evaluation step all "
                f"{len(arms)} runs have reached; one evaluation is 5 episodes): no verdict is read from these tables "
                "before every run reaches its end.")
    else:
        head = (f"At step **{step // 1000}k**, every run's end; one evaluation is 5 episodes. The stated verdict is "
                "the table of each seed's last 10 evaluations.")
    machines = sorted({i["machine"] for i in read_invocations(root) if i.get("group") in ("comparison", "all")
                       and "machine" in i})
    head += (" Trained on " + "; ".join(machines) + ", one torch thread per run." if machines else
             " The machines that trained the runs are not recorded.")
    lines = ["", head, "", *comparison(groups, series, COMPARISON_ARMS, names, step)]
    lines += last_evaluations_section(groups, series, COMPARISON_ARMS, names, step)
    lines += final_section(groups, root, COMPARISON_ARMS, names)
    if figures is not None and docs is not None:
        lines += ["", figures_block(groups, series, COMPARISON_ARMS, names, Path(figures), Path(docs),
                                    name=COMPARISON_FIGURE, alt="pointmaze comparison curves")]
    return lines


def previous_rows(previous: str) -> dict[str, dict[str, str]]:
    """The last report's table rows by the run label in their first cell: ``"mechanism"`` (its second cell is the
    step count) and ``"curve"`` (its cells are ``score / share``)."""
    rows: dict[str, dict[str, str]] = {}
    for line in previous.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or len(cells) != 11 or cells[0] == "run":
            continue
        rows.setdefault(cells[0], {})["mechanism" if cells[1].isdigit() else "curve"] = line
    return rows


def previous_block(previous: str, start: str, stop: str | tuple | None) -> list[str]:
    """The last report's lines from the one starting with ``start`` up to (not including) the next one starting with
    ``stop`` (any of them, for a tuple; to the end where ``stop`` is None), trailing blank lines dropped; [] where
    ``start`` is absent."""
    lines = previous.splitlines()
    i = next((k for k, line in enumerate(lines) if line.startswith(start)), None)
    if i is None:
        return []
    j = next((k for k, line in enumerate(lines[i + 1:], i + 1) if stop is not None and line.startswith(stop)),
             len(lines))
    block = lines[i:j]
    while block and not block[-1].strip():
        block.pop()
    return block


def report(runs: list[Run], root: Path, previous: str = "", docs: Path | None = None,
           figures: Path | None = None) -> str:
    """The section's text from the run folders under ``root``. Run folders are not in the repository, so a run whose
    folder is not under ``root`` keeps its rows (and the held-out and comparison paragraphs theirs) from
    ``previous``, the last report, instead of being reported as never run. The comparison's curves are drawn into
    ``figures`` (linked from ``docs``) where both are given."""
    here = {r: r.run_dir(root).exists() for r in runs}
    old = previous_rows(previous)
    lines = [f"Grid: `benchmarks/potential_evidence.py` (fixed before running). Dataset `{DATASET}`; probe on 2048 fixed "
             "data pairs at every evaluation; compiled update, one torch thread per run. A run whose folder was not on "
             "the machine that wrote this report keeps its rows from the previous report.", ""]
    mech = [r for r in runs if r.group in MECHANISM_GROUPS + ("heldout", "cheetah_guard_seeds")]
    lines += [f"**Mechanism** (seed 0 unless named, 100k steps, 3 x 64 networks; `-nobc`: the actor's BC term off; `-nobc-all`: both BC terms off; `-gelu`: f's units GELU; `-gpall`: the gradient penalty on the whole action gradient; `-guard`: the actor's saturation penalty (1); `hc-me-`: on `{CHEETAH_ME}`, every other run on `{DATASET}`). f's share of the actor's gradient over all probes "
              "(the goal: between 5 % and 80 % at every probe), |f|'s largest value, f on efficient / inefficient "
              "data actions and the policy's distance to each at the last probe, the share of data actions where f is "
              "active beside 1/w (complementary slackness), the live units of f's last hidden layer at the latest checkpoint "
              "(slope above 1e-3 on at least one probe pair, with the data's / the policy's action: "
              "`benchmarks/potential_units.py`), and the last evaluation's score (5 episodes).", "",
              "| run | steps | probes | grad share of f (min - max) | max abs f | f eff / ineff | dist eff / ineff "
              "| f active share (1/w) | f separates | live units data / policy | score |",
              "|---|---:|---:|---|---:|---|---|---|---|---|---:|"]
    for run in mech:
        if not here[run] and "mechanism" in old.get(run.label, {}):
            lines.append(old[run.label]["mechanism"])
            continue
        m = mechanism_row(run, root)
        w = m["w"]
        lines.append(
            f"| {m['run']} | {m['steps']} | {m['probes']} | {_fmt(m.get('share_min'))} - {_fmt(m.get('share_max'))} "
            f"| {_fmt(m.get('f_max'))} | {_fmt(m.get('f_eff'))} / {_fmt(m.get('f_ineff'))} "
            f"| {_fmt(m.get('d_eff'))} / {_fmt(m.get('d_ineff'))} "
            f"| {_fmt(m.get('active'))} ({_fmt(1 / w) if w else '-'}) "
            f"| {'-' if 'alive' not in m else ('yes' if m['alive'] else 'no')} | {_units(m.get('units'))} "
            f"| {_fmt(m.get('score'), 1)} |")
    lines += ["", "Each mechanism run at every evaluation (every 10k steps): score (5 episodes) / f's share of the actor's "
              "gradient.", "", "| run | " + " | ".join(f"{k}k" for k in range(10, 101, 10)) + " |",
              "|---|" + "---|" * 10]
    for run in mech:
        if not here[run] and "curve" in old.get(run.label, {}):
            lines.append(old[run.label]["curve"])
            continue
        cells = curve_cells(run, root)
        if any(c != "" for c in cells):
            lines.append(f"| {run.label} | " + " | ".join(cells) + " |")
    for k, spec in enumerate(HELDOUTS):
        stops = tuple(later.title + " " for later in HELDOUTS[k + 1:]) + ("**Comparison**",)
        kept = previous_block(previous, spec.title + " ", stops)
        all_here = all(here[r] for side in heldout_sides(runs, spec).values() for r in side)
        lines += heldout_lines(runs, root, spec) if all_here or not kept else [""] + kept
    comp = [r for r in runs if r.group == "comparison"]
    kept = previous_block(previous, "**Comparison**", None)  # the comparison is the section's last part
    if kept and not any(here[r] for r in comp):
        return "\n".join(lines + [""] + kept)
    reached = {r: max((row["step"] for row in _rows(r.run_dir(root))), default=0) for r in comp}
    lines += ["", f"**Comparison** (seeds 0-2, 300k steps, 3 x 256 networks): {sum(v >= r.steps for r, v in reached.items())}"
              f" of {len(comp)} runs finished; steps reached: "
              + ", ".join(f"{r.name}/seed{r.seed} {v // 1000}k" for r, v in reached.items()) + "."]
    lines += comparison_lines(runs, root, docs, figures)
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_grid_arguments(p, runs_dir=REPO / "runs" / "potential_evidence")
    p.add_argument("--group", choices=(*SEGMENTS, "all"), default="all",
                   help="which part of the grid to train (the report covers both)")
    p.add_argument("--docs", default=str(REPO / "docs" / "evidence.md"))
    p.add_argument("--figures", default=str(REPO / "docs" / "figures"), help="where the comparison's curves go")
    args = p.parse_args(argv)
    root = Path(args.runs_dir).expanduser().resolve()
    runs = build_grid()
    chosen = [r for r in runs if args.group in ("all", r.group)]
    if args.plan:
        print("\n".join(plan([r.grid_run(root) for r in runs])))
        return 0
    failures = []
    if not args.report_only:
        record_invocation(root, {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "group": args.group,
                                 "jobs": args.jobs, "machine": machine()})
        order = []
        for group, segment in SEGMENTS.items():
            group_runs = [r.grid_run(root) for r in chosen if r.group == group]
            order += in_segments(group_runs, segment) if group_runs else []
        failures = run_jobs(segment_jobs(order), max(1, args.jobs), root / "logs")
        if args.group in ("heldout", "cheetah_guard_seeds", "all"):
            failures += run_jobs(final_eval_jobs(runs, root), max(1, args.jobs), root / "logs")
        if args.group in ("comparison", "all"):
            failures += run_jobs(comparison_final_jobs(runs, root), max(1, args.jobs), root / "logs")
    from benchmarks.markdown import read_section, write_section

    text = report(runs, root, read_section(args.docs, SECTION), Path(args.docs), Path(args.figures))
    write_section(args.docs, SECTION, text)  # under the page's heading "A potential that stays alive (issue 34)"
    print(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
