"""fp32 GEMM throughput of torch's default GEMM ("aten") and oneDNN on this CPU, per GEMM of a linear layer.

    python benchmarks/gemm.py                 # GEMM table, then the compiled MLP (compiles twice, ~1 min)
    python benchmarks/gemm.py --no-compile    # GEMM table and the eager MLP only

Prints the CPU model, the torch version and the plan ``ppl_torchrl.gemm`` chooses here, then for each
shape ``M x K x N`` (batch x inputs x outputs of a layer) the GFLOP/s of each backend for each GEMM:
forward ``x W^T``, input gradient ``g W`` (oneDNN reads ``W`` through a transposed view) and weight
gradient ``g^T x``. Timings are interleaved (aten, onednn, aten, ...) and the medians are shown, so load
from elsewhere slows both alike. Then:

* what a routed call costs beyond the GEMM (``gemm.linear`` through the custom operator against a bare
  ``_linear_pointwise`` call, at a small shape);
* oneDNN's forward through ``weight[e].t()`` (how ``ensemble_linear`` reads a stacked member) against a
  contiguous weight, to see whether the view costs a copy;
* a 3-layer MLP (``K -> 256 -> 256 -> 1``) forward + backward by ``torch.func.grad``, eager and compiled
  with inductor (``fullgraph=True``), in steps/s with the plan forced to ``aten`` and to ``onednn``.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

import torch
from torch.nn import functional as F

from ppl_torchrl import gemm

SHAPES = [(1024, 17, 256), (1024, 256, 256), (1024, 256, 1), (256, 29, 256), (256, 256, 256)]


def cpu_name() -> str:
    """``lscpu``'s "Model name" line, else /proc/cpuinfo (via ppl_torchrl.gemm.cpu_model)."""
    if shutil.which("lscpu"):
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
            for line in out.splitlines():
                if line.strip().lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return gemm.cpu_model()


def interleaved(fns: dict, *, rounds: int, min_time: float) -> dict[str, float]:
    """Median seconds per call of each function, timed in turn ``rounds`` times."""
    iters = {}
    for name, fn in fns.items():
        for _ in range(3):
            fn()
        t0 = time.perf_counter()
        fn()
        iters[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-7)))
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(iters[name]):
                fn()
            times[name].append((time.perf_counter() - t0) / iters[name])
    return {name: statistics.median(t) for name, t in times.items()}


def gemm_table(rounds: int, min_time: float) -> None:
    print(f"\nGFLOP/s (median of {rounds} interleaved timings); ratio = onednn / aten")
    print(f"{'M x K x N':>16} | {'forward':^23} | {'grad_input':^23} | {'grad_weight':^23}")
    print(f"{'':>16} | " + " | ".join(f"{'aten':>6} {'onednn':>7} {'ratio':>6}" for _ in gemm.GEMM_KINDS))
    for m, k, n in SHAPES:
        cells = []
        for kind in gemm.GEMM_KINDS:
            a, b = gemm._operands(kind, m, k, n, torch.device("cpu"))
            secs = interleaved({be: (lambda be=be: gemm.gemm_nt(a, b, None, be)) for be in gemm.BACKENDS},
                               rounds=rounds, min_time=min_time)
            gf = {be: 2.0 * m * k * n / s / 1e9 for be, s in secs.items()}
            cells.append(f"{gf['aten']:6.1f} {gf['onednn']:7.1f} {gf['onednn'] / gf['aten']:5.2f}x")
        print(f"{f'{m} x {k} x {n}':>16} | " + " | ".join(cells))


