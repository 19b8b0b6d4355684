"""Several PPL^R / ReBRAC seeds trained in one process, on parameters stacked along a seed dimension.

A paper table is 5 seeds per dataset. On a small batch (AntMaze: 256) one seed leaves the hardware
mostly idle between small kernels; S seeds stacked make every kernel S times larger for one dispatch.
The programs are those of :mod:`ppl_torchrl.compiled` with ``seeds=True``: gradients per seed by
``torch.func.vmap``, the soft update and Adam elementwise on the stacked tensors.

Each seed keeps its own initialisation, optimizer state and batches (``step`` takes ``[S, B, ...]``
tensors or a list of S TensorDict batches). The target-smoothing noise is one ``[S, B, act]`` draw from
the global RNG, so seed ``i`` sees other noise than a run of that seed alone would (same distribution).
The algorithms passed in are not touched while training; :meth:`MultiSeedReBRACUpdate.write_back` copies
the stacked state back into them (parameters, targets, Adam state) to evaluate or checkpoint them.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ppl_torchrl import keys
from ppl_torchrl.compiled import (
    ACTOR_DIAGNOSTICS,
    CRITIC_DIAGNOSTICS,
    POTENTIAL_DIAGNOSTICS,
    CompiledReBRACUpdate,
    _compiled_programs,
    _critic_program,
    _delayed_program,
)

__all__ = ["MultiSeedReBRACUpdate"]

_KEYS = (keys.OBSERVATION, keys.ACTION, keys.NEXT_OBSERVATION, keys.NEXT_ACTION, keys.REWARD, keys.TERMINATED)


class MultiSeedReBRACUpdate:
    """The PPL^R / ReBRAC update of S algorithms at once.

    Args:
        algorithms: S ``ppl`` or ``rebrac`` algorithms from :func:`ppl_torchrl.algorithms.make_algorithm`
            with the same architecture and loss constants (different seeds).
        tau, policy_freq: as in :class:`~ppl_torchrl.compiled.CompiledReBRACUpdate`.
        compile: compile the two programs (``torch.compile``); ``False`` runs them eagerly (for debugging).
        mode, backend: ``torch.compile`` options.

    The state is copied at construction (learning rates included): change the algorithms afterwards and
    they are out of step until a new ``MultiSeedReBRACUpdate`` is built from them.
    """

    def __init__(self, algorithms: Sequence, *, tau: float, policy_freq: int = 2, compile: bool = True,
                 mode: str | None = None, backend: str = "inductor"):
        if len(algorithms) < 1:
            raise ValueError("MultiSeedReBRACUpdate needs at least one algorithm.")
        names = {a.name for a in algorithms}
        if not names <= {"ppl", "rebrac"} or len(names) != 1:
            raise ValueError(f"All algorithms must be 'ppl' or all 'rebrac'; got {sorted(names)}.")
        self.algorithms = list(algorithms)
        use_potential = "potential" in self.algorithms[0].optimizers
        # Per-seed views of each loss (layer programs, parameter lists, Adam state); nothing is compiled here.
        self._single = [CompiledReBRACUpdate(a.loss, a.optimizers, tau=tau, policy_freq=policy_freq,
                                             use_potential=use_potential, metrics=True) for a in self.algorithms]
        first = self._single[0]
        for u in self._single[1:]:
            if u._specs != first._specs or u._c != first._c or u.shapes() != first.shapes():
                raise ValueError("All seeds must share the architecture and loss constants (only the seed may differ).")
        self.num_seeds = len(self._single)
        self.use_potential, self.tau, self.policy_freq = use_potential, float(tau), int(policy_freq)
        self._specs, self._c, self.gamma = first._specs, first._c, first.gamma
        self.min_action, self.max_action = first.min_action, first.max_action
        groups = ["actor", "critic", "actor_target", "critic_target"] + (["potential"] if use_potential else [])
        self.params = {g: self._stack([getattr(u, f"{g}_params") for u in self._single]) for g in groups}
        self.adam, self.hyper, self._lr = {}, {}, {}
        for g in ["critic", "actor"] + (["potential"] if use_potential else []):
            states = [u.adam[g].tensors() for u in self._single]
            steps = {float(t) for st in states for t in st[2]}
            if len(steps) != 1:
                raise ValueError(f"The seeds' {g} optimizers are at different steps {sorted(steps)}.")
            m = self._stack([st[0] for st in states])
            v = self._stack([st[1] for st in states])
            step = [t.detach().clone().to(m[0].device) for t in states[0][2]]
            self.adam[g] = (m, v, step)
            lr, b1, b2, eps = first.adam[g].hyper()
            self._lr[g] = torch.tensor(lr, dtype=torch.float32, device=m[0].device)
            self.hyper[g] = (b1, b2, eps)
        if compile:
            self._critic_step, self._delayed_step = _compiled_programs(
                mode, backend, self.gamma.device.type, (self._specs, self._c, first.shapes(), self.num_seeds))[:2]
        else:
            self._critic_step, self._delayed_step = _critic_program, _delayed_program

    @staticmethod
    def _stack(per_seed: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        return [torch.stack([t.detach() for t in ts]).contiguous() for ts in zip(*per_seed)]

    # -- the step
    def __call__(self, batches, step: int) -> dict:
        """One update of every seed; ``batches``: a list of S TensorDict batches, or one ``[S, B]`` TensorDict."""
        if isinstance(batches, (list, tuple)):
            if len(batches) != self.num_seeds:
                raise ValueError(f"Got {len(batches)} batches for {self.num_seeds} seeds.")
            tensors = [torch.stack([b.get(k) for b in batches]) for k in _KEYS]
        else:
            tensors = [batches.get(k) for k in _KEYS]
        return self.step_tensors(*tensors, step=step)

    def step_tensors(self, obs, action, next_obs, next_action, reward, terminated, step: int) -> dict:
        """One update from ``[S, B, ...]`` tensors; returns ``[S]`` diagnostics (detached)."""
        if obs.dim() < 3 or obs.shape[0] != self.num_seeds:
            raise ValueError(f"Expected [num_seeds={self.num_seeds}, batch, obs_dim] observations, got {tuple(obs.shape)}.")
        p = self.params
        normal = self._normal_like(next_action)
        m, v, steps = self.adam["critic"]
        with torch.no_grad():
            aux = self._critic_step(
                self._specs, self._c, True, p["critic"], m, v, steps, self._lr["critic"], self.hyper["critic"],
                p["actor_target"], p["critic_target"], obs, action, next_obs, next_action, reward, terminated,
                normal, self.gamma, self.min_action, self.max_action)
        out = dict(zip(CRITIC_DIAGNOSTICS, aux))
        if step % self.policy_freq != 0:
            return out
        am, av, asteps = self.adam["actor"]
        if self.use_potential:
            fm, fv, fsteps = self.adam["potential"]
            pot, flr, fhyper = p["potential"], self._lr["potential"], self.hyper["potential"]
        else:
            fm = fv = fsteps = pot = flr = fhyper = None
        with torch.no_grad():
            res = self._delayed_step(
                self._specs, self._c, True, self.tau, p["actor"], am, av, asteps, self._lr["actor"],
                self.hyper["actor"], p["critic"], p["actor_target"], p["critic_target"], pot, fm, fv, fsteps,
                flr, fhyper, obs, action)
        out.update(zip(ACTOR_DIAGNOSTICS + (POTENTIAL_DIAGNOSTICS if self.use_potential else ()), res))
        return out

    _normal_like = staticmethod(torch.randn_like)

    # -- back to the per-seed algorithms
    @torch.no_grad()
    def write_back(self) -> None:
        """Copies every seed's parameters, targets and Adam state into its algorithm (to evaluate or save it)."""
        for i, u in enumerate(self._single):
            for g, stacked in self.params.items():
                for dst, src in zip(getattr(u, f"{g}_params"), stacked):
                    dst.copy_(src[i])
            for g, (m, v, steps) in self.adam.items():
                dm, dv, dsteps = u.adam[g].tensors()
                for dst, src in zip(dm, m):
                    dst.copy_(src[i])
                for dst, src in zip(dv, v):
                    dst.copy_(src[i])
                for dst, src in zip(dsteps, steps):
                    dst.copy_(src)
