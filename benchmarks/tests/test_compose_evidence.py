"""benchmarks/compose_evidence.py: with ``--potential stable`` the composed side of every pair gets loss=ppl_stable's
potential and the base side is untouched; each run's overrides compose to the recipe config they name."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir

from benchmarks.compose_evidence import PAIRS, overrides
from benchmarks.grid import RECIPES


def _args(tmp_path, potential):
    return SimpleNamespace(runs_dir=tmp_path, steps=40, cql_steps=20, batch_size=32, hidden_dim=16, num_hidden=1,
                           eval_episodes=1, evals=1, potential=potential, cql_rewards="raw",
                           f_out_of_actor=False)


@pytest.mark.parametrize("potential", ["authors", "stable"])
def test_the_composed_side_gets_the_chosen_potential_and_the_base_side_none(tmp_path, potential):
    with initialize_config_dir(str(RECIPES / "config"), version_base="1.3"):
        for base, composed in PAIRS:
            cfg = {loss: compose(config_name="ppl_antmaze", overrides=overrides(_args(tmp_path, potential), loss, 0))
                   for loss in (base, composed)}
            assert "potential_gp" not in cfg[base].loss
            gp, lr_scale = (5.0, 1.0) if potential == "stable" else (0.0, 0.01)
            assert cfg[composed].loss.potential_gp == gp and cfg[composed].optim.potential_lr_scale == lr_scale
            assert cfg[composed].loss.potential_lipschitz == 1.0 and cfg[composed].loss.name == composed


def test_pairs_picks_the_pairs_that_run_in_the_grids_order():
    from benchmarks.compose_evidence import pairs_of

    assert pairs_of(SimpleNamespace(pairs=["iql", "cql"])) == (("cql", "ppl_cql"), ("iql", "ppl_iql"))
    assert pairs_of(SimpleNamespace(pairs=[base for base, _ in PAIRS])) == PAIRS


def test_cql_rewards_antmaze_gives_only_the_cql_pair_corls_antmaze_cql_rewards(tmp_path):
    args = _args(tmp_path, "stable")
    args.cql_rewards = "antmaze"
    with initialize_config_dir(str(RECIPES / "config"), version_base="1.3"):
        for base, composed in PAIRS:
            for loss in (base, composed):
                cfg = compose(config_name="ppl_antmaze", overrides=overrides(args, loss, 0))
                expected = (10.0, -5.0) if base == "cql" else (None, None)
                assert (cfg.dataset.reward_scale, cfg.dataset.reward_bias) == expected, loss


def test_f_out_of_actor_zeroes_only_the_composed_sides_actor_weight(tmp_path):
    args = _args(tmp_path, "stable")
    args.f_out_of_actor = True
    with initialize_config_dir(str(RECIPES / "config"), version_base="1.3"):
        for base, composed in PAIRS:
            cfg = {loss: compose(config_name="ppl_antmaze", overrides=overrides(args, loss, 0)) for loss in (base, composed)}
            assert cfg[composed].loss.potential_actor_coef == 0.0 and cfg[composed].loss.potential_gp == 5.0
            assert "potential_actor_coef" not in cfg[base].loss
