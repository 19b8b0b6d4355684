"""Does w choose anything? The potential's known-answer problem (``benchmarks/known_answer.py``) over w, for a
deterministic policy (PPL^R's actor) and a stochastic one (PPL^CQL's TanhNormal), with ``loss=ppl_stable``'s
potential (gradient penalty 5, f at the actor's lr) and GELU f units on both (grid ``map``: neural OT's stochastic
map instead). Eleven grids, each fixed here before its run (with its hypothesis and what refutes it) and written to its
own section of docs/evidence.md:

    python benchmarks/known_answer_w.py                 # grid "w", then its table (2 processes: ~5 min on a
                                                        # 2-core Intel Xeon, torch 2.13.0+cpu)
    python benchmarks/known_answer_w.py --grid pull     # grid "pull": w against f's slope bound K
    python benchmarks/known_answer_w.py --grid inner    # grid "inner": K = 10 with 10 f-steps per actor step
    python benchmarks/known_answer_w.py --grid slowf    # grid "slowf": K = 10 with f at a tenth of the actor's lr
    python benchmarks/known_answer_w.py --grid online   # grid "online": K = 10, the f-step on the online actor
    python benchmarks/known_answer_w.py --grid annealk  # grid "annealk": K from 1 to 10 over the first half
    python benchmarks/known_answer_w.py --grid map      # grid "map": a stochastic map T(s, z) in the actor's place
    python benchmarks/known_answer_w.py --grid mapspread  # grid "mapspread": the map started spread, tanh(g + z)
    python benchmarks/known_answer_w.py --grid valuepen   # grid "valuepen": f's values penalised (eps = 0.1)
    python benchmarks/known_answer_w.py --grid optimism   # grid "optimism": optimistic Adam for both players
    python benchmarks/known_answer_w.py --grid inner --trace stochastic,10,3,0   # one cell's path, every 100 steps
    python benchmarks/known_answer_w.py --grid pull --write   # ... and rewrite the grid's section of evidence.md

* ``w`` (run 2026-12-05): w in {1, 1.5, 3, 8} and no potential, K = 1 (the preset's). What partial transport
  predicts: at w = 3 the policy on the good mode, at w = 1 covering the data (bad mode included), f active on about
  1/w of the data's actions. Measured: w moves either policy by under 0.2 and neither reaches the bad mode at w = 1.
* ``pull`` (stated 2026-12-05 before its run): w in {1, 3, 8} against K = ``potential_lipschitz`` in {1, 3, 10}.
  Under the penalty f is a pull of at most K toward the policy's nearest 1/w share of the data (docs/algorithm.md,
  eq. 2). For one action per state that pull is K times (data mass on the far side of the share - mass on the near
  side): at w = 1, between the modes, 0.7 - 0.3 = 0.4 toward the bad mode (the data's median lies in it); at w = 3
  the good mode has room for 0.9 of the policy's mass, so the pull holds the policy on it (0.8 from below, 1 from
  above); at w = 8 the good mode has room for all of it and f vanishes. Q's normalised slope is 0.7 at the good mode
  and 2.7 at the bad one. Hypothesis: w's small effect in grid ``w`` is K = 1 being too weak against Q's slope, not
  a property of partial transport; with K = 10 (4 > 2.7) the deterministic policy does what the transport says: the
  bad mode (the median, balanced W1's answer for one action) at w = 1, the good mode at w = 3 and 8; K = 3 lands
  between the modes at w = 1 (pull 1.2 against a slope of 0.7-2.7), in no data at all. Refuted if at K = 10 the
  deterministic policy's w = 1 centre is not on the bad mode, or w = 3 leaves the good mode. Measured: refuted; at
  K = 3 and 10 the game does not settle at w = 1 and 3 (the centre still sweeps 0.8-2.0 over the second half).
* ``inner`` (stated 2026-12-05 before its run, after grid ``pull`` had shown the deterministic policy still
  swinging by 0.8-2.0 over the second half of all but one K = 3 and 10 run at w = 1 and 3): K = 10, w in {1, 3,
  8}, 10 f-steps per actor step (``potential_steps``, BRAC's several dual steps). Hypothesis: the swing is the
  f-step lagging the actor (a strong pull chases a policy that f no longer describes), so with f near its optimum
  at every actor step the range falls below 0.1 and the policy lands where transport says (w = 1 the bad mode,
  w = 3 and 8 the good one). Refuted if the range stays above 0.1 at w = 1 or 3, or the policy ends elsewhere.
  Measured: refuted; the deterministic policy sweeps more, the stochastic one settles on the bad mode at w = 3.
* ``slowf`` (stated 2026-12-05 before its run, after the first cells of ``inner`` swung from bound to bound): in
  PPL's saddle, as in neural OT (Korotin et al. 2023), the policy is the *inner* player (min over the map, then max
  over f), and neural OT takes several map steps per f-step; ``inner`` did the reverse. Under Adam a step's size is
  about its learning rate, so f at a tenth of the actor's lr (``optim.potential_lr_scale=0.1``) is about one f-step
  per ten actor steps. K = 10, w in {1, 3, 8}, 10 000 steps (f moves as far as in 1000 steps of the other grids).
  Hypothesis: with the actor near its best response to a slowly moving f, the game settles (range below 0.1 over
  the second half) and lands where transport says (w = 1 the bad mode, w = 3 and 8 the good one). Refuted if the
  range stays above 0.1 at w = 1 or 3, or the policy ends elsewhere. Measured: refuted (0.13-2.0 over the second half).
* ``online`` (stated 2026-12-05 before its run, with ``slowf``'s deterministic w = 1 cells swinging too): the
  deterministic f-step reads the *target* actor (the authors' code; tau = 5e-3, about 200 steps behind), so a
  strong f digs its minimum where the policy was and pushes the online actor onward. K = 10, w in {1, 3, 8}, the
  f-step on the online actor (``loss.potential_uses_target_actor=false``), the deterministic policy only (the
  stochastic one's loss already uses its online actor, and it swings too, so the lag cannot be its whole cause).
  Hypothesis: the lag drives the deterministic swing; without it the range falls below 0.1. Refuted if it stays
  above 0.1 at w = 1 or 3. Measured: refuted (0.56-1.7).
* ``annealk`` (stated 2026-12-05 before its run, after ``pull``, ``inner``, ``slowf`` and ``online``: a weak pull
  settles and lets Q cross the gap between the modes, a strong one cycles or walls the policy in where it is): K
  grows linearly from 1 to 10 over the first 1500 steps, then holds at 10 for the last 1500; w in {1, 3, 8}; both
  policies. Hypothesis (a continuation: Q places the policy while f is weak, f then holds it): at w = 3 and 8 the
  policy is on the good mode at the end and rests there (range below 0.1 over the second half, where K = 10); at
  w = 1 the growing pull moves it to the bad mode (the median). Refuted if at w = 3 it leaves the good mode or does
  not rest, or at w = 1 it does not reach the bad mode. Measured: refuted (0.6-2.0 at w = 1 and 3).
* ``map`` (stated 2026-12-05 before its run, after ``annealk``): one cause under all the grids above. A
  deterministic policy is a point mass, which breaks ``pi <= w * data`` at every w (the data have a density); a
  one-bump policy fits under ``w * data`` only where one mode has room for all of its mass (here w >= 1 / 0.3, so
  w = 8 but not 1 or 3). Where no policy of the class is feasible the saddle has no equilibrium and f keeps digging
  under the policy: a cycle under a strong pull, a trap or Q's answer under a weak one, as measured at w = 1 and 3,
  never at w = 8. Neural OT's stochastic map ``a = T(s, z)``, ``z ~ N(0, 1)`` (``NoiseMap`` of known_answer.py,
  trained by PPL^R's own loss and update) can split its mass between the modes, so some map is feasible at every
  w >= 1. Cells: the map with no potential, and K in {1, 10} x w in {1, 3, 8}, 3000 steps. Transport's answer: w = 1
  the data (30 % on the good mode, 70 % on the bad); w = 3 the best third of the data (90 % on the good mode, 10 %
  on the bad mode's upper edge); w = 8 the good mode's upper part (100 %). Hypothesis: at K = 10 (above Q's
  normalised slope, at most ~3.2 at the bad mode) the map lands on that answer and rests: its share of actions on
  the good mode is 0.2-0.4 / 0.8-1.0 / >= 0.9 at w = 1 / 3 / 8, at least 90 % of its actions lie on one of the two
  modes (inside the data), and the good-mode share moves by under 0.1 over the second half. At K = 1 (below Q's
  slope at the bad mode) w = 1 does not keep 70 % on the bad mode. Refuted if at K = 10 any w misses its band,
  leaves the data or does not rest. For the map, ``late_range`` is the good-mode share's range, not the centre's.
  Measured: refuted; the map collapses to one point (on the traced cell, K = 10, w = 3, seed 0, its spread over z
  fell from 0.06 to under 0.01) and behaves as PPL^R's actor: at K = 1 all of it on the good mode at w = 1, 3 and
  8; at K = 10 the point cycles at w = 1 and 3. (The feasibility argument holds for the hard constraint only: under
  the gradient penalty both classes have a rest point; docs/evidence.md.)
* ``mapspread`` (stated 2026-12-05 before its run, after ``map``): the map starts as one point (the actor's last
  layer at U(+-1e-3)), where f's pull is the same for every z, so nothing in the gradient splits it. Started spread
  instead, ``a = tanh(g(s, z) + z)`` (``noise_skip = 1``: at step 0 the map is ``tanh(z)``, over the whole action
  range), samples on either side of a mode feel different pulls from the start. Cells, hypothesis and refutation as
  in ``map`` (K in {1, 10} x w in {1, 3, 8} and no potential, 3000 steps): at K = 10 the map keeps its split and
  lands on transport's answer (good-mode share 0.2-0.4 / 0.8-1.0 / >= 0.9 at w = 1 / 3 / 8, >= 90 % on the modes,
  the share moving by under 0.1 over the second half). Measured: refuted; started as ``tanh(z)``, the map still
  collapses (traced cell K = 10, w = 1, seed 0: its spread over z from ~0.6 to 0.04 within 300 steps), then the
  point cycles (the good-mode share's range 0.9 over the second half at w = 3) or rests off the data (w = 1).
* ``valuepen`` and ``valuepen1`` (stated 2026-12-05 before their runs, after ``mapspread``): under the gradient
  penalty every class has a rest point (docs/evidence.md), and with K = 10 gradient play circles it, as it circles
  the equilibrium of a GAN game whose discriminator's objective is linear in its output (Mescheder et al. 2018).
  PPL's f-step is linear in f. ``value_penalty`` (``ValuePenalised`` of known_answer.py, a prototype, not a library
  switch) adds ``eps / 2 * mean(f(s, pi)^2 + f(s, a)^2)`` to it, making f's problem strongly concave: per action
  ``f* = min(0, (w d - pi) / (eps (pi + d)))``, a soft constraint no deeper than ``-1 / eps``, which f can track, so
  the policy descends a fixed penalised objective instead of chasing a moving well. K = 10, w in {1, 3, 8}, all
  three policies (the map started spread, ``noise_skip = 1``), 3000 steps; ``valuepen``: eps = 0.1 (depth 10,
  above Q's normalised range between the modes, ~2); ``valuepen1``: eps = 1 (depth 1, below it). Hypothesis: at
  eps = 0.1 every policy rests (range below 0.1 at every w); the map lands on transport's answer (good-mode share
  0.2-0.4 with at least 90 % of its actions on the modes at w = 1, 0.8-1.0 at w = 3, >= 0.9 at w = 8); one point,
  whose density exceeds any w times the data's, digs a well of the full depth under itself wherever it is, so it
  rests where Q puts it, inside a pull of K, and w barely moves it. At eps = 1 Q outweighs the constraint and the map
  does not cover the data at w = 1 (good-mode share above 0.5). Refuted if at eps = 0.1 any policy does not rest
  at w = 1 or 3, or the map misses its bands. Measured: refuted at eps = 0.1 (at w = 1 every policy still
  swings, 0.86-1.35, and the map at w = 3 too; the bump rests on the good mode at w = 3); at eps = 1 as stated (25
  of 27 runs rest, all on the good mode, at every w).
* ``optimism`` (stated 2026-12-05 before its run, after ``valuepen``): if the K = 10 cycles are the optimiser's
  (plain gradient steps circle the rest point of a bilinear game, optimistic steps converge to it: Daskalakis et al.,
  ICLR 2018), optimistic Adam for both players (``optimistic_gradients`` of known_answer.py: each gradient replaced
  by ``2 g_t - g_{t-1}``) stops them. The stochastic policy only (its loop is the plain one; the deterministic one
  runs ReBRACUpdate's functional Adam), no value penalty, K = 10, w in {1, 3, 8}, 3000 steps. Hypothesis: the bump
  rests at every w (range below 0.1 over the second half), on the good mode at w = 3 and 8. Refuted if it does not
  rest at w = 1 or 3. Measured: refuted (1.30-1.42 at w = 1, 0.54-1.31 at w = 3).

Seeds :data:`SEEDS`, each grid's ``steps``. The stochastic policy's temperature (``alpha = 0.01``,
fixed) was chosen among 0.1, 0.03 and 0.01 on seed 0 of grid ``w`` (the one that keeps the policy's spread, ~0.07,
below the distance between the modes); nothing else was chosen on any seed.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path

if not __package__:  # `python benchmarks/known_answer_w.py`: the repository root instead of this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.grid import REPO  # noqa: E402


@dataclass(frozen=True)
class Grid:
    section: str                       # docs/evidence.md's generated section
    ws: tuple[float, ...]
    lipschitz: tuple[float, ...]       # K, f's action-slope bound (``potential_lipschitz``)
    no_potential: bool                 # a row without the potential, for reference
    potential_steps: int = 1           # f-steps per actor step
    potential_lr_scale: float = 1.0    # f's learning rate over the actor's
    steps: int = 3000                  # gradient steps per run
    policies: tuple[str, ...] = ("deterministic", "stochastic")   # or "map": a NoiseMap by PPL^R's update
    potential_uses_target_actor: bool = True   # PartialOTLoss's f-step on the target actor (the stochastic
                                               # policy's loss always uses the online one)
    lipschitz_from: float | None = None        # if set, K grows linearly from this value to ``lipschitz`` over the
                                               # run's first half, then holds
    map_noise_skip: float = 0.0                # a map's ``noise_skip`` (known_answer.NoiseMap): 1 starts it spread
    value_penalty: float = 0.0                 # eps of known_answer.ValuePenalised: f's values penalised
    optimistic: bool = False                   # optimistic Adam for both players (the stochastic loop only)


GRIDS = {"w": Grid("known-answer-w", ws=(1.0, 1.5, 3.0, 8.0), lipschitz=(1.0,), no_potential=True),
         "pull": Grid("known-answer-pull", ws=(1.0, 3.0, 8.0), lipschitz=(1.0, 3.0, 10.0), no_potential=False),
         "inner": Grid("known-answer-inner", ws=(1.0, 3.0, 8.0), lipschitz=(10.0,), no_potential=False,
                       potential_steps=10),
         "slowf": Grid("known-answer-slowf", ws=(1.0, 3.0, 8.0), lipschitz=(10.0,), no_potential=False,
                       potential_lr_scale=0.1, steps=10_000),
         "online": Grid("known-answer-online", ws=(1.0, 3.0, 8.0), lipschitz=(10.0,), no_potential=False,
                        policies=("deterministic",), potential_uses_target_actor=False),
         "annealk": Grid("known-answer-annealk", ws=(1.0, 3.0, 8.0), lipschitz=(10.0,), no_potential=False,
                         lipschitz_from=1.0),
         "map": Grid("known-answer-map", ws=(1.0, 3.0, 8.0), lipschitz=(1.0, 10.0), no_potential=True,
                     policies=("map",)),
         "mapspread": Grid("known-answer-mapspread", ws=(1.0, 3.0, 8.0), lipschitz=(1.0, 10.0), no_potential=True,
                           policies=("map",), map_noise_skip=1.0),
         "valuepen": Grid("known-answer-valuepen", ws=(1.0, 3.0, 8.0), lipschitz=(10.0,), no_potential=False,
                          policies=("deterministic", "stochastic", "map"), map_noise_skip=1.0, value_penalty=0.1),
         "valuepen1": Grid("known-answer-valuepen1", ws=(1.0, 3.0, 8.0), lipschitz=(10.0,), no_potential=False,
                           policies=("deterministic", "stochastic", "map"), map_noise_skip=1.0, value_penalty=1.0),
         "optimism": Grid("known-answer-optimism", ws=(1.0, 3.0, 8.0), lipschitz=(10.0,), no_potential=False,
                          policies=("stochastic",), optimistic=True)}
SEEDS = (0, 1, 2)
ALPHA = 0.01
MAP_NOISE = 1         # the map's noise inputs: one is enough to split a one-dimensional action between two modes
PRESET = dict(potential_gp=5.0, potential_activation="gelu")
TRACE_EVERY = 100     # the centre (a map: its good-mode share) is read every this many steps; its range over the
                      # run's second half says whether the policy settled or still swings (the game has not converged)
COLUMNS = (("offset", "centre − good mode", 3), ("late_range", "centre's range, 2nd half", 2),
           ("on_good", "actions on the good mode", 2), ("on_bad", "on the bad mode", 2),
           ("f_data", "f on the data's actions", 3), ("active", "f active on data", 2))

MAP_RANGE = "good-mode share's range, 2nd half"   # what late_range measures for a map (run_cell)
MIXED_RANGE = "range, 2nd half (centre's; a map's good-mode share's)"

Cell = tuple[str, float, "float | None", int]   # (policy, K, w or None for no potential, seed)


def cells(grid: Grid) -> list[Cell]:
    """Every (policy, K, w, seed) of the grid; the no-potential row carries the grid's first K and w None."""
    ws = ((None,) if grid.no_potential else ()) + grid.ws
    return [(p, k, w, s) for p in grid.policies for k in grid.lipschitz for w in ws for s in SEEDS
            if w is not None or k == grid.lipschitz[0]]