def overheads(rounds: int, min_time: float) -> None:
    lp = torch.ops.mkldnn._linear_pointwise
    x, w, b = torch.randn(256, 29), torch.randn(256, 29), torch.randn(256)
    plan = gemm.GemmPlan.all("onednn")
    secs = interleaved({
        "bare _linear_pointwise": lambda: lp(x, w, b, "none", [], ""),
        "gemm.linear (custom op)": lambda: gemm.linear(x, w, b, plan=plan),
        "torch.ops.ppl_torchrl.linear": lambda: torch.ops.ppl_torchrl.linear(x, w, b, ["onednn"] * 3),
        "F.linear (aten)": lambda: F.linear(x, w, b),
    }, rounds=rounds, min_time=min_time)
    print("\nCost of a routed call at 256 x 29 x 256 (forward, no grad), us per call:")
    for name, s in secs.items():
        print(f"  {name:>30}: {s * 1e6:8.1f}")

    m, k, n = 1024, 256, 256
    xs, stacked = torch.randn(m, k), torch.randn(2, k, n)
    view, contiguous = stacked[0].t(), stacked[0].t().contiguous()
    assert view.data_ptr() == stacked.data_ptr()  # a view: no copy of the member's weight
    secs = interleaved({
        "weight[e].t() (view)": lambda: lp(xs, view, None, "none", [], ""),
        "contiguous [N, K] copy": lambda: lp(xs, contiguous, None, "none", [], ""),
    }, rounds=rounds, min_time=min_time)
    print(f"\noneDNN forward at {m} x {k} x {n} reading an ensemble member's weight, GFLOP/s:")
    for name, s in secs.items():
        print(f"  {name:>30}: {2.0 * m * k * n / s / 1e9:8.1f}")


def mlp_steps(batch: int, k: int, compile_: bool, rounds: int, min_time: float) -> None:
    g = torch.Generator().manual_seed(0)
    sizes = (k, 256, 256, 1)
    params = [(torch.randn(o, i, generator=g) / i ** 0.5, torch.zeros(o)) for i, o in zip(sizes[:-1], sizes[1:])]
    x, y = torch.randn(batch, k, generator=g), torch.randn(batch, 1, generator=g)
    flops = 3 * 2.0 * batch * sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))  # forward + 2 gradient GEMMs

    def make(plan: gemm.GemmPlan):
        def loss(params, x, y):
            h = x
            for i, (w, b) in enumerate(params):
                h = gemm.linear(h, w, b, plan=plan)
                if i < len(params) - 1:
                    h = torch.relu(h)
            return (h - y).square().mean()

        step = lambda params, x, y: torch.func.grad(loss)(params, x, y)  # noqa: E731
        if compile_:
            step = torch.compile(step, fullgraph=True, backend="inductor")
        return step

    steps = {be: make(gemm.GemmPlan.all(be)) for be in gemm.BACKENDS}
    t0 = time.perf_counter()
    for fn in steps.values():
        fn(params, x, y)
    warm = time.perf_counter() - t0
    secs = interleaved({be: (lambda fn=fn: fn(params, x, y)) for be, fn in steps.items()},
                       rounds=rounds, min_time=min_time)
    label = "compiled" if compile_ else "eager"
    cells = ", ".join(f"{be} {1 / s:7.1f} steps/s ({flops / s / 1e9:5.1f} GFLOP/s)" for be, s in secs.items())
    print(f"  {label:>8} batch {batch:4d}, {k:3d}->256->256->1: {cells}; onednn/aten "
          f"{secs['aten'] / secs['onednn']:.2f}x" + (f" [compile {warm:.0f} s]" if compile_ else ""))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timings per cell (median shown)")
    ap.add_argument("--min-time", type=float, default=0.05, help="seconds per timing")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled MLP (compiles take ~1 min)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"CPU: {cpu_name()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, oneDNN available: "
          f"{gemm.onednn_available()}, python {sys.version.split()[0]}")
    if not gemm.onednn_available():
        print("This torch build has no oneDNN fp32 linear kernel: everything runs on aten.")
        return
    t0 = time.perf_counter()
    print(gemm.describe_plan("cpu") + f" [measured in {time.perf_counter() - t0:.2f} s]")
    gemm_table(args.rounds, args.min_time)
    overheads(args.rounds, args.min_time)
    print("\n3-layer MLP, forward + backward by torch.func.grad (GEMM FLOPs only):")
    for batch, k in ((1024, 17), (256, 29)):
        mlp_steps(batch, k, False, args.rounds, args.min_time)
        if not args.no_compile:
            mlp_steps(batch, k, True, args.rounds, args.min_time)


if __name__ == "__main__":
    main()
