"""Gradient steps per second of PPL^R / ReBRAC, against a plain PyTorch loop, JAX and the GEMM limit.

    python benchmarks/speed.py --shape both --steps 200 --json speed.json

Measures, in one run and interleaved (round-robin over variants, so a noisy machine slows all alike):

* ``ppl`` / ``rebrac``: ``make_algorithm(**settings(name), ...)``, not compiled: the eager
  :class:`ppl_torchrl.update.ReBRACUpdate` as the trainer runs it (TorchRL loss modules, TensorDict
  batches, input validation on, autograd gradients (``torch.func`` only under compile), torch's functional Adam on
  the optimizers' state),
  plus a real TorchRL replay-buffer sample per step;
* ``ppl_compiled`` / ``rebrac_compiled``: the same with ``compile.enabled=true`` (the whole update one
  ``torch.compile`` graph, compiled during the warm-up), same buffer sample per step;
* ``ppl_compiled_x2``: compiled, two consecutive updates per call through ``algorithm.run_updates``
  (``compile.updates_per_call=2``, as the authors' ``fori_loop``; ``--per-call N`` for another N, 1 skips it);
* ``ppl_compiled_resident``: compiled, fed by batches indexed from device-resident tensors (``torch.randint`` on the
  device, no replay buffer, no host-to-device copy), so the update and the data path are timed apart;
* CUDA only: ``ppl_cudagraphs`` / ``ppl_cudagraphs_resident``: compiled with ``compile.cudagraphs=true`` (each call
  replayed as a CUDA graph), fed by the replay buffer / by device-resident batches;
* ``plain``: PPL^R written directly in PyTorch here (:class:`PlainPPL`: nn.Linear, batched critics,
  torch.optim.Adam with its defaults, in-memory tensors indexed with torch.randint): the reference a user would write;
* ``jax``: the same PPL^R update in the authors' style (:func:`jax_ppl`: jit, ``lax.fori_loop`` over ``--steps``
  updates, vmapped critic ensemble, ``lax.cond`` on delayed steps, sampling inside the loop), if jax imports;
* both start from the library's PPL^R parameters, and ``benchmarks/tests/test_speed_benchmark.py`` checks that one
  step of each gives the library's losses and updated parameters (``ppl_torchrl.update.ReBRACUpdate``);
* ``sample``: the replay-buffer ``sample()`` alone;
* the GEMM limit: fp32 throughput of a 1024x256 @ 256x256 product through torch's default GEMM (``aten``)
  and, on a CPU whose torch build has it, oneDNN's linear kernel (:func:`measure_gemm`), measured between the
  timed blocks; ``limit`` is the best of them, ``steps/s at limit = limit / FLOPs per update``, and
  ``/limit`` is the share of that limit a variant reaches.

Every timed block ends with a device synchronisation (:func:`device_synchronizer`: ``torch.cuda.synchronize`` on
CUDA), so a GPU column times the work, not its launch. The report names the CPU (and GPU), the torch and jax
versions, on stdout and in the JSON. Timings from a machine shared with other work are noisy; compare columns of
one run, not runs.

FLOPs per update are counted analytically from the layer shapes (GEMMs only; see :func:`update_flops`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ppl_torchrl.atomic import atomic_write
from ppl_torchrl.machine import cpu_model

os.environ.setdefault("RL_WARNINGS", "False")

SHAPES = {"antmaze": (29, 8, 256), "mujoco": (17, 6, 1024)}
# Table order; ``ppl_compiled_xN`` columns are listed right after ``ppl_compiled``.
VARIANTS = ("ppl", "ppl_compiled", "ppl_compiled_resident", "ppl_cudagraphs", "ppl_cudagraphs_resident", "rebrac",
            "rebrac_compiled", "plain", "jax", "sample")
HIDDEN, DEPTH, NUM_Q = 256, 3, 2
HP = dict(actor_lr=3e-4, critic_lr=5e-5, potential_lr_scale=0.01, tau=5e-3, policy_freq=2, gamma=0.99,
          actor_bc_coef=1e-3, critic_bc_coef=5e-4, w=8.0, policy_noise=0.2, noise_clip=0.5)
GEMM_SHAPE = (1024, 256, 256)  # M x K x N of the GEMM limit


# ------------------------------------------------------------------------------------------ FLOPs
def update_flops(obs: int, act: int, batch: int, *, hidden=HIDDEN, depth=DEPTH, num_q=NUM_Q,
                 policy_freq=2, potential=True) -> float:
    """GEMM FLOPs of one update, averaged over the ``policy_freq`` schedule (2 FLOPs per MAC).

    With ``L(net)`` the sum of ``in*out`` over a network's linear layers and ``L1`` its first layer's,
    per batch row (MACs):
      critic step    = A + N*(3C - C1)       (target actor fwd; target critics fwd; critics fwd; critics bwd:
                                             weight grads + input grads except the first layer's)
      actor step     = 3A - A1 + 2NC + 2P    (actor fwd+bwd; critics and f fwd + input-grad bwd, frozen weights)
      potential step = A + 6P - 2P1          (target actor fwd; f on 2 action batches fwd + bwd)
    update = critic + (actor + potential) / policy_freq, times 2 * batch. Elementwise work is left out.
    """
    def layers(i, o):
        dims = [i] + [hidden] * depth + [o]
        return sum(a * b for a, b in zip(dims[:-1], dims[1:])), dims[0] * dims[1]
    a, a1 = layers(obs, act)
    c, c1 = layers(obs + act, 1)
    p, p1 = (c, c1) if potential else (0, 0)
    critic = a + num_q * (3 * c - c1)
    actor = 3 * a - a1 + 2 * num_q * c + 2 * p
    pot = a + 6 * p - 2 * p1 if potential else 0
    return 2.0 * batch * (critic + (actor + pot) / policy_freq)


# ------------------------------------------------------------------------------------------ data
def make_dataset(folder: Path, obs: int, act: int, n: int, seed: int = 0) -> Path:
    """A D4RL-format HDF5 file of ``n`` random transitions (episodes of 1000 steps)."""
    from ppl_torchrl.data import write_d4rl_hdf5

    rng = np.random.default_rng(seed)
    timeouts = np.zeros(n, bool)
    timeouts[999::1000] = True
    data = {
        "observations": rng.standard_normal((n, obs)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (n, act)).astype(np.float32),
        "rewards": rng.standard_normal(n).astype(np.float32),
        "terminals": rng.random(n) < 0.01,
        "timeouts": timeouts,
    }
    return write_d4rl_hdf5(folder / f"random_{obs}_{act}.hdf5", data)


def make_buffer(path: Path, batch: int, root: Path, device):
    from ppl_torchrl.data import make_offline_replay_buffer

    return make_offline_replay_buffer(path, batch_size=batch, seed=0, root=root, progress=False,
                                      device=None if torch.device(device).type == "cpu" else device)


def settings(name: str, *, compiled: bool = False, cudagraphs: bool = False) -> dict:
    """What ``make_algorithm`` takes besides the sizes: the loss's settings, the networks, the optimizers (the paper's
    AntMaze values, :data:`HP`) and how the update runs (inductor; ``cudagraphs`` on CUDA)."""
    from ppl_torchrl.training.config import CompileConfig, LossConfig, NetworkConfig, OptimConfig

    loss = {k: HP[k] for k in ("actor_bc_coef", "critic_bc_coef", "policy_noise", "noise_clip")}
    if name == "ppl":
        loss.update(w=HP["w"], potential_uses_target_actor=True)
    return dict(
        loss=LossConfig(name, **loss),
        network=NetworkConfig(hidden_dim=HIDDEN, num_hidden=DEPTH, num_qvalue_nets=NUM_Q, activation="relu",
                              init="corl"),
        optim=OptimConfig(**{k: HP[k] for k in ("actor_lr", "critic_lr", "potential_lr_scale", "tau", "policy_freq",
                                                "gamma")}),
        compile=CompileConfig(enabled=bool(compiled), backend="inductor", cudagraphs=bool(cudagraphs)))


# ------------------------------------------------------------------------------------------ ours
def ours_runner(name: str, obs: int, act: int, buffer, device, *, compiled: bool = False, per_call: int = 1,
                cudagraphs: bool = False, sample=None):
    """``run(k)``: k updates of the library's algorithm, each on a fresh batch: ``sample()`` (default: the replay
    buffer's ``sample``; :func:`resident_sampler` indexes device-resident tensors instead).

    ``compiled``: ``compile.enabled=true`` (the update compiles at its first call, in the warm-up); ``cudagraphs``:
    ``compile.cudagraphs=true`` (CUDA). ``per_call > 1``: ``algorithm.run_updates`` does that many updates per call
    (``k`` must be a multiple)."""
    from ppl_torchrl.training.algorithms import make_algorithm

    sample = buffer.sample if sample is None else sample
    alg = make_algorithm(obs_dim=obs, act_dim=act, device=device,
                         **settings(name, compiled=compiled, cudagraphs=cudagraphs))
    if alg.compiled != bool(compiled):
        raise RuntimeError(f"{name}: asked for compiled={compiled}, make_algorithm built compiled={alg.compiled}")
    state = {"step": 0}

    def run(k: int):
        step = state["step"]
        if per_call > 1:
            for i in range(0, k, per_call):
                alg.run_updates([sample() for _ in range(per_call)], step + i)
        else:
            for i in range(k):
                alg.update(sample(), step + i)
        state["step"] = step + k
    run.algorithm = alg
    return run


def resident_sampler(buffer, batch: int, device):
    """``sample()``: ``batch`` rows of the buffer's transitions, copied once to ``device`` and indexed there with
    ``torch.randint`` on the device (no replay-buffer sampler, no host-to-device copy per batch)."""
    dev = torch.device(device)
    data = buffer.storage[:].to(dev)
    n = data.shape[0]

    def sample():
        return data[torch.randint(0, n, (batch,), device=dev)]
    return sample


def sample_runner(buffer):
    def run(k: int):
        for _ in range(k):
            buffer.sample()
    return run


# ------------------------------------------------------------------------------------------ shared parameters
# The plain and JAX updates can start from the library's parameters: benchmarks/tests/test_speed_benchmark.py does,
# and compares their losses and updated parameters with ReBRACUpdate's, so a column can never time a different
# algorithm. The exchange format is the library's: each network as its parameter tensors in
# ``named_parameters`` order (actor and potential: nn.Linear weight [out, in], bias; critics: per layer the stacked
# weight [N, in, out], bias [N, 1, out], then LayerNorm weight and bias [N, 1, out] on hidden layers).
NETWORKS = ("actor", "critic", "potential", "actor_t", "critic_t")
_LIBRARY_PARAMS = {"actor": "actor_network_params", "critic": "qvalue_network_params",
                   "potential": "potential_network_params", "actor_t": "target_actor_network_params",
                   "critic_t": "target_qvalue_network_params"}


def library_params(algorithm) -> dict[str, list[torch.Tensor]]:
    """Copies of a library PPL^R algorithm's parameters (``make_algorithm(**settings("ppl"), ...)``), per network."""
    out = {}
    for name, attr in _LIBRARY_PARAMS.items():
        params = getattr(algorithm.loss, attr)
        out[name] = [p.detach().clone() for p in params.flatten_keys(".").values()]
    return out


