"""The resolved config of every (recipe, dataset, loss) triple, for the test that config refactors change no value.

`python tests/resolved_configs.py` rewrites tests/data/resolved_configs.json from the configs as they are now:
run it only when a resolved value is meant to change (and say so in the commit). The snapshot is stored as
flat `dotted.key -> value` maps, split into what every triple of a recipe shares and what each triple adds,
so that it stays small and a failing comparison names the keys that moved.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "recipes" / "config"
SNAPSHOT = Path(__file__).resolve().parent / "data" / "resolved_configs.json"
# the recipes whose config has the `dataset` and `loss` groups in its defaults list
RECIPES = ("ppl_antmaze", "ppl_mujoco", "onestep", "ppl_finetune", "quickstart")
_MISSING = "<missing>"


def datasets() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "dataset").glob("*.yaml"))


def losses() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "loss").glob("*.yaml"))


def _flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def resolve(triples) -> dict[tuple[str, str, str], dict]:
    """Flat resolved configs (hydra's own `hydra:` node left out) of (recipe, dataset, loss) triples."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    out = {}
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        for recipe, dataset, loss in triples:
            cfg = compose(config_name=recipe, overrides=[f"dataset={dataset}", f"loss={loss}"])
            out[(recipe, dataset, loss)] = _flatten(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
    return out


def all_triples(dataset_names=None, loss_names=None) -> list[tuple[str, str, str]]:
    return [(r, d, l) for r in RECIPES for d in (dataset_names or datasets()) for l in (loss_names or losses())]


def _delta(row: dict, base: dict) -> dict:
    own = {k: v for k, v in sorted(row.items()) if k not in base or base[k] != v}
    own.update({k: _MISSING for k in sorted(base.keys() - row.keys())})
    return own


def _apply(base: dict, delta: dict) -> dict:
    row = {**base, **delta}
    return {k: v for k, v in row.items() if v != _MISSING}


def compress(flat: dict[tuple[str, str, str], dict], reference_loss: str = "ppl") -> dict:
    """Per recipe: the keys every triple shares, each dataset's change to them (with the reference loss), each
    loss's change (on the first dataset), and what each triple differs from that prediction by."""
    snapshot = {}
    for recipe in RECIPES:
        rows = {k[1:]: v for k, v in flat.items() if k[0] == recipe}
        names_d = sorted({d for d, _ in rows})
        names_l = sorted({l for _, l in rows})
        first = rows[(names_d[0], reference_loss)]
        common = {k: v for k, v in first.items() if all(k in r and r[k] == v for r in rows.values())}
        by_dataset = {d: _delta(rows[(d, reference_loss)], common) for d in names_d}
        by_loss = {l: _delta(rows[(names_d[0], l)], first) for l in names_l}
        residual = {}
        for (d, l), row in sorted(rows.items()):
            own = _delta(row, _apply(_apply(common, by_dataset[d]), by_loss[l]))
            if own:
                residual[f"{d} {l}"] = own
        snapshot[recipe] = {"common": dict(sorted(common.items())), "by_dataset": by_dataset,
                            "by_loss": by_loss, "residual": residual}
    return snapshot


def expand(snapshot: dict) -> dict[tuple[str, str, str], dict]:
    out = {}
    for recipe, part in snapshot.items():
        for d, d_delta in part["by_dataset"].items():
            for l, l_delta in part["by_loss"].items():
                row = _apply(_apply(part["common"], d_delta), l_delta)
                out[(recipe, d, l)] = _apply(row, part["residual"].get(f"{d} {l}", {}))
    return out


def dump(snapshot: dict) -> str:
    """JSON with one line per dataset, loss or triple (small diffs when a value is meant to change)."""
    lines = ["{"]
    for i, (recipe, part) in enumerate(sorted(snapshot.items())):
        lines.append(f" {json.dumps(recipe)}: {{")
        lines.append(f"  \"common\": {json.dumps(part['common'], sort_keys=True)},")
        for j, section in enumerate(("by_dataset", "by_loss", "residual")):
            items = sorted(part[section].items())
            lines.append(f"  {json.dumps(section)}: {{")
            lines += [f"   {json.dumps(k)}: {json.dumps(v, sort_keys=True)}{',' if n < len(items) - 1 else ''}"
                      for n, (k, v) in enumerate(items)]
            lines.append("  }" + ("," if j < 2 else ""))
        lines.append(" }" + ("," if i < len(snapshot) - 1 else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> int:
    # The snapshot's own triples (the 50 datasets and 7 losses it was made with: tests/test_resolved_configs.py checks
    # that coverage); all triples only when there is none yet.
    triples = sorted(expand(json.loads(SNAPSHOT.read_text()))) if SNAPSHOT.exists() else all_triples()
    flat = resolve(triples)
    snapshot = compress(flat)
    assert expand(json.loads(dump(snapshot))) == flat, "the snapshot does not expand back to the configs"
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(dump(snapshot))
    print(f"wrote {SNAPSHOT} ({len(flat)} resolved configs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
