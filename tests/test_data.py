"""Data loading: D4RL-format HDF5 files, D4RL ids (via file:// URLs) and Minari ids, through the real code paths."""
from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import torch

from ppl_torchrl.data import (
    D4RL_URLS,
    D4RLFileError,
    corl_transition_rows,
    make_offline_replay_buffer,
    read_d4rl_hdf5,
    reward_scale_bias,
    validate_d4rl_hdf5,
    write_d4rl_hdf5,
)
from ppl_torchrl.keys import (
    ACTION,
    BATCH_KEYS,
    DONE,
    NEXT_ACTION,
    NEXT_OBSERVATION,
    OBSERVATION,
    REWARD,
    TERMINATED,
    TRUNCATED,
)

EXPECTED_KEYS = set(BATCH_KEYS) | {TRUNCATED}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test sees the user's ~/.d4rl, ~/.minari or cache folders."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl_cache"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("PPL_TORCHRL_DATA", str(tmp_path / "cache"))


def hand_made() -> dict[str, np.ndarray]:
    """Three episodes in one flat table (N = 9 rows), values that identify their row.

    rows 0-2: episode A, ends with a terminal at row 2;
    rows 3-6: episode B, ends with a timeout at row 6;
    rows 7-8: episode C, ends with a timeout at row 8 (the file's last row).
    observation row i = [i, 10 i], action row i = [i / 10], reward row i = i.
    """
    n = 9
    i = np.arange(n, dtype=np.float32)
    terminals = np.zeros(n, bool)
    terminals[2] = True
    timeouts = np.zeros(n, bool)
    timeouts[[6, 8]] = True
    return {
        "observations": np.stack([i, 10 * i], 1),
        "actions": (i / 10)[:, None],
        "rewards": i.copy(),
        "terminals": terminals,
        "timeouts": timeouts,
        "infos/qpos": np.zeros((n, 2)),
    }


def corl_reference(d: dict) -> dict[str, np.ndarray]:
    """CORL's qlearning_dataset loop (with next_actions), written out as the reference."""
    out = {k: [] for k in ("obs", "act", "next_obs", "next_act", "rew", "term")}
    for i in range(len(d["rewards"]) - 1):
        if d["timeouts"][i]:
            continue
        out["obs"].append(d["observations"][i])
        out["act"].append(d["actions"][i])
        out["next_obs"].append(d["observations"][i + 1])
        out["next_act"].append(d["actions"][i + 1])
        out["rew"].append(d["rewards"][i])
        out["term"].append(bool(d["terminals"][i]))
    return {k: np.array(v) for k, v in out.items()}


def storage_td(buffer):
    return buffer[: len(buffer)]


# ----------------------------------------------------------------------------------------------
# HDF5 files
# ----------------------------------------------------------------------------------------------
def test_write_read_roundtrip(tmp_path):
    data = hand_made()
    path = write_d4rl_hdf5(tmp_path / "sub" / "x.hdf5", data, attrs={"generator": "test", "seed": 3})
    assert path == tmp_path / "sub" / "x.hdf5"
    back = read_d4rl_hdf5(path)
    assert set(back) == set(data)
    np.testing.assert_array_equal(back["observations"], data["observations"])
    assert back["terminals"].dtype == bool and back["observations"].dtype == np.float32
    info = validate_d4rl_hdf5(path)
    assert (info.num_steps, info.obs_dim, info.act_dim) == (9, 2, 1)
    assert info.attrs == {"generator": "test", "seed": 3}
    assert [p.name for p in path.parent.iterdir()] == ["x.hdf5"]  # no temp file left