# ------------------------------------------------------------------------------------------ plain PyTorch
class _Ensemble(nn.Module):
    """N critics with stacked weights (as CORL's PyTorch EDAC/SAC-N): batched matmuls. Parameters per layer: weight
    [N, in, out], bias [N, 1, out], then (hidden layers) LayerNorm weight and bias [N, 1, out]."""

    def __init__(self, n, i, h, depth):
        super().__init__()
        dims = [i] + [h] * depth + [1]
        self.params = nn.ParameterList()
        self.hidden = depth
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            bound = 1 / math.sqrt(d_in) if d_out != 1 else 3e-3
            self.params.append(nn.Parameter(torch.empty(n, d_in, d_out).uniform_(-bound, bound)))
            self.params.append(nn.Parameter(torch.full((n, 1, d_out), 0.1) if d_out != 1
                                            else torch.empty(n, 1, 1).uniform_(-3e-3, 3e-3)))
            if d_out != 1:
                self.params.append(nn.Parameter(torch.ones(n, 1, d_out)))
                self.params.append(nn.Parameter(torch.zeros(n, 1, d_out)))
        self.n = n

    def forward(self, s, a):
        x = torch.cat([s, a], -1).unsqueeze(0).expand(self.n, -1, -1)
        p = list(self.params)
        for j in range(self.hidden):
            w, b, g, beta = p[4 * j: 4 * j + 4]
            x = torch.relu(torch.baddbmm(b, x, w))
            x = nn.functional.layer_norm(x, x.shape[-1:], eps=1e-6) * g + beta
        return torch.baddbmm(p[-1], x, p[-2]).squeeze(-1)  # [N, B]


