"""Generates the project's own offline datasets (``*-gen-v0``) in D4RL-HDF5 and Minari format.

    python recipes/collect.py dataset_id=pointmaze-umaze-gen-v0            # the default dataset
    python recipes/collect.py dataset_id=pointmaze-umaze-mixed-gen-v0      # known-share mixed quality
    python recipes/collect.py dataset_id=all minari=false                  # every generated id
    python recipes/collect.py measure_refs=true                         # re-measure ref_min/ref_max
    python recipes/collect.py dataset_id=cube-single-play-gen-v0          # OGBench's procedure and oracles (npz)
    python recipes/collect.py dataset_id=ogbench                          # the 6 regenerated OGBench datasets

Prints, per dataset: transitions, returns per behaviour, wall time, the array digest (same seed ->
same digest) and where the files went. See docs/datagen.md.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from ppl_torchrl.errors import ConfigError
from ppl_torchrl.training.recipe import hydra_recipe

log = logging.getLogger("collect")


def _ids(spec: str) -> list[str]:
    from ppl_torchrl.datagen import GENERATED_IDS
    from ppl_torchrl.datagen.ogbench import OGBENCH_GENERATED

    known = list(GENERATED_IDS) + list(OGBENCH_GENERATED)
    ids = list(GENERATED_IDS) if spec == "all" else list(OGBENCH_GENERATED) if spec == "ogbench" else \
        [s for s in str(spec).split("+") if s]
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ConfigError(f"Unknown generated dataset id(s) {unknown}. Choose from: {', '.join(known)}, 'all' (the "
                          "project's own) or 'ogbench' (the regenerated OGBench datasets).")
    return ids


def _generate_ogbench(did: str, cfg: DictConfig) -> dict:
    """OGBench's procedure with its oracles (ppl_torchrl.datagen.ogbench): npz files in OGBench's layout, resumable."""
    from ppl_torchrl.datagen.ogbench import generate_ogbench_dataset, ogbench_generated_path

    path = ogbench_generated_path(did, cfg.out_dir)
    if path.exists() and not cfg.force and cfg.num_episodes is None:
        log.info("%s exists at %s (force=true regenerates).", did, path)
        return {}
    if cfg.force:
        path.unlink(missing_ok=True)
    r = generate_ogbench_dataset(did, cfg.out_dir, seed=int(cfg.seed), num_episodes=cfg.num_episodes,
                                 progress=bool(cfg.progress))
    s = {"dataset": did, "train": str(r.train_path), "val": str(r.val_path), "episodes": r.episodes,
         "val_episodes": r.val_episodes, "rows": r.rows, "val_rows": r.val_rows, "redrawn_episodes": r.redrawn_episodes,
         "generation_s": r.seconds, "file_mb": r.train_path.stat().st_size / 2**20}
    log.info("%s: %d episodes, %d rows (+ %d val), %.1f s, %.1f MB -> %s", did, r.episodes, r.rows, r.val_rows,
             r.seconds, s["file_mb"], r.train_path)
    return s


def run(cfg: DictConfig) -> list[dict]:
    """The recipe body (callable without hydra, e.g. from tests)."""
    from ppl_torchrl.training.config import SEED_RANGE, check_int

    check_int("seed", cfg.seed, *SEED_RANGE)
    check_int("num_episodes", cfg.num_episodes, 1, hint=" (or null: the dataset's size)")
    from ppl_torchrl.datagen import generate_dataset, generated_path
    from ppl_torchrl.datagen.pointmaze import measure_reference_returns
    from ppl_torchrl.envs.pointmaze import MAZES

    if cfg.measure_refs:
        refs = {}
        for maze in MAZES:
            refs[f"pointmaze-{maze}"] = measure_reference_returns(f"pointmaze-{maze}", 100, seed=0, progress=cfg.progress)
            log.info("pointmaze-%s: %s", maze, refs[f"pointmaze-{maze}"])
        print(json.dumps(refs, indent=1))
        return [refs]

    reports = []
    for did in _ids(cfg.dataset_id):
        from ppl_torchrl.datagen.ogbench import OGBENCH_GENERATED

        if did in OGBENCH_GENERATED:
            s = _generate_ogbench(did, cfg)
            if s:
                print(json.dumps(s))
                reports.append(s)
            continue
        path = generated_path(did, cfg.out_dir, int(cfg.seed))
        if path.exists() and not cfg.force and cfg.num_episodes is None:
            from ppl_torchrl.datagen import _matches

            if _matches(path, did, int(cfg.seed)):
                log.info("%s is up to date at %s (force=true regenerates).", did, path)
                continue
        t0 = time.perf_counter()
        out = generate_dataset(
            did, path, int(cfg.seed), num_episodes=cfg.num_episodes, backend=cfg.backend,
            minari=bool(cfg.minari), minari_root=cfg.minari_root, progress=bool(cfg.progress),
        )
        s = dict(out.stats, total_time_s=time.perf_counter() - t0, file_mb=Path(path).stat().st_size / 2**20)
        log.info("%s: %d transitions, %.1f s (rollout %.1f s), %.1f MB -> %s", did, s["transitions"],
                 s["total_time_s"], s["wall_time_s"], s["file_mb"], path)
        for name, r in s["returns"].items():
            log.info("  %-8s %4d episodes  return %.1f +- %.1f", name, r["episodes"], r["mean"], r["std"])
        print(json.dumps(s))
        reports.append(s)
    return reports


@hydra_recipe("collect")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
