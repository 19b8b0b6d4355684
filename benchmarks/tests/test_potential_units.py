"""benchmarks/potential_units.py: the dead-ReLU count of a PPL^R run's potential (``long_evidence.py
--potential-units``), on a hand-made dead layer and read back from a real run's checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from tensordict import TensorDict

from benchmarks.potential_units import (SATURATED, active_units, checkpoint_policy_saturation,
                                        checkpoint_potential_pull, checkpoint_potential_units, main)
from ppl_torchrl import keys
from ppl_torchrl.objectives import PartialOTLoss
from ppl_torchrl.training.probe import ProbeData
from ppl_torchrl.training.build import build_trainer
from tiny_networks import tiny_networks

CONFIG_DIR = Path(__file__).resolve().parents[2] / "recipes" / "config"
OBS, ACT, N = 3, 2, 12


def _loss():
    return PartialOTLoss(*tiny_networks(OBS, ACT), w=4.0, actor_bc_coef=0.3)


def _data():
    g = torch.Generator().manual_seed(1)
    return ProbeData(torch.randn(N, OBS, generator=g), torch.rand(N, ACT, generator=g) * 2 - 1)


def test_a_potential_with_dead_last_hidden_units_is_constant_and_only_its_last_bias_learns():
    ppl = _loss()
    net = ppl.potential_network.module.net
    data = _data()
    inputs = torch.cat([data.observation, data.action], -1)
    assert active_units(net, inputs).any()  # at initialisation
    with torch.no_grad():
        ppl.potential_network_params["module", "net", "0", "bias"].fill_(-1e3)  # the one hidden layer's bias
    with ppl.potential_network_params.to_module(ppl.potential_network):
        assert not active_units(net, inputs).any()
    td = TensorDict({keys.OBSERVATION: data.observation, keys.ACTION: data.action}, [N])
    f = ppl.potential(td, data.action, ppl.potential_network_params)
    last_bias = ppl.potential_network_params["module", "net", "2", "bias"]
    assert torch.allclose(f, -last_bias.abs().expand(N))
    loss, _ = ppl.potential_loss(td)
    grads = dict(zip(ppl.potential_network_params.keys(True, True),
                     torch.autograd.grad(loss, list(ppl.potential_network_params.values(True, True)))))
    assert {k for k, g in grads.items() if g.abs().sum() > 0} == {("module", "net", "2", "bias")}


def test_the_count_read_back_from_a_checkpoint_is_the_live_network_s(tmp_path):
    overrides = {
        "dataset": "pointmaze-umaze-mixed-gen-v0", "optim.steps": 30, "optim.batch_size": 32, "model.hidden_dim": 16,
        "model.num_hidden": 1, "eval.episodes": 0, "eval.every": 10, "logger.backend": "", "logger.progress": "false",
        "logger.log_every": 10, "checkpoint.every": 10, "checkpoint.every_minutes": "null", "threads": 1,
        "run_dir": str(tmp_path), "probe.size": 64, "compile.enabled": "false",
    }
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="ppl_antmaze", overrides=[f"{k}={v}" for k, v in overrides.items()])
    threads = torch.get_num_threads()
    try:
        trainer = build_trainer(cfg)
        trainer.run()
    finally:
        torch.set_num_threads(threads)
    counts = checkpoint_potential_units(tmp_path / "checkpoint.pt")
    loss, data = trainer.algorithm.loss, trainer.probe.data
    with loss.potential_network_params.to_module(loss.potential_network):
        live = active_units(loss.potential_network.module.net, torch.cat([data.observation, data.action], -1))
    assert counts["units"] == 16 and counts["step"] == 30 and counts["data"] == int(live.sum())
    assert 0 <= counts["policy"] <= 16 and 0 <= counts["random"] <= 16

    sat = checkpoint_policy_saturation(tmp_path / "checkpoint.pt")
    td = TensorDict({keys.OBSERVATION: data.observation}, [data.observation.shape[0]])
    with torch.no_grad():
        action = trainer.algorithm.policy(td)[keys.ACTION]
    assert sat["step"] == 30 and sat["states"] == 64
    assert sat["policy"] == float((action.abs() > SATURATED).float().mean())
    assert sat["data"] == float((data.action.abs() > SATURATED).float().mean())
    assert 1 <= sat["distinct"] <= 64

    pull = checkpoint_potential_pull(tmp_path / "checkpoint.pt")
    moved = action.clone().requires_grad_(True)
    f = loss.potential(td, moved, loss.potential_network_params.detach())
    (grad,) = torch.autograd.grad(f.sum(), moved)
    assert pull["step"] == 30
    assert abs(pull["norm_mean"] - grad.norm(dim=-1).mean().item()) < 1e-5
    cosine = torch.nn.functional.cosine_similarity(grad, data.action - action, dim=-1).mean().item()
    assert abs(pull["toward_data"] - cosine) < 1e-5
    assert main([str(tmp_path / "checkpoint.pt")]) == 0


def test_a_gelu_unit_is_alive_until_its_slope_vanishes_far_below_zero():
    """The count is by slope: a GELU unit pushed to -2 still passes a gradient (alive), one at -10 does not (dead),
    as a ReLU unit at any negative input; the hand-set pre-activations are the last hidden layer's biases."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.GELU(approximate="tanh"), torch.nn.Linear(4, 1))
    relu = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    for mlp in (net, relu):
        with torch.no_grad():
            mlp[0].weight.zero_()
            mlp[0].bias.copy_(torch.tensor([1.0, -2.0, -10.0, 0.5]))
    inputs = torch.randn(5, 2)
    assert active_units(net, inputs).tolist() == [True, True, False, True]
    assert active_units(relu, inputs).tolist() == [True, False, False, True]