def _plain_mlp(i, o, h, depth, last_bound):
    layers, d = [], i
    for _ in range(depth):
        lin = nn.Linear(d, h)
        nn.init.uniform_(lin.weight, -1 / math.sqrt(d), 1 / math.sqrt(d))
        nn.init.constant_(lin.bias, 0.1)
        layers += [lin, nn.ReLU()]
        d = h
    last = nn.Linear(d, o)
    nn.init.uniform_(last.weight, -last_bound, last_bound)
    nn.init.uniform_(last.bias, -last_bound, last_bound)
    return nn.Sequential(*layers, last)


class PlainPPL:
    """PPL^R in plain eager PyTorch, the loop a user would write without TorchRL: ``step(batch, step, noise)``.

    ``batch``: dict of tensors ``obs, act, rew, next_obs, next_act, term`` (rewards and terminals flat [B]);
    ``noise``: the target-policy smoothing noise, already clipped (the caller draws it, so that a test can give
    the library's). ``params``: start from these (:func:`library_params`) instead of a fresh initialisation."""

    def __init__(self, obs: int, act: int, device="cpu", params: dict | None = None):
        import copy

        dev = torch.device(device)
        self.actor = _plain_mlp(obs, act, HIDDEN, DEPTH, 1e-3).to(dev)
        self.critic = _Ensemble(NUM_Q, obs + act, HIDDEN, DEPTH).to(dev)
        self.pot = _plain_mlp(obs + act, 1, HIDDEN, DEPTH, 3e-3).to(dev)
        self.actor_t, self.critic_t = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        if params is not None:
            with torch.no_grad():
                for name, module in self.networks().items():
                    mine = list(module.parameters())
                    if [p.shape for p in mine] != [p.shape for p in params[name]]:
                        raise ValueError(f"{name}: the given parameters do not have the benchmark's shapes")
                    for p, q in zip(mine, params[name]):
                        p.copy_(q)
        self.opt_a = torch.optim.Adam(self.actor.parameters(), lr=HP["actor_lr"])
        self.opt_c = torch.optim.Adam(self.critic.parameters(), lr=HP["critic_lr"])
        self.opt_f = torch.optim.Adam(self.pot.parameters(), lr=HP["critic_lr"] * HP["potential_lr_scale"])

    def networks(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "potential": self.pot, "actor_t": self.actor_t,
                "critic_t": self.critic_t}

    def params(self) -> dict[str, list[torch.Tensor]]:
        return {name: [p.detach() for p in m.parameters()] for name, m in self.networks().items()}

    def f(self, s, a):
        return -self.pot(torch.cat([s, a], -1)).abs().squeeze(-1)

    def step(self, batch: dict, step: int, noise: torch.Tensor) -> dict:
        s, a, r, s2, a2, term = (batch[k] for k in ("obs", "act", "rew", "next_obs", "next_act", "term"))
        tau = HP["tau"]
        out = {}
        with torch.no_grad():
            na = (torch.tanh(self.actor_t(s2)) + noise).clamp(-1, 1)
            nv = self.critic_t(s2, na).min(0).values - HP["critic_bc_coef"] * (na - a2).pow(2).sum(-1)
            y = r + HP["gamma"] * (1 - term) * nv
        loss_c = (self.critic(s, a) - y).pow(2).mean(1).sum()
        self.opt_c.zero_grad()
        loss_c.backward()
        self.opt_c.step()
        out["loss_qvalue"] = loss_c.detach()
        if step % HP["policy_freq"] == 0:
            pa = torch.tanh(self.actor(s))
            q = self.critic(s, pa).min(0).values
            lmbda = 1 / q.abs().mean().detach()
            loss_a = (HP["actor_bc_coef"] * (pa - a).pow(2).sum(-1) - lmbda * q).mean() - self.f(s, pa).mean()
            self.opt_a.zero_grad()
            loss_a.backward()
            with torch.no_grad():  # soft targets towards the pre-update actor, as the authors' code
                for p, pt in zip(list(self.actor.parameters()) + list(self.critic.parameters()),
                                 list(self.actor_t.parameters()) + list(self.critic_t.parameters())):
                    pt.mul_(1 - tau).add_(tau * p)
            self.opt_a.step()
            with torch.no_grad():
                pt_a = torch.tanh(self.actor_t(s))
            loss_f = self.f(s, pt_a).mean() - HP["w"] * self.f(s, a).mean()
            self.opt_f.zero_grad()
            loss_f.backward()
            self.opt_f.step()
            out.update(loss_actor=loss_a.detach(), loss_potential=loss_f.detach())
        return out


