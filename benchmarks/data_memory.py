"""Import time, load time and peak memory of a generated 1M-transition D4RL-format dataset.

    python benchmarks/data_memory.py [--steps 1000000] [--obs-dim 29] [--act-dim 8] [--workdir DIR]

Each phase runs in its own Python process so that its peak RSS (``resource.getrusage``,
``ru_maxrss``) is its own: ``baseline`` (imports only), ``generate`` (write the HDF5),
``import`` (first ``make_offline_replay_buffer`` call: validate + stream into the memmap),
``load`` (second call: reuse the memmap) and ``sample`` (1000 batches of 256). The dataset's
in-RAM size is printed next to them for comparison: an importer that held the whole dataset in
RAM would sit at least that far above the baseline.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_now_mib() -> dict:
    """Current anonymous (private heap) and file-backed (memmap/page cache) RSS, Linux only."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("RssAnon:", "RssFile:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def _phase(name: str, args) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    h5 = Path(args.workdir) / "bench.hdf5"
    root = Path(args.workdir) / "cache"
    out: dict = {}
    if name == "baseline":
        import ppl_torchrl.data  # noqa: F401
    elif name == "generate":
        from ppl_torchrl.data import write_d4rl_hdf5

        rng = np.random.default_rng(0)
        n = args.steps
        timeouts = np.zeros(n, bool)
        timeouts[999::1000] = True  # 1000-step episodes, as D4RL's
        write_d4rl_hdf5(h5, {
            "observations": rng.standard_normal((n, args.obs_dim), dtype=np.float32),
            "actions": rng.uniform(-1, 1, (n, args.act_dim)).astype(np.float32),
            "rewards": rng.standard_normal(n, dtype=np.float32),
            "terminals": rng.random(n) < 1e-3,
            "timeouts": timeouts,
        })
        out["file_mib"] = h5.stat().st_size / 2**20
    elif name in ("import", "load"):
        from ppl_torchrl.data import make_offline_replay_buffer

        t1 = time.perf_counter()
        rb = make_offline_replay_buffer(h5, batch_size=256, root=root, progress=False)
        out["call_seconds"] = time.perf_counter() - t1
        out["transitions"] = len(rb)
    elif name == "sample":
        from ppl_torchrl.data import make_offline_replay_buffer

        rb = make_offline_replay_buffer(h5, batch_size=256, root=root, seed=0, progress=False)
        t1 = time.perf_counter()
        for _ in range(1000):
            rb.sample()
        out["sample_ms_per_batch"] = (time.perf_counter() - t1) / 1000 * 1e3
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mib"] = _peak_rss_mib()
    out.update(_rss_now_mib())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--obs-dim", type=int, default=29)
    parser.add_argument("--act-dim", type=int, default=8)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(_phase(args.phase, args)))
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ppl_data_bench_"))
    try:
        rows = {}
        for phase in ("baseline", "generate", "import", "load", "sample"):
            cmd = [sys.executable, __file__, "--phase", phase, "--workdir", str(work), "--steps", str(args.steps),
                   "--obs-dim", str(args.obs_dim), "--act-dim", str(args.act_dim)]
            res = subprocess.run(cmd, check=True, capture_output=True, text=True)
            rows[phase] = json.loads(res.stdout.strip().splitlines()[-1])
        data_mib = args.steps * (2 * args.obs_dim + 2 * args.act_dim + 1) * 4 / 2**20
        print(f"dataset: {args.steps} steps, obs {args.obs_dim}, act {args.act_dim}; "
              f"HDF5 {rows['generate']['file_mib']:.0f} MiB; transitions as float32 (s, a, r, s', a') "
              f"{data_mib:.0f} MiB")
        print(f"{'phase':<10}{'wall s':>10}{'peak RSS MiB':>15}{'above baseline':>16}"
              f"{'end RssAnon':>13}{'end RssFile':>13}")
        base = rows["baseline"]["peak_rss_mib"]
        for phase, r in rows.items():
            print(f"{phase:<10}{r['seconds']:>10.2f}{r['peak_rss_mib']:>15.0f}{r['peak_rss_mib'] - base:>16.0f}"
                  f"{r.get('RssAnon', float('nan')):>13.0f}{r.get('RssFile', float('nan')):>13.0f}")
        print(f"make_offline_replay_buffer call: import {rows['import']['call_seconds']:.2f} s, "
              f"load (cached) {rows['load']['call_seconds']:.3f} s")
        print(f"transitions after timeout handling: {rows['import']['transitions']}; "
              f"sampling: {rows['sample']['sample_ms_per_batch']:.2f} ms per batch of 256")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