def _write_raw(path, data):
    with h5py.File(path, "w") as h5:
        for k, v in data.items():
            h5.create_dataset(k, data=v)
    return path


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.pop("terminals"), r"lacks the D4RL key\(s\) \['terminals'\]"),
        (lambda d: d.__setitem__("actions", d["actions"][:-1]), "every key must have 9 rows"),
        (lambda d: d["observations"].__setitem__((4, 1), np.nan), "'observations' holds NaN or inf .*row 4"),
        (lambda d: d["rewards"].__setitem__(7, np.inf), "'rewards' holds NaN or inf .*row 7"),
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, mutate, match):
    data = hand_made()
    mutate(data)
    path = _write_raw(tmp_path / "bad.hdf5", data)
    with pytest.raises(D4RLFileError, match=match):
        validate_d4rl_hdf5(path)
    with pytest.raises(D4RLFileError, match=match):  # the buffer builder checks too, and imports nothing
        make_offline_replay_buffer(path, batch_size=2, progress=False)
    assert not (tmp_path / "cache" / "hdf5").exists() or not any((tmp_path / "cache" / "hdf5").iterdir())


def test_truncated_and_missing_files(tmp_path):
    path = write_d4rl_hdf5(tmp_path / "x.hdf5", hand_made())
    raw = path.read_bytes()
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(D4RLFileError, match="truncated"):
        validate_d4rl_hdf5(cut)
    with pytest.raises(FileNotFoundError, match="Pass the path of an existing .hdf5"):
        make_offline_replay_buffer(tmp_path / "nope.hdf5", batch_size=2)


def test_write_rejects_bad_input(tmp_path):
    data = hand_made()
    data.pop("terminals")
    with pytest.raises(KeyError, match="terminals"):
        write_d4rl_hdf5(tmp_path / "x.hdf5", data)
    data = hand_made()
    data["rewards"] = data["rewards"][:3]
    with pytest.raises(ValueError, match="rows"):
        write_d4rl_hdf5(tmp_path / "x.hdf5", data)
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------
# Transition semantics
# ----------------------------------------------------------------------------------------------
def test_corl_rows_drop_timeouts_and_last_row():
    timeouts = np.array([0, 0, 1, 0, 0, 0], bool)
    np.testing.assert_array_equal(corl_transition_rows(timeouts), [0, 1, 3, 4])


def test_local_hdf5_hand_made_semantics(tmp_path):
    path = write_d4rl_hdf5(tmp_path / "toy.hdf5", hand_made())
    rb = make_offline_replay_buffer(path, batch_size=4, seed=0, progress=False)
    # rows 6 and 8 are timeouts, row 8 is also the last row: 7 transitions are left
    assert len(rb) == 7
    stats = rb.dataset_stats
    assert (stats.num_steps, stats.num_transitions, stats.num_dropped_timeouts, stats.num_terminals) == (9, 7, 1, 1)
    td = storage_td(rb)
    kept = [0, 1, 2, 3, 4, 5, 7]
    np.testing.assert_array_equal(td[OBSERVATION][:, 0].numpy(), kept)
    np.testing.assert_array_equal(td[NEXT_OBSERVATION][:, 0].numpy(), [k + 1 for k in kept])
    np.testing.assert_allclose(td[NEXT_ACTION][:, 0].numpy(), [(k + 1) / 10 for k in kept], rtol=1e-6)
    # across the terminal boundary (row 2 -> first action of episode B, row 3), as in CORL
    assert td[NEXT_ACTION][2, 0].item() == pytest.approx(0.3)
    # the step before a timeout keeps the timeout row's action as its next action
    assert td[NEXT_ACTION][5, 0].item() == pytest.approx(0.6)
    np.testing.assert_array_equal(td[TERMINATED][:, 0].numpy(), [k == 2 for k in kept])
    np.testing.assert_array_equal(td[DONE].numpy(), td[TERMINATED].numpy())
    assert not td[TRUNCATED].any()
    np.testing.assert_array_equal(td[REWARD][:, 0].numpy(), kept)

    batch = rb.sample()
    assert set(batch.keys(True, True)) - {"index"} == EXPECTED_KEYS
    for key in (OBSERVATION, ACTION, NEXT_OBSERVATION, NEXT_ACTION, REWARD):
        assert batch[key].dtype == torch.float32
    for key in (REWARD, DONE, TERMINATED, TRUNCATED):
        assert batch[key].shape == (4, 1)
    for key in (DONE, TERMINATED, TRUNCATED):
        assert batch[key].dtype == torch.bool