def target_noise(like: torch.Tensor) -> torch.Tensor:
    return (torch.randn_like(like) * HP["policy_noise"]).clamp(-HP["noise_clip"], HP["noise_clip"])


def plain_runner(obs: int, act: int, batch: int, data: dict, device, params: dict | None = None):
    """``run(k)``: k :class:`PlainPPL` updates, each on ``batch`` rows of in-memory tensors picked with randint."""
    dev = torch.device(device)
    plain = PlainPPL(obs, act, dev, params)
    tensors = {k: torch.as_tensor(v).to(dev) for k, v in data.items()}
    n = tensors["obs"].shape[0]
    state = {"step": 0}

    def run(k: int):
        step = state["step"]
        for i in range(k):
            idx = torch.randint(0, n, (batch,), device=dev)
            b = {name: t[idx] for name, t in tensors.items()}
            plain.step(b, step + i, target_noise(b["next_act"]))
        state["step"] = step + k
    run.plain = plain
    return run


# ------------------------------------------------------------------------------------------ JAX
def jax_ppl(obs: int, act: int, params: dict | None = None):
    """PPL^R in JAX in the authors' style: ``(state, critic_step, delayed_step)``, pure functions to jit.

    ``critic_step(state, batch, noise) -> (state, loss_qvalue)``; ``delayed_step(state, batch) -> (state,
    loss_actor, loss_potential)`` (actor, soft targets towards the pre-update actor, potential). ``batch``: dict of
    arrays ``obs, act, rew, next_obs, next_act, term`` (rewards, terminals flat [B]); ``noise``: the clipped
    target-policy smoothing noise. ``params`` (:func:`library_params`): start from the library's parameters.
    """
    import jax
    import jax.numpy as jnp

    def init_mlp(key, i, o, last_bound, ln):
        dims = [i] + [HIDDEN] * DEPTH + [o]
        params = []
        for j, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            key, k1, k2 = jax.random.split(key, 3)
            last = j == len(dims) - 2
            bound = last_bound if last else 1 / math.sqrt(d_in)
            w = jax.random.uniform(k1, (d_in, d_out), minval=-bound, maxval=bound)
            b = jax.random.uniform(k2, (d_out,), minval=-bound, maxval=bound) if last else jnp.full((d_out,), 0.1)
            layer = {"w": w, "b": b}
            if ln and not last:
                layer.update(g=jnp.ones(d_out), beta=jnp.zeros(d_out))
            params.append(layer)
        return params

    def apply_mlp(params, x):
        for layer in params[:-1]:
            x = jax.nn.relu(x @ layer["w"] + layer["b"])
            if "g" in layer:
                mu = x.mean(-1, keepdims=True)
                var = ((x - mu) ** 2).mean(-1, keepdims=True)
                x = (x - mu) * jax.lax.rsqrt(var + 1e-6) * layer["g"] + layer["beta"]
        return x @ params[-1]["w"] + params[-1]["b"]

    def pi(p, s):
        return jnp.tanh(apply_mlp(p, s))

    def q_ens(p, s, a):  # [N, B]
        sa = jnp.concatenate([s, a], -1)
        return jax.vmap(lambda pp: apply_mlp(pp, sa).squeeze(-1))(p)

    def f_pot(p, s, a):
        return -jnp.abs(apply_mlp(p, jnp.concatenate([s, a], -1))).squeeze(-1)

    def adam_init(p):
        z = jax.tree_util.tree_map(jnp.zeros_like, p)
        return {"m": z, "v": z, "t": jnp.zeros((), jnp.int32)}

    def adam(p, g, st, lr, b1=0.9, b2=0.999, eps=1e-8):
        t = st["t"] + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, st["m"], g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, st["v"], g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        p = jax.tree_util.tree_map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), p, m, v)
        return p, {"m": m, "v": v, "t": t}

    if params is None:
        ka, kc, kf = jax.random.split(jax.random.PRNGKey(0), 3)
        actor = init_mlp(ka, obs, act, 1e-3, False)
        critic = jax.vmap(lambda kk: init_mlp(kk, obs + act, 1, 3e-3, True))(jax.random.split(kc, NUM_Q))
        pot = init_mlp(kf, obs + act, 1, 3e-3, False)
        actor_t, critic_t = actor, critic
    else:
        actor, pot, actor_t = (to_jax_mlp(params[n]) for n in ("actor", "potential", "actor_t"))
        critic, critic_t = (to_jax_ensemble(params[n]) for n in ("critic", "critic_t"))
    state = {"actor": actor, "critic": critic, "pot": pot, "actor_t": actor_t, "critic_t": critic_t,
             "oa": adam_init(actor), "oc": adam_init(critic), "of": adam_init(pot)}
    tau, gamma = HP["tau"], HP["gamma"]

    def critic_step(st, b, noise):
        s, a, r, s2, a2, term = (b[x] for x in ("obs", "act", "rew", "next_obs", "next_act", "term"))

        def critic_loss(cp):
            na = jnp.clip(pi(st["actor_t"], s2) + noise, -1, 1)
            nv = q_ens(st["critic_t"], s2, na).min(0) - HP["critic_bc_coef"] * ((na - a2) ** 2).sum(-1)
            y = jax.lax.stop_gradient(r + gamma * (1 - term) * nv)
            return ((q_ens(cp, s, a) - y) ** 2).mean(1).sum()

        loss, gc = jax.value_and_grad(critic_loss)(st["critic"])
        critic, oc = adam(st["critic"], gc, st["oc"], HP["critic_lr"])
        return {**st, "critic": critic, "oc": oc}, loss

    def delayed_step(st, b):
        s, a = b["obs"], b["act"]

        def actor_loss(ap):
            pa = pi(ap, s)
            q = q_ens(st["critic"], s, pa).min(0)
            lmbda = jax.lax.stop_gradient(1 / jnp.abs(q).mean())
            return (HP["actor_bc_coef"] * ((pa - a) ** 2).sum(-1) - lmbda * q).mean() - f_pot(st["pot"], s, pa).mean()

        loss_a, ga = jax.value_and_grad(actor_loss)(st["actor"])
        actor_t = jax.tree_util.tree_map(lambda p, t: tau * p + (1 - tau) * t, st["actor"], st["actor_t"])
        critic_t = jax.tree_util.tree_map(lambda p, t: tau * p + (1 - tau) * t, st["critic"], st["critic_t"])
        actor, oa = adam(st["actor"], ga, st["oa"], HP["actor_lr"])
        pt = pi(actor_t, s)

        def pot_loss(fp):
            return f_pot(fp, s, pt).mean() - HP["w"] * f_pot(fp, s, a).mean()

        loss_f, gf = jax.value_and_grad(pot_loss)(st["pot"])
        pot, of = adam(st["pot"], gf, st["of"], HP["critic_lr"] * HP["potential_lr_scale"])
        st = {**st, "actor": actor, "oa": oa, "actor_t": actor_t, "critic_t": critic_t, "pot": pot, "of": of}
        return st, loss_a, loss_f

    return state, critic_step, delayed_step


