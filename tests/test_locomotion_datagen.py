"""Generated locomotion datasets (hopper/halfcheetah/walker2d x random/medium/medium-replay/
medium-expert ``-gen-v0``) from the committed SAC checkpoints: contents, episode semantics,
reproducibility, the TorchRL load path, and the behaviour-policy training recipe."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mujoco")

from ppl_torchrl.data import make_offline_replay_buffer, read_d4rl_hdf5
from ppl_torchrl.datagen import GENERATED_IDS, generate_dataset
from ppl_torchrl.datagen._behavior_net import load_actor
from ppl_torchrl.datagen.locomotion import (
    LOCOMOTION_DATASETS,
    POLICY_DIR,
    _component_sizes,
    generate_locomotion,
)
from ppl_torchrl.datagen.writers import array_digest
from ppl_torchrl.registry import get_dataset_spec

KINDS = ("random", "medium", "medium-replay", "medium-expert")
ENVS = {"hopper": (11, 3, 6, 6), "halfcheetah": (17, 6, 9, 9), "walker2d": (17, 6, 9, 9)}  # obs, act, nq, nv
N = 600


def _episodes(terminals: np.ndarray, timeouts: np.ndarray) -> list[slice]:
    ends = np.flatnonzero(terminals | timeouts)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [slice(s, e + 1) for s, e in zip(starts, ends)]


@pytest.fixture(scope="module")
def hopper_files(tmp_path_factory):
    """Every hopper kind at N transitions, written to HDF5."""
    root = tmp_path_factory.mktemp("loco")
    out = {}
    for kind in KINDS:
        path = root / f"hopper-{kind}.hdf5"
        gen = generate_dataset(f"hopper-{kind}-gen-v0", path, seed=0, num_transitions=N, progress=False)
        out[kind] = (path, gen)
    return out


def test_registry_uses_d4rl_reference_scores():
    for env in ENVS:
        d4rl = get_dataset_spec(f"{env}-medium-v2")
        for kind in KINDS:
            did = f"{env}-{kind}-gen-v0"
            assert did in GENERATED_IDS
            spec = get_dataset_spec(did)
            assert (spec.suite, spec.env_name, spec.source) == ("mujoco-gen", env, "generated")
            assert (spec.ref_min, spec.ref_max, spec.max_episode_steps) == (d4rl.ref_min, d4rl.ref_max, 1000)


def test_committed_checkpoints_are_small_and_loadable():
    files = sorted(POLICY_DIR.glob("*.pt"))
    assert len(files) == 15  # 3 envs x (medium, expert, replay1..3)
    for f in files:
        assert f.stat().st_size < 300_000, f
        env = f.name.split("_")[0]
        _, info = load_actor(f)
        assert (info["obs_dim"], info["act_dim"]) == ENVS[env][:2]
        assert info["meta"]["env"] == env


@pytest.mark.parametrize("kind", KINDS)
def test_hopper_kind_contents_and_torchrl_load(hopper_files, kind):
    path, gen = hopper_files[kind]
    d = read_d4rl_hdf5(path)
    obs_dim, act_dim, nq, nv = ENVS["hopper"]
    assert d["observations"].shape == d["next_observations"].shape == (N, obs_dim)
    assert d["actions"].shape == (N, act_dim) and np.abs(d["actions"]).max() <= 1.0
    assert d["infos/qpos"].shape == (N, nq) and d["infos/qvel"].shape == (N, nv)
    # Hopper's observation is qpos[1:] followed by clip(qvel, -10, 10): the infos match the obs.
    np.testing.assert_allclose(d["observations"][:, :nq - 1], d["infos/qpos"][:, 1:], atol=1e-6)
    np.testing.assert_allclose(d["observations"][:, nq - 1:], np.clip(d["infos/qvel"], -10, 10), atol=1e-5)
    term, tout = d["terminals"].astype(bool), d["timeouts"].astype(bool)
    assert not (term & tout).any() and (term[-1] or tout[-1])
    eps = _episodes(term, tout)
    assert all(s.stop - s.start <= 1000 for s in eps)
    for s in eps[:-1]:  # the next episode starts from a reset, not from the last next_observation
        if s.stop < N:
            assert not np.allclose(d["next_observations"][s.stop - 1], d["observations"][s.stop])
    inside = np.ones(N, bool)
    inside[[s.stop - 1 for s in eps]] = False
    np.testing.assert_array_equal(d["next_observations"][inside], d["observations"][1:][inside[:-1]])
    # Every component gets exactly its share; its last step ends an episode.
    cfg = LOCOMOTION_DATASETS[f"hopper-{kind}-gen-v0"]
    sizes = _component_sizes(cfg, N)
    np.testing.assert_array_equal(np.bincount(d["infos/behavior"], minlength=len(sizes)), sizes)
    assert all(term[e - 1] or tout[e - 1] for e in np.cumsum(sizes))
    assert gen.stats["transitions"] == N and gen.stats["episodes"] == len(eps)
    # The TorchRL path keeps CORL's rows: all but timeout rows and the last row.
    rb = make_offline_replay_buffer(path, batch_size=8, progress=False)
    assert len(rb) == int((~tout[:-1]).sum())
    batch = rb.sample()
    assert batch["observation"].shape == (8, obs_dim) and batch["action"].shape == (8, act_dim)


def test_component_sizes_largest_remainder():
    cfg = LOCOMOTION_DATASETS["hopper-medium-replay-gen-v0"]  # shares .1 .2 .2 .2 .3
    assert _component_sizes(cfg, 11) == [1, 2, 2, 2, 4]  # 1.1 2.2 2.2 2.2 3.3: the +1 goes to the .3
    assert _component_sizes(cfg, 100_000) == [10_000, 20_000, 20_000, 20_000, 30_000]


def test_medium_policy_clearly_beats_random_on_hopper():
    rets = {}
    for kind in ("random", "medium"):
        out = generate_locomotion(LOCOMOTION_DATASETS[f"hopper-{kind}-gen-v0"], seed=1, num_transitions=3000,
                                  progress=False)
        d = out.data
        rets[kind] = np.mean([d["rewards"][s].sum() for s in _episodes(d["terminals"], d["timeouts"])])
    assert rets["medium"] > max(5 * rets["random"], rets["random"] + 150), rets


def test_same_seed_identical_other_seed_different():
    cfg = LOCOMOTION_DATASETS["walker2d-medium-expert-gen-v0"]
    a = generate_locomotion(cfg, seed=3, num_transitions=400, progress=False).data
    b = generate_locomotion(cfg, seed=3, num_transitions=400, progress=False).data
    c = generate_locomotion(cfg, seed=4, num_transitions=400, progress=False).data
    assert array_digest(a) == array_digest(b)
    assert array_digest(a) != array_digest(c)


@pytest.mark.parametrize("env", ["halfcheetah", "walker2d"])
def test_other_envs_shapes(env):
    obs_dim, act_dim, nq, nv = ENVS[env]
    d = generate_locomotion(LOCOMOTION_DATASETS[f"{env}-medium-replay-gen-v0"], seed=0, num_transitions=300,
                            progress=False).data
    assert d["observations"].shape == (300, obs_dim) and d["actions"].shape == (300, act_dim)
    assert d["infos/qpos"].shape == (300, nq) and d["infos/qvel"].shape == (300, nv)
    if env == "halfcheetah":  # never terminates: episodes end only by the time limit / the cut
        assert not d["terminals"].any()


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(KeyError, match="not a generated dataset id"):
        generate_dataset("hopper-expert-gen-v0", tmp_path / "x.hdf5")
    with pytest.raises(ValueError, match="num_transitions"):
        generate_dataset("hopper-medium-gen-v0", tmp_path / "x.hdf5", num_episodes=3)
    with pytest.raises(ValueError, match="seed"):
        generate_locomotion(LOCOMOTION_DATASETS["hopper-random-gen-v0"], seed=-1)
    with pytest.raises(ValueError, match="num_transitions"):
        generate_locomotion(LOCOMOTION_DATASETS["hopper-medium-replay-gen-v0"], num_transitions=3)
    missing = dataclasses.replace(LOCOMOTION_DATASETS["hopper-medium-gen-v0"], components=(("nosuch", 1.0, 0.1),))
    with pytest.raises(FileNotFoundError, match="train_behavior"):
        generate_locomotion(missing, num_transitions=10)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a behaviour-policy checkpoint"):
        load_actor(bad)


def test_train_behavior_recipe_smoke(tmp_path):
    """A few hundred frames of SAC: runs end to end and writes loadable, small checkpoints."""
    from omegaconf import OmegaConf

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    import train_behavior

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "recipes" / "config" / "train_behavior.yaml")
    cfg.pop("defaults"), cfg.pop("hydra")
    cfg.update({"total_frames": 400, "init_random_frames": 200, "frames_per_batch": 100, "utd": 0.2,
                "batch_size": 32, "buffer_size": 1000, "eval_every": 400, "eval_episodes": 1,
                "out_dir": str(tmp_path), "progress": False, "time_budget_s": 120})
    summary = train_behavior.run(cfg)
    assert summary["frames"] == 400 and len(summary["history"]) == 1
    for name in ("final.pt", "best.pt", "step0000400.pt"):
        _, info = load_actor(tmp_path / name)
        assert (info["obs_dim"], info["act_dim"]) == (11, 3) and (tmp_path / name).stat().st_size < 300_000
    cfg.env = "ant"
    with pytest.raises(ValueError, match="env must be one of"):
        train_behavior.run(cfg)


def test_shrunk_file_is_not_taken_for_the_full_dataset(hopper_files):
    """ensure_generated_dataset regenerates a file made with another size (attrs num_transitions)."""
    from ppl_torchrl.data.hdf5 import validate_d4rl_hdf5
    from ppl_torchrl.datagen import _matches

    path, _ = hopper_files["medium"]
    attrs = validate_d4rl_hdf5(path, check_finite=False).attrs
    assert (attrs["num_transitions"], attrs["dataset_id"], attrs["kind"]) == (N, "hopper-medium-gen-v0", "medium")
    assert not _matches(path, "hopper-medium-gen-v0", 0)