def test_matches_corl_loop_on_random_data(tmp_path):
    rng = np.random.default_rng(0)
    n = 500
    data = {
        "observations": rng.normal(size=(n, 5)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": rng.random(n) < 0.05,
        "timeouts": rng.random(n) < 0.05,
    }
    data["timeouts"][-1] = True
    path = write_d4rl_hdf5(tmp_path / "rand.hdf5", data)
    rb = make_offline_replay_buffer(path, batch_size=8, progress=False)
    ref = corl_reference(data)
    td = storage_td(rb)
    np.testing.assert_array_equal(td[OBSERVATION].numpy(), ref["obs"])
    np.testing.assert_array_equal(td[ACTION].numpy(), ref["act"])
    np.testing.assert_array_equal(td[NEXT_OBSERVATION].numpy(), ref["next_obs"])
    np.testing.assert_array_equal(td[NEXT_ACTION].numpy(), ref["next_act"])
    np.testing.assert_array_equal(td[REWARD][:, 0].numpy(), ref["rew"])
    np.testing.assert_array_equal(td[TERMINATED][:, 0].numpy(), ref["term"])
    # CORL compute_mean_std(eps=1e-3) over the kept observations
    np.testing.assert_allclose(rb.dataset_stats.state_mean, ref["obs"].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rb.dataset_stats.state_std, ref["obs"].std(0) + 1e-3, rtol=1e-5)


def test_reward_transforms_and_state_normalisation(tmp_path):
    path = write_d4rl_hdf5(tmp_path / "toy.hdf5", hand_made())
    kept = np.array([0, 1, 2, 3, 4, 5, 7], np.float32)
    rb = make_offline_replay_buffer(path, batch_size=7, reward_scale=10.0, reward_bias=-5.0, seed=0, progress=False)
    batch = rb.sample()
    obs_row = batch[OBSERVATION][:, 0]  # identifies the transition (raw obs = row index)
    torch.testing.assert_close(batch[REWARD][:, 0], 10 * obs_row - 5)
    rb = make_offline_replay_buffer(path, batch_size=7, reward_scale=100.0, normalize_states=True, seed=0,
                                    progress=False)
    batch = rb.sample()
    mean = np.array([kept.mean(), 10 * kept.mean()])
    std = np.array([kept.std(), 10 * kept.std()]) + 1e-3
    torch.testing.assert_close(rb.state_mean, torch.tensor(mean, dtype=torch.float32))
    torch.testing.assert_close(rb.state_std, torch.tensor(std, dtype=torch.float32))
    raw_row = batch[OBSERVATION][:, 0] * std[0] + mean[0]  # undo the normalisation
    torch.testing.assert_close(batch[REWARD][:, 0], 100 * raw_row, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(batch[NEXT_OBSERVATION][:, 1], ((raw_row + 1) * 10 - mean[1]) / std[1],
                               rtol=1e-4, atol=1e-4)
    # stats used without normalisation are the identity, so evaluation can apply them blindly
    rb = make_offline_replay_buffer(path, batch_size=2, progress=False)
    assert torch.equal(rb.state_mean, torch.zeros(2)) and torch.equal(rb.state_std, torch.ones(2))


def test_authors_reward_table():
    assert reward_scale_bias("antmaze-large-diverse-v2", "ppl_r") == (100.0, 0.0)
    assert reward_scale_bias("antmaze-umaze-v2", "cql") == (10.0, -5.0)
    assert reward_scale_bias("hopper-medium-v2", "rebrac") == (1.0, 0.0)
    with pytest.raises(ValueError, match="Unknown algorithm"):
        reward_scale_bias("antmaze-umaze-v2", "iql")


def test_seeded_sampling_is_reproducible(tmp_path):
    path = write_d4rl_hdf5(tmp_path / "toy.hdf5", hand_made())
    draws = []
    for seed in (3, 3, 4):
        rb = make_offline_replay_buffer(path, batch_size=16, seed=seed, progress=False)
        torch.manual_seed(seed + 100)  # the global RNG must not matter
        draws.append(torch.cat([rb.sample()[OBSERVATION][:, 0] for _ in range(3)]))
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])