def to_jax_mlp(tensors: list[torch.Tensor]) -> list[dict]:
    """nn.Linear weights and biases (library order) -> the JAX MLP's layers ``{"w": [in, out], "b": [out]}``."""
    import jax.numpy as jnp

    return [{"w": jnp.asarray(w.T.cpu().numpy()), "b": jnp.asarray(b.cpu().numpy())}
            for w, b in zip(tensors[0::2], tensors[1::2])]


def to_jax_ensemble(tensors: list[torch.Tensor]) -> list[dict]:
    """The stacked critic parameters (library order) -> the vmapped JAX ensemble's layers (leading dim N)."""
    import jax.numpy as jnp

    layers, i = [], 0
    while i < len(tensors):
        hidden = i + 2 < len(tensors)
        names = ("w", "b", "g", "beta") if hidden else ("w", "b")
        layer = {}
        for name, t in zip(names, tensors[i:i + len(names)]):
            layer[name] = jnp.asarray((t if name == "w" else t.squeeze(1)).cpu().numpy())
        layers.append(layer)
        i += len(names)
    return layers


def from_jax_state(state: dict) -> dict[str, list[torch.Tensor]]:
    """The JAX state's networks back in the library's layout (for comparisons)."""
    def t(x):
        return torch.tensor(np.array(x))

    def mlp(layers):
        return [p for layer in layers for p in (t(layer["w"]).T, t(layer["b"]))]

    def ens(layers):
        out = []
        for layer in layers:
            out.append(t(layer["w"]))
            out += [t(layer[k]).unsqueeze(1) for k in ("b", "g", "beta") if k in layer]
        return out
    return {"actor": mlp(state["actor"]), "critic": ens(state["critic"]), "potential": mlp(state["pot"]),
            "actor_t": mlp(state["actor_t"]), "critic_t": ens(state["critic_t"])}


