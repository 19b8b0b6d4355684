"""Config refactors change no value: each dataset file holds only what differs from its suite
(recipes/config/dataset_suite/), loss/ppl.yaml builds on loss/rebrac.yaml, and every recipe still resolves every
dataset and loss to the values snapshotted before the move (tests/data/resolved_configs.json, written by
tests/resolved_configs.py)."""
from __future__ import annotations

import json

import pytest
import yaml

import resolved_configs as rc

SNAPSHOT = rc.expand(json.loads(rc.SNAPSHOT.read_text()))


def _assert_unchanged(triples):
    got = rc.resolve(triples)
    for triple in triples:
        old, new = SNAPSHOT[triple], got[triple]
        moved = {k: (old.get(k, "<missing>"), new.get(k, "<missing>"))
                 for k in sorted(old.keys() | new.keys()) if old.get(k, "<missing>") != new.get(k, "<missing>")}
        assert not moved, f"{triple}: (snapshot, now) {moved}"


def test_the_snapshot_covers_every_recipe_dataset_and_loss_it_had():
    recipes = {r for r, _, _ in SNAPSHOT}
    assert recipes == set(rc.RECIPES)
    assert {d for _, d, _ in SNAPSHOT} <= set(rc.datasets()), "a dataset config disappeared"
    assert {l for _, _, l in SNAPSHOT} <= set(rc.losses()), "a loss config disappeared"
    assert len({d for _, d, _ in SNAPSHOT}) >= 50 and len(SNAPSHOT) == len(recipes) * 50 * 7


def test_every_dataset_and_every_loss_resolve_as_before():
    """Every dataset with the default loss, and every loss on one dataset of each suite, in every recipe."""
    datasets = sorted({d for _, d, _ in SNAPSHOT})
    losses = sorted({l for _, _, l in SNAPSHOT})
    one_per_suite = ["antmaze-large-diverse-v2", "hopper-medium-v2", "pen-human-v1", "hopper-random-gen-v0",
                     "pointmaze-umaze-gen-v0"]
    triples = [("ppl_antmaze", d, "ppl") for d in datasets]
    triples += [(r, d, l) for r in rc.RECIPES for d in one_per_suite[:1 if r != "ppl_antmaze" else 5] for l in losses]
    _assert_unchanged(sorted(set(triples)))


@pytest.mark.slow
def test_every_recipe_dataset_and_loss_triple_resolves_as_before():
    _assert_unchanged(sorted(SNAPSHOT))


def _suite_values(name: str) -> dict:
    """The flat values a dataset_suite file sets, its own defaults (another suite) first."""
    raw = yaml.safe_load((rc.CONFIG_DIR / "dataset_suite" / f"{name}.yaml").read_text()) or {}
    values = {}
    for entry in raw.pop("defaults", []):
        if entry != "_self_":
            values.update(_suite_values(entry))
    values.update(rc._flatten(raw))
    return values


@pytest.mark.parametrize("dataset", rc.datasets())
def test_a_dataset_file_starts_from_its_suite_and_holds_only_what_differs(dataset):
    raw = yaml.safe_load((rc.CONFIG_DIR / "dataset" / f"{dataset}.yaml").read_text())
    defaults = raw.pop("defaults", None)
    assert defaults and len(defaults) == 2 and defaults[1] == "_self_", f"{dataset}: defaults {defaults}"
    head, _, package = defaults[0].partition("@")
    assert head.startswith("/dataset_suite/") and package == "_here_", f"{dataset}: defaults {defaults}"
    suite = _suite_values(head.removeprefix("/dataset_suite/"))
    own = rc._flatten(raw)
    assert own.get("dataset.id") == dataset
    repeated = {k: v for k, v in own.items() if k in suite and suite[k] == v}
    assert not repeated, f"{dataset} repeats its suite's values {repeated}"


def test_ppl_builds_on_rebrac_and_adds_only_the_potential():
    rebrac = yaml.safe_load((rc.CONFIG_DIR / "loss" / "rebrac.yaml").read_text())
    ppl = yaml.safe_load((rc.CONFIG_DIR / "loss" / "ppl.yaml").read_text())
    assert ppl.pop("defaults") == ["rebrac", {"/potential@_here_": "authors"}, "_self_"]
    assert {k for k, v in ppl.items() if k in rebrac and rebrac[k] == v} == set(), "ppl.yaml restates rebrac.yaml"
    assert set(ppl) == {"name", "reward_family", "w", "potential_uses_target_actor"}


def test_every_loss_with_the_potential_reads_its_switches_from_one_file():
    """The switches' one home (recipes/config/potential/authors.yaml: the authors' values), in every ppl* loss."""
    switches = yaml.safe_load((rc.CONFIG_DIR / "potential" / "authors.yaml").read_text())
    assert set(switches) == {"potential_bound", "potential_gp", "potential_lipschitz", "potential_gp_directions",
                             "potential_actor_scale", "potential_actor_coef", "potential_steps", "w_anneal_steps",
                             "saturation_penalty"}
    for loss in ("ppl", "ppl_td3_bc", "ppl_iql", "ppl_cql"):
        raw = yaml.safe_load((rc.CONFIG_DIR / "loss" / f"{loss}.yaml").read_text())
        assert {"/potential@_here_": "authors"} in raw["defaults"] or {"/potential@loss": "authors"} in raw["defaults"]
        assert not set(switches) & set(raw.get("loss", raw)), f"{loss}.yaml restates a switch"
    resolved = rc.resolve([("ppl_antmaze", "pointmaze-umaze-gen-v0", loss) for loss in
                           ("ppl", "ppl_td3_bc", "ppl_iql", "ppl_cql")])
    for (_, _, loss), cfg in resolved.items():
        assert {k: cfg[f"loss.{k}"] for k in switches} == switches, loss