def test_import_is_cached_and_survives_file_removal(tmp_path):
    path = write_d4rl_hdf5(tmp_path / "toy.hdf5", hand_made())
    make_offline_replay_buffer(path, batch_size=2, progress=False)
    folders = list((tmp_path / "cache" / "hdf5").iterdir())
    assert len(folders) == 1 and (folders[0] / "ppl_dataset.json").is_file()
    mtime = (folders[0] / "ppl_dataset.json").stat().st_mtime_ns
    path.unlink()
    rb = make_offline_replay_buffer(path, batch_size=2, progress=False)  # no file: the import is reused
    assert len(rb) == 7 and (folders[0] / "ppl_dataset.json").stat().st_mtime_ns == mtime
    data = hand_made()
    data["timeouts"][:] = False
    write_d4rl_hdf5(path, data)  # a changed file is imported again
    rb = make_offline_replay_buffer(path, batch_size=2, progress=False)
    assert len(rb) == 8


# ----------------------------------------------------------------------------------------------
# D4RL ids through TorchRL's URL table (file:// URLs; no network)
# ----------------------------------------------------------------------------------------------
def test_d4rl_id_download_verify_and_retry(tmp_path, monkeypatch):
    good = write_d4rl_hdf5(tmp_path / "src" / "hopper_medium-v2.hdf5", hand_made())
    raw = good.read_bytes()
    cut = tmp_path / "src_cut" / "hopper_medium-v2.hdf5"
    cut.parent.mkdir()
    cut.write_bytes(raw[: len(raw) // 2])
    monkeypatch.setitem(D4RL_URLS, "hopper-medium-v2", cut.as_uri())
    with pytest.raises(D4RLFileError, match="removed; call again to retry"):
        make_offline_replay_buffer("hopper-medium-v2", batch_size=2, progress=False)
    downloads = tmp_path / "cache" / "downloads"
    assert not list(downloads.iterdir())  # the broken download was removed, nothing half-used
    assert not (tmp_path / "cache" / "d4rl" / "hopper-medium-v2").exists()

    monkeypatch.setitem(D4RL_URLS, "hopper-medium-v2", good.as_uri())
    rb = make_offline_replay_buffer("hopper-medium-v2", batch_size=3, seed=0, progress=False)
    from torchrl.data.datasets import D4RLExperienceReplay

    assert isinstance(rb, D4RLExperienceReplay) and len(rb) == 7
    assert set(rb.sample().keys(True, True)) - {"index"} == EXPECTED_KEYS
    assert not list(downloads.iterdir())  # the HDF5 is deleted once imported (keep_hdf5=False)
    # later runs need neither the file nor the network
    monkeypatch.setitem(D4RL_URLS, "hopper-medium-v2", (tmp_path / "gone.hdf5").as_uri())
    assert len(make_offline_replay_buffer("hopper-medium-v2", batch_size=3, progress=False)) == 7


def test_d4rl_id_uses_d4rl_cache_and_no_network_error(tmp_path, monkeypatch):
    monkeypatch.setitem(D4RL_URLS, "walker2d-medium-v2", (tmp_path / "offline" / "walker2d_medium-v2.hdf5").as_uri())
    with pytest.raises(RuntimeError, match="pass the path of a local D4RL-format HDF5 file"):
        make_offline_replay_buffer("walker2d-medium-v2", batch_size=2, progress=False)
    with pytest.raises(FileNotFoundError, match="download=False"):
        make_offline_replay_buffer("walker2d-medium-v2", batch_size=2, download=False, progress=False)
    write_d4rl_hdf5(tmp_path / "d4rl_cache" / "walker2d_medium-v2.hdf5", hand_made())  # $D4RL_DATASET_DIR
    rb = make_offline_replay_buffer("walker2d-medium-v2", batch_size=2, download=False, progress=False)
    assert len(rb) == 7


def test_unknown_id_names_close_matches():
    with pytest.raises(KeyError, match="Did you mean 'hopper-medium-v2', 'hopper-medium-v1'") as err:
        make_offline_replay_buffer("hoper-medium-v2", batch_size=2)
    assert str(err.value).count("'hopper-medium-v2'") == 2  # the suggestion once, and the example
    with pytest.raises(KeyError, match="local D4RL-format .hdf5 file.*OGBench single-task id"):
        make_offline_replay_buffer("no-such-dataset", batch_size=2)
    with pytest.raises(KeyError, match="Did you mean 'cube-single-play-singletask-task2-v0'"):
        make_offline_replay_buffer("cube-singel-play-singletask-task2-v0", batch_size=2)


def test_an_ogbench_npz_path_says_to_pass_its_id(tmp_path):
    npz = tmp_path / "cube-single-play-v0.npz"
    npz.write_bytes(b"PK")
    with pytest.raises(KeyError, match="dataset.id=.*dataset.path=<file.npz>"):
        make_offline_replay_buffer(str(npz), batch_size=2)


def test_without_ogbench_its_ids_resolve_and_its_data_and_tasks_say_how_to_install_it(tmp_path, monkeypatch):
    """Python 3.13+ installs without OGBench (no wheel of its labmaze dependency there): specs and reports of OGBench
    ids still work, and reading its data or building its tasks is a one-line error naming the fix."""
    import sys

    from ppl_torchrl.data.buffer import OGBenchSource
    from ppl_torchrl.envs import make_eval_env
    from ppl_torchrl.errors import MissingPackageError, is_user_error
    from ppl_torchrl.registry import get_dataset_spec

    monkeypatch.setitem(sys.modules, "ogbench", None)  # `import ogbench` now raises ImportError, as where it is absent
    assert get_dataset_spec("cube-double-play-singletask-task1-v0").max_episode_steps == 500
    npz = tmp_path / "cube-single-play-v0.npz"
    npz.write_bytes(b"PK")
    task = "cube-single-play-singletask-task2-v0"
    for build in (lambda: make_eval_env(task),
                  lambda: make_offline_replay_buffer(OGBenchSource(task, path=npz), batch_size=2,
                                                     root=tmp_path / "cache", progress=False),  # a local file
                  lambda: make_offline_replay_buffer(task, batch_size=2, root=tmp_path / "cache",
                                                     progress=False)):  # a download
        with pytest.raises(MissingPackageError, match=r"pip install 'ogbench>=1.2' \(Python 3.10-3.12") as err:
            build()
        assert is_user_error(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------------
# Minari
# ----------------------------------------------------------------------------------------------
def _make_minari(dataset_id: str):
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    episodes = []
    # episode 0: 4 steps ending in termination; episode 1: 3 steps ending in truncation
    for e, (steps, terminated) in enumerate([(4, True), (3, False)]):
        obs = np.arange(steps + 1, dtype=np.float32)[:, None].repeat(3, 1) + 100 * e
        last = np.eye(steps, dtype=bool)[-1]
        episodes.append(EpisodeBuffer(
            observations=obs,
            actions=np.full((steps, 2), e, np.float32) + np.arange(steps, dtype=np.float32)[:, None] / 10,
            rewards=np.arange(steps, dtype=np.float64) + 10 * e,
            terminations=last & terminated,
            truncations=last & (not terminated),
            infos={},
        ))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id, episodes,
            observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
            action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
            algorithm_name="hand-made", author="test", author_email="t@e.st", code_permalink="none",
            description="test",
        )


def test_minari_roundtrip(tmp_path):
    _make_minari("test/tiny-v0")
    rb = make_offline_replay_buffer("test/tiny-v0", batch_size=4, reward_scale=100.0, seed=0, progress=False)
    from torchrl.data.datasets import MinariExperienceReplay

    assert isinstance(rb, MinariExperienceReplay)
    # 7 steps; the truncated step 6 is also the last row: 6 transitions
    assert len(rb) == 6 and rb.dataset_stats.num_terminals == 1
    td = storage_td(rb)
    np.testing.assert_array_equal(td[OBSERVATION][:, 0].numpy(), [0, 1, 2, 3, 100, 101])
    np.testing.assert_array_equal(td[NEXT_OBSERVATION][:, 0].numpy(), [1, 2, 3, 4, 101, 102])  # Minari's true s'
    np.testing.assert_allclose(td[NEXT_ACTION][:, 0].numpy(), [0.1, 0.2, 0.3, 1.0, 1.1, 1.2], rtol=1e-6)
    np.testing.assert_array_equal(td[TERMINATED][:, 0].numpy(), [0, 0, 0, 1, 0, 0])
    batch = rb.sample()
    assert set(batch.keys(True, True)) - {"index"} == EXPECTED_KEYS
    assert batch[OBSERVATION].dtype == torch.float32 and batch[REWARD].dtype == torch.float32
    raw = torch.where(batch[OBSERVATION][:, 0] >= 100, batch[OBSERVATION][:, 0] - 90, batch[OBSERVATION][:, 0])
    torch.testing.assert_close(batch[REWARD][:, 0], 100 * raw)
    # reused without Minari's files
    import shutil

    shutil.rmtree(tmp_path / "minari")
    assert len(make_offline_replay_buffer("test/tiny-v0", batch_size=4, progress=False)) == 6


def test_minari_missing_dataset_says_what_to_do():
    with pytest.raises(FileNotFoundError, match="MINARI_DATASETS_PATH"):
        make_offline_replay_buffer("test/absent-v0", batch_size=2, progress=False)


# ----------------------------------------------------------------------------------------------
# Concurrent first use (the first runs of a sweep share one dataset)
# ----------------------------------------------------------------------------------------------
def test_exclusive_makes_builders_take_turns(tmp_path):
    import threading
    import time

    from ppl_torchrl.atomic import exclusive

    events = []

    def builder(name, hold):
        with exclusive(tmp_path / "cache"):
            events.append(f"{name} in")
            time.sleep(hold)
            events.append(f"{name} out")

    first = threading.Thread(target=builder, args=("a", 0.5))
    first.start()
    while not events:
        time.sleep(0.01)
    second = threading.Thread(target=builder, args=("b", 0.0))
    second.start()
    first.join()
    second.join()
    assert events == ["a in", "a out", "b in", "b out"]
    with exclusive(tmp_path / "new" / "folder"):  # created for the block ...
        assert (tmp_path / "new" / "folder").is_dir()
    assert not (tmp_path / "new" / "folder").exists()  # ... and not left behind empty


@pytest.mark.slow
def test_concurrent_first_imports_of_one_file_all_succeed(tmp_path):
    """Several processes import the same D4RL-format file into one cache at once: one imports, the others wait
    and reuse it (without the lock, an import replacing the folder another process is loading crashes it)."""
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    n = 200_000
    data = {"observations": rng.normal(size=(n, 17)).astype(np.float32),
            "actions": rng.uniform(-1, 1, size=(n, 6)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32), "terminals": rng.random(n) < 0.001,
            "timeouts": np.arange(n) % 1000 == 999}
    path = write_d4rl_hdf5(tmp_path / "big.hdf5", data)
    # each process says whether it imported the file, and what it loaded
    code = ("import sys; import ppl_torchrl.data.d4rl as d; imp = d.import_d4rl_hdf5; "
            "d.import_d4rl_hdf5 = lambda *a, **k: print('imported') or imp(*a, **k); "
            "b = d.CORLD4RLExperienceReplay(None, 4, hdf5_path=sys.argv[1], progress=False); t = b[:]; "
            "print(len(b), float(t['observation'].sum()), float(t[('next', 'action')].sum()))")
    env = dict(os.environ, PPL_TORCHRL_DATA=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-1500:] for _, err in outs]
    assert sum(out.count("imported") for out, _ in outs) == 1  # one imported, the others reused its import
    loaded = {out.replace("imported", "").strip() for out, _ in outs}
    assert len(loaded) == 1 and int(loaded.pop().split()[0]) == int((~data["timeouts"][: n - 1]).sum())


# ----------------------------------------------------------------------------------------------
# Atomic writes and the one cache rule (ppl_torchrl.atomic, ppl_torchrl.data.cache)
# ----------------------------------------------------------------------------------------------
def test_atomic_writes_take_the_mode_asked_and_leave_nothing_half_written(tmp_path):
    import os

    from ppl_torchrl.atomic import UMASK, atomic_folder, atomic_path, atomic_write

    old = os.umask(0o027)
    try:
        assert atomic_write(tmp_path / "out.json", "{}").stat().st_mode & 0o777 == 0o644  # an output
        data = write_d4rl_hdf5(tmp_path / "data" / "gen.hdf5", hand_made())  # a data file: the umask's mode
        assert data.stat().st_mode & 0o777 == 0o640
        assert atomic_write(tmp_path / "x.bin", b"1", mode=UMASK).stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert (tmp_path / "out.json").read_text() == "{}"  # the old file stays, the temporary is gone
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "old").write_text("old")
    with atomic_folder(tmp_path / "folder") as tmp:
        (tmp / "new").write_text("new")
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["new"]
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "folder") as tmp:
        raise RuntimeError("killed")
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_cached_import_reuses_only_a_complete_matching_import(tmp_path):
    from ppl_torchrl.data.cache import cached_import
    from ppl_torchrl.data.transitions import write_transitions

    folder, built = tmp_path / "cache" / "x", []

    def build(version=1):
        built.append(version)
        return write_transitions(hand_made(), folder, name="x", source="s", fingerprint={"v": version, "other": 0},
                                 progress=False)

    assert cached_import(folder, build, match={"v": 1}).fingerprint["v"] == 1 and built == [1]
    assert cached_import(folder, build, match={"v": 1}) and built == [1]  # reused
    assert cached_import(folder, build) and built == [1]  # nothing asked to match: any complete import
    cached_import(folder, lambda: build(2), match={"v": 2})  # a changed source: imported again
    assert built == [1, 2]
    cached_import(folder, build, match={"v": 2}, needs=("extra.json",))  # a file the source adds is missing
    assert built == [1, 2, 1]
    (folder / "ppl_dataset.json").write_text("{")  # a damaged marker is no import
    cached_import(folder, build, match={"v": 1})
    assert built == [1, 2, 1, 1]