def jax_runner(obs: int, act: int, batch: int, data: dict, k: int, params: dict | None = None):
    """``run(k)`` = one jitted ``lax.fori_loop`` of ``k`` :func:`jax_ppl` updates, sampling inside the loop (the
    authors' style: random indices and the smoothing noise from JAX keys, ``lax.cond`` on delayed steps)."""
    import jax
    import jax.numpy as jnp

    state, critic_step, delayed_step = jax_ppl(obs, act, params)
    state = {**state, "key": jax.random.PRNGKey(0)}
    d = {name: jnp.asarray(v) for name, v in data.items()}
    n = d["obs"].shape[0]

    def body(i, st):
        key, k_idx, k_noise = jax.random.split(st["key"], 3)
        idx = jax.random.randint(k_idx, (batch,), 0, n)
        b = {x: d[x][idx] for x in ("obs", "act", "rew", "next_obs", "next_act", "term")}
        noise = jnp.clip(jax.random.normal(k_noise, b["next_act"].shape) * HP["policy_noise"],
                         -HP["noise_clip"], HP["noise_clip"])
        st, _ = critic_step({**st, "key": key}, b, noise)
        return jax.lax.cond(i % HP["policy_freq"] == 0, lambda st: delayed_step(st, b)[0], lambda st: st, st)

    @jax.jit
    def run_k(st):
        return jax.lax.fori_loop(0, k, body, st)

    box = {"state": state}

    def run(kk: int):
        if kk != k:
            raise ValueError(f"the JAX runner is compiled for {k} updates per call")
        box["state"] = run_k(box["state"])
        jax.block_until_ready(box["state"])
    return run


# ------------------------------------------------------------------------------------------ device and GEMM
def device_synchronizer(device):
    """What ends a timed block: waiting for the device's queued work (``torch.cuda.synchronize``); on CPU nothing."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def onednn_available() -> bool:
    """Whether this torch build has oneDNN's fp32 linear kernel (CPU builds with MKLDNN)."""
    return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def gemm_backends(device) -> list[str]:
    """The GEMM kernels whose throughput bounds the update: torch's (``aten``), and oneDNN's on a CPU that has it
    (torch routes some CPU GEMMs there itself; the faster of the two is what a perfect update could run at)."""
    out = ["aten"]
    if torch.device(device).type == "cpu" and onednn_available():
        out.append("onednn")
    return out