def annealed(step: int, *, start: float, end: float, steps: int) -> float:
    """Linear from ``start`` at step 0 to ``end`` at ``steps``, then ``end``."""
    return start + (end - start) * min(1.0, step / steps)


def run_cell(cell: Cell, grid: Grid) -> dict:
    """One run: its :class:`Outcome`, ``late_range`` (max - min over the second half of what the trace reads) and
    ``trace``: ``(step, centre - good mode)`` every :data:`TRACE_EVERY` steps, or for a map (whose centre, z = 0,
    says little of a split) ``(step, share of its actions on the good mode)``."""
    import torch

    from benchmarks.known_answer import LR, centre_offset, good_share, train_deterministic, train_stochastic

    torch.set_num_threads(1)
    policy, k, w, seed = cell
    trace = []
    where = good_share if policy == "map" else centre_offset

    def read(step, actor):
        if step % TRACE_EVERY == 0:
            trace.append((step, where(actor)))

    settings = dict(potential=w is not None, w=w or 3.0, seed=seed, steps=grid.steps, on_step=read,
                    potential_lr=LR * grid.potential_lr_scale)
    if w is not None:
        settings.update(PRESET, potential_lipschitz=k, potential_steps=grid.potential_steps,
                        value_penalty=grid.value_penalty)
        if grid.lipschitz_from is not None:
            settings["lipschitz_schedule"] = partial(annealed, start=grid.lipschitz_from, end=k, steps=grid.steps // 2)
    if policy == "stochastic":
        out = train_stochastic(alpha=ALPHA, lr=LR, optimistic=grid.optimistic, **settings).as_dict()
    elif grid.optimistic:
        raise ValueError(f"optimistic steps run in the stochastic policy's loop only, not for {policy!r}")
    else:
        as_map = dict(noise_dim=MAP_NOISE, noise_skip=grid.map_noise_skip) if policy == "map" else {}
        out = train_deterministic(actor_lr=LR, potential_uses_target_actor=grid.potential_uses_target_actor,
                                  **as_map, **settings).as_dict()
    late = [c for step, c in trace if step > grid.steps // 2]
    out["late_range"] = max(late) - min(late)
    print(f"{policy:13s} K={k:g} w={w} seed={seed}: " + ", ".join(f"{key} {v:.3f}" for key, v in out.items()),
          flush=True)
    return {**out, "trace": trace}


def report(grid: Grid, results: dict) -> str:
    """The table: per policy, K and w, each column's mean ± std over seeds (ddof 0), and 1/w beside f's active share;
    a K column only where the grid varies K."""
    from ppl_torchrl.reporting.tables import mean_std, pm

    with_k = len(grid.lipschitz) > 1
    range_title = None if "map" not in grid.policies else MAP_RANGE if grid.policies == ("map",) else MIXED_RANGE
    titles = [range_title or title if key == "late_range" else title for key, title, _ in COLUMNS]
    head = "| policy | " + ("K | " if with_k else "") + "w | " + " | ".join(titles) + " | 1/w |"
    lines = [head, "|---|" + ("---:|" if with_k else "") + "---|" + "---:|" * (len(COLUMNS) + 1)]
    for policy, k, w in dict.fromkeys(c[:3] for c in cells(grid)):
        runs = [results[(policy, k, w, s)] for s in SEEDS if (policy, k, w, s) in results]
        if not runs:
            continue
        row = [pm(*mean_std(r[key] for r in runs), digits=d) if w is not None or key not in ("active", "f_data")
               else "–"
               for key, _, d in COLUMNS]
        lines.append(f"| {policy} | " + (f"{k:g} | " if with_k else "") + f"{'none' if w is None else f'{w:g}'} | "
                     + " | ".join(row) + f" | {'–' if w is None else f'{1 / w:.2f}'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="w")
    parser.add_argument("--write", action="store_true", help="rewrite the grid's section of docs/evidence.md")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--trace", metavar="POLICY,K,W,SEED",
                        help="run one cell of the grid and print where its centre was every TRACE_EVERY steps")
    args = parser.parse_args(argv)
    grid = GRIDS[args.grid]
    if args.trace:
        policy, k, w, seed = args.trace.split(",")
        out = run_cell((policy, float(k), None if w == "none" else float(w), int(seed)), grid)
        read = "good-mode share" if policy == "map" else "centre − good mode"
        print(f"step  {read}\n" + "\n".join(f"{step:5d}  {c:+.3f}" for step, c in out["trace"]))
        return 0
    todo = cells(grid)
    with get_context("spawn").Pool(args.processes) as pool:
        results = dict(zip(todo, pool.map(partial(run_cell, grid=grid), todo, chunksize=1)))
    table = report(grid, results)
    print(table)
    if args.write:
        from benchmarks.markdown import write_section
        from ppl_torchrl.machine import cpu_model

        import torch
        command = "python benchmarks/known_answer_w.py" + ("" if args.grid == "w" else f" --grid {args.grid}")
        body = (f"`{command} --write` ({len(SEEDS)} seeds x {grid.steps} steps per cell, "
                f"{cpu_model()}, torch {torch.__version__}); mean ± std over seeds (ddof 0).\n\n{table}")
        write_section(REPO / "docs" / "evidence.md", grid.section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