def test_caches_keep_the_folder_names_and_fingerprints_of_earlier_versions(tmp_path):
    """A cache built before the shared rule (ppl_torchrl/data/cache.py) is found and reused: the folder names and
    the recorded fingerprint entries are the ones those versions wrote and compared."""
    import hashlib
    import json

    path = write_d4rl_hdf5(tmp_path / "toy.hdf5", hand_made())
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    make_offline_replay_buffer(path, batch_size=2, progress=False)
    folder = tmp_path / "cache" / "hdf5" / f"toy-{digest}"
    marker = folder / "ppl_dataset.json"
    recorded = json.loads(marker.read_text())["fingerprint"]
    assert set(recorded) == {"path", "size", "mtime_ns"} and recorded["path"] == str(path.resolve())
    # an import written by an earlier version (another path recorded: a moved cache) is still reused
    marker.write_text(marker.read_text().replace(json.dumps(str(path.resolve())), json.dumps("/elsewhere")))
    mtime = marker.stat().st_mtime_ns
    make_offline_replay_buffer(path, batch_size=2, progress=False)
    assert marker.stat().st_mtime_ns == mtime
    # OGBench: <canonical id>[-val]-<digest of the file's path> (its entries compared: tests/test_ogbench.py)
    from ppl_torchrl.data.cache import cache_name

    assert cache_name("cube-single-play-singletask-task2-v0-val", path) == \
        f"cube-single-play-singletask-task2-v0-val-{digest}"
