"""Where the compiled PPL^R update's time goes, against the GEMM limit: the profile behind docs/speed.md's reading of
the ">= 80 % of the GEMM limit" goal.

    python benchmarks/profile_update.py --shape both

For each shape it compiles the library's PPL^R update (``benchmarks/speed.py``'s ``ppl_compiled_resident`` column:
batches indexed from in-memory tensors, so the replay buffer is not in the profile), times ``--steps`` updates
without the profiler, then profiles as many with inductor's kernel profile on (``cpp.enable_kernel_profile``: each
generated kernel and each extern GEMM is a profiler event) and sorts the self time into:

* ``gemm``: the GEMMs the graph calls (``bmm`` / ``baddbmm`` of the critic ensemble, ``mm`` / ``addmm``);
* ``adam``: inductor's fused ``_foreach`` kernels (Adam's moments and steps, the soft target ``lerp_``);
* ``elementwise``: every other fused kernel (activations, LayerNorm, the losses' reductions, their gradients);
* ``wrapper``: inductor's wrapper around the kernels; ``guards``: Dynamo's cache lookup (guard evaluation) per call;
* ``outside``: everything else (the batch indexing and copies, the target-noise draw, Python around the call).

It also prints the GEMMs' own rate inside the graph (the update's GEMM FLOPs over the ``gemm`` time), against the
square-GEMM limit ``benchmarks/speed.py`` measures: the update cannot beat its GEMMs' rate at its own shapes,
whatever the overheads around them. The kernel profile slows the update a little, so the shares are of the
profiled run and the steps/s of the unprofiled one.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # `python benchmarks/profile_update.py`: the repository root instead of this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402

from benchmarks import speed  # noqa: E402

GEMM_OPS = ("bmm", "baddbmm", "addmm", "_mm_out", "mm_out", "aten::mm")
CATEGORIES = ("gemm", "adam", "elementwise", "wrapper", "guards", "outside")


def category(name: str) -> str:
    if "cpp_fused" in name:
        return "adam" if "_foreach" in name else "elementwise"
    if any(op in name for op in GEMM_OPS):
        return "gemm"
    if name == "inductor_wrapper_call":
        return "wrapper"
    if name == "TorchDynamo Cache Lookup":
        return "guards"
    return "outside"


def profile_shape(shape: str, steps: int) -> dict:
    from torch._inductor import config as inductor_config
    from torch.profiler import ProfilerActivity, profile

    inductor_config.cpp.enable_kernel_profile = True
    inductor_config.profiler_mark_wrapper_call = True
    obs, act, batch = speed.SHAPES[shape]
    with tempfile.TemporaryDirectory() as tmp:
        path = speed.make_dataset(Path(tmp), obs, act, 20_000)
        buffer = speed.make_buffer(path, batch, Path(tmp) / "cache", "cpu")
        run = speed.ours_runner("ppl", obs, act, buffer, "cpu", compiled=True,
                                sample=speed.resident_sampler(buffer, batch, "cpu"))
        print(f"{shape}: compiling ...", file=sys.stderr, flush=True)
        run(6)  # both schedules (with and without the delayed actor step) compiled
        limit = speed.measure_gemm("aten", *speed.GEMM_SHAPE)
        start = time.perf_counter()
        run(steps)
        steps_per_s = steps / (time.perf_counter() - start)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run(steps)
    shares = dict.fromkeys(CATEGORIES, 0.0)
    for event in prof.key_averages():
        # the graph-call and region events enclose the kernels (their self time is small): counted as outside
        shares[category(event.key)] += event.self_cpu_time_total / 1e6
    total = sum(shares.values())
    flops = speed.update_flops(obs, act, batch)
    return {"shape": shape, "steps_per_s": steps_per_s, "limit_gflops": limit,
            "flops": flops, "shares": {k: v / total for k, v in shares.items()},
            "gemm_gflops_in_graph": flops * steps / shares["gemm"] / 1e9 if shares["gemm"] else float("nan")}


def report(r: dict) -> str:
    at_limit = r["limit_gflops"] * 1e9 / r["flops"]
    shares = ", ".join(f"{k} {100 * v:.1f} %" for k, v in r["shares"].items())
    return (f"{r['shape']}: {r['steps_per_s']:.1f} steps/s = {100 * r['steps_per_s'] / at_limit:.0f} % of the GEMM "
            f"limit ({r['limit_gflops']:.0f} GFLOP/s, {r['flops'] / 1e9:.2f} GFLOP per update)\n"
            f"  profiled self time: {shares}\n"
            f"  the graph's GEMMs run at {r['gemm_gflops_in_graph']:.0f} GFLOP/s = "
            f"{100 * r['gemm_gflops_in_graph'] / r['limit_gflops']:.0f} % of the square-GEMM limit")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=(*speed.SHAPES, "both"), default="both")
    p.add_argument("--steps", type=int, default=100, help="updates timed, then as many profiled")
    args = p.parse_args(argv)
    machine = speed.machine_info("cpu")
    print(f"compiled PPL^R update on {machine['cpu_model']} ({machine['cpus']} CPUs, {machine['torch_threads']} torch "
          f"threads), torch {machine['torch']}")
    for shape in speed.SHAPES if args.shape == "both" else (args.shape,):
        print(report(profile_shape(shape, args.steps)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