def measure_gemm(backend: str, m: int, k: int, n: int, *, device="cpu", min_time: float = 0.05,
                 repeats: int = 5) -> float:
    """GFLOP/s of ``x [m, k] @ w[n, k]^T`` in fp32 on ``backend`` (``aten``: ``F.linear``; ``onednn``: oneDNN's
    linear kernel, a private torch op used only here): median of ``repeats`` timings of >= ``min_time`` s."""
    dev = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    x, w = torch.randn(m, k, generator=g).to(dev), torch.randn(n, k, generator=g).to(dev)
    if backend == "onednn":
        def gemm():
            return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
    else:
        def gemm():
            return nn.functional.linear(x, w)
    sync = device_synchronizer(dev)

    def seconds(iters: int) -> float:
        t0 = time.perf_counter()
        for _ in range(iters):
            gemm()
        sync()
        return (time.perf_counter() - t0) / iters
    for _ in range(3):
        gemm()
    sync()
    iters = max(1, int(min_time / max(seconds(1), 1e-7)))
    times = sorted(seconds(iters) for _ in range(repeats))
    return 2.0 * m * k * n / times[len(times) // 2] / 1e9


def gemm_limits(device, *, min_time: float = 0.1, repeats: int = 7) -> dict:
    """fp32 GFLOP/s of a 1024x256 @ 256x256 forward GEMM per backend."""
    return {b: measure_gemm(b, *GEMM_SHAPE, device=device, min_time=min_time, repeats=repeats)
            for b in gemm_backends(device)}


def machine_info(device) -> dict:
    info = {
        "cpu_model": cpu_model(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(device),
        "onednn_available": onednn_available(),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        import jax

        info["jax"] = jax.__version__
    except ImportError:
        info["jax"] = None
    return info


# ------------------------------------------------------------------------------------------ driver
def warm_up(run, steps: int, *, max_blocks: int = 8, tol: float = 0.1, sync=lambda: None) -> list[float]:
    """Runs blocks of ``steps`` updates until two blocks in a row agree within ``tol`` (at least three).

    One block is not enough: a jitted JAX loop runs its first two or three calls several times slower
    than later ones on some CPUs (seen here: 14 then 99 steps/s), and compiled torch graphs compile at their
    first calls (one graph for critic-only steps, one for steps with the delayed updates). Timing those would flatter whichever variant warmed up faster.
    """
    speeds = []
    for _ in range(max_blocks):
        t0 = time.perf_counter()
        run(steps)
        sync()
        speeds.append(steps / (time.perf_counter() - t0))
        if len(speeds) >= 3 and abs(speeds[-1] - speeds[-2]) <= tol * max(speeds[-2:]):
            break
    return speeds


def time_interleaved(runners: dict, steps: int, repeats: int, warmup: int, progress: bool,
                     probes: dict | None = None, sync=lambda: None) -> dict:
    """Median steps/s of each runner; blocks of ``steps`` updates, round-robin across runners, each block ended by
    ``sync()`` (waiting for the device) before the clock stops.

    ``probes`` (name -> callable returning a number, e.g. GEMM GFLOP/s) run once per round too, so the
    hardware limit is measured under the same load as the updates; their medians are returned as well.
    """
    from tqdm.auto import tqdm

    probes = probes or {}
    probed = {name: [] for name in probes}

    for name, run in runners.items():
        warm_up(run, warmup, sync=sync)
    times = {name: [] for name in runners}
    bar = tqdm(total=repeats * len(runners), desc="timing", disable=not progress, leave=False)
    for _ in range(repeats):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run(steps)
            sync()
            times[name].append(steps / (time.perf_counter() - t0))
            bar.update()
        for name, probe in probes.items():
            probed[name].append(probe())
    bar.close()
    out = {name: {"steps_per_s": statistics.median(v), "all": [round(x, 2) for x in v]} for name, v in times.items()}
    out.update({name: {"value": statistics.median(v), "all": [round(x, 1) for x in v]} for name, v in probed.items()})
    return out


def bench_shape(shape: str, args, tmp: Path) -> dict:
    obs, act, batch = SHAPES[shape]
    path = make_dataset(tmp, obs, act, args.dataset_size)
    buffer = make_buffer(path, batch, tmp / "cache", args.device)
    td = buffer._storage._storage  # the memmapped transitions, for the plain/JAX loops' own sampling
    data = {
        "obs": np.asarray(td["observation"]), "act": np.asarray(td["action"]),
        "rew": np.asarray(td["next", "reward"]).reshape(-1), "next_obs": np.asarray(td["next", "observation"]),
        "next_act": np.asarray(td["next", "action"]), "term": np.asarray(td["next", "terminated"]).reshape(-1).astype(np.float32),
    }
    ours = dict(device=args.device)
    runners = {"ppl": ours_runner("ppl", obs, act, buffer, **ours)}
    notes = []
    from ppl_torchrl.update import compiler_available

    compiling = args.compile and compiler_available(args.device)
    resident = resident_sampler(buffer, batch, args.device)
    if compiling:
        runners["ppl_compiled"] = ours_runner("ppl", obs, act, buffer, compiled=True, **ours)
        if args.per_call > 1:
            runners[f"ppl_compiled_x{args.per_call}"] = ours_runner("ppl", obs, act, buffer, compiled=True,
                                                                    per_call=args.per_call, **ours)
        runners["ppl_compiled_resident"] = ours_runner("ppl", obs, act, buffer, compiled=True, sample=resident, **ours)
        if torch.device(args.device).type == "cuda":
            runners["ppl_cudagraphs"] = ours_runner("ppl", obs, act, buffer, compiled=True, cudagraphs=True, **ours)
            runners["ppl_cudagraphs_resident"] = ours_runner("ppl", obs, act, buffer, compiled=True, cudagraphs=True,
                                                             sample=resident, **ours)
        else:
            notes.append("CUDA graphs need a CUDA device: the ppl_cudagraphs columns are skipped on "
                         f"{args.device}.")
    runners["rebrac"] = ours_runner("rebrac", obs, act, buffer, **ours)
    if compiling:
        runners["rebrac_compiled"] = ours_runner("rebrac", obs, act, buffer, compiled=True, **ours)
    elif args.compile:
        notes.append(f"torch.compile cannot build kernels for {args.device} here (no C++ compiler / triton): "
                     f"compiled columns skipped.")
        print(notes[-1], file=sys.stderr)
    start = library_params(runners["ppl"].algorithm)  # plain and JAX start where the library's PPL^R starts
    runners["plain"] = plain_runner(obs, act, batch, data, args.device, params=start)
    if args.jax:
        try:
            import jax  # noqa: F401

            runners["jax"] = jax_runner(obs, act, batch, data, args.steps, params=start)
        except ImportError:
            notes.append("jax not importable: JAX column skipped (pip install 'ppl-torchrl[bench]').")
            print(notes[-1], file=sys.stderr)
    runners["sample"] = sample_runner(buffer)
    probes = {f"gemm_{b}": (lambda b=b: measure_gemm(b, *GEMM_SHAPE, device=args.device, min_time=0.05, repeats=1))
              for b in gemm_backends(args.device)}
    res = time_interleaved(runners, args.steps, args.repeats, args.steps, not args.no_progress, probes,
                           sync=device_synchronizer(args.device))
    gemm_gflops = {name.split("_", 1)[1]: res.pop(name)["value"] for name in probes}
    limit_gflops = max(gemm_gflops.values())
    flops = {"ppl": update_flops(obs, act, batch), "rebrac": update_flops(obs, act, batch, potential=False)}
    limit_steps = {k: limit_gflops * 1e9 / v for k, v in flops.items()}
    share = {name: r["steps_per_s"] / limit_steps[_kind(name)] for name, r in res.items() if name != "sample"}
    return {"shape": dict(obs=obs, act=act, batch=batch), "results": res, "flops": flops,
            "gemm_gflops": gemm_gflops, "limit_gflops": limit_gflops, "limit_backend": max(gemm_gflops, key=gemm_gflops.get),
            "steps_per_s_at_limit": limit_steps, "share_of_limit": share, "notes": notes}


def _kind(name: str) -> str:
    return "rebrac" if name.startswith("rebrac") else "ppl"


def _order(res: dict) -> list[str]:
    grouped = sorted((k for k in res if k.startswith("ppl_compiled_x")), key=lambda k: int(k.rsplit("x", 1)[1]))
    return [n for v in VARIANTS for n in ([v, *grouped] if v == "ppl_compiled" else [v]) if n in res]


def title(machine: dict) -> str:
    where = machine["cpu_model"] + (f" + {machine['gpu']}" if machine.get("gpu") else "")
    jax_v = machine.get("jax") or "not installed"
    return (f"PPL^R / ReBRAC gradient steps per second on {where} ({machine['cpus']} CPUs, "
            f"{machine['torch_threads']} torch threads, device {machine['device']}); torch {machine['torch']}, "
            f"jax {jax_v}")


def table(report: dict) -> str:
    m = report["machine"]
    lines = [title(m)]
    lim = report["gemm_gflops"]
    gm, gk, gn = GEMM_SHAPE
    lines.append(f"fp32 GEMM {gm}x{gk}@{gk}x{gn} at start: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in lim.items())
                 + "; the limit below is the median measured between the timed blocks of each shape")
    hdr = f"{'shape':8} {'variant':16} {'steps/s':>8} {'/plain':>7} {'/jax':>6} {'/limit':>7} {'GFLOP/s':>8}"
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for shape, sr in report["shapes"].items():
        res = sr["results"]
        plain = res["plain"]["steps_per_s"]
        jx = res.get("jax", {}).get("steps_per_s")
        for name in _order(res):
            v = res[name]["steps_per_s"]
            if name == "sample":
                lines.append(f"{shape:8} {'buffer.sample':16} {v:8.0f}   ({1e3 / v:.3f} ms per sample)")
                continue
            kind = _kind(name)
            gf = v * sr["flops"][kind] / 1e9
            rj = f"{v / jx:6.2f}" if jx else f"{'-':>6}"
            lines.append(f"{shape:8} {name:16} {v:8.1f} {v / plain:7.2f} {rj} {sr['share_of_limit'][name]:7.2f} {gf:8.0f}")
        lines.append(f"{shape:8} GEMM (median between blocks): " + ", ".join(
            f"{k} {v:.0f} GFLOP/s" for k, v in sr["gemm_gflops"].items())
            + f" -> limit {sr['limit_gflops']:.0f} ({sr['limit_backend']})")
        lines.append(f"{shape:8} FLOPs/update: ppl {sr['flops']['ppl'] / 1e9:.2f} G, rebrac {sr['flops']['rebrac'] / 1e9:.2f} G;"
                     f" steps/s at limit: ppl {sr['steps_per_s_at_limit']['ppl']:.0f}, rebrac {sr['steps_per_s_at_limit']['rebrac']:.0f}")
        best = [n for n in _order(res) if n.startswith(("ppl_compiled", "ppl_cudagraphs"))]
        if best:
            top = max(best, key=lambda n: res[n]["steps_per_s"])
            lines.append(f"{shape:8} compiled PPL^R ({top}) reaches {100 * sr['share_of_limit'][top]:.0f} % of the GEMM limit")
        for note in sr.get("notes", []):
            lines.append(f"{shape:8} note: {note}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="updates per timed block (and per JAX call)")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per variant; the median is reported")
    parser.add_argument("--shape", choices=["antmaze", "mujoco", "both"], default="both")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=None, help="write the report here (atomically)")
    parser.add_argument("--dataset-size", type=int, default=100_000, help="random transitions in the buffer")
    parser.add_argument("--no-jax", dest="jax", action="store_false", help="skip the JAX column")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="skip the compiled columns (each compiles for a minute or so on a small CPU)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--per-call", type=int, default=2,
                        help="updates per call of the ppl_compiled_xN column (algorithm.run_updates; 1: skip it)")
    args = parser.parse_args(argv)
    if args.steps < 2 or args.repeats < 1:
        parser.error("--steps must be >= 2 and --repeats >= 1")
    if args.per_call < 1:
        parser.error("--per-call must be >= 1")
    if args.per_call > 1 and args.steps % args.per_call:
        parser.error(f"--steps ({args.steps}) must be a multiple of --per-call ({args.per_call})")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here; use --device cpu")
    machine = machine_info(args.device)
    print(title(machine))
    report = {
        "machine": machine,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "gemm_gflops": gemm_limits(args.device), "shapes": {},
    }
    shapes = list(SHAPES) if args.shape == "both" else [args.shape]
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            report["shapes"][shape] = bench_shape(shape, args, Path(tmp))
    report["gemm_gflops_end"] = gemm_limits(args.device)
    text = table(report)
    print(text)
    report["table"] = text
    if args.json is not None:
        atomic_write(args.json, json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
