r"""The paper's toy experiment (Asadulaev et al., NeurIPS 2024, §4 and Fig. 1), as reusable pieces.

The problem: the agent walks from :math:`S_0` (left) to the target :math:`S_T` through ``num_states``
states evenly spaced on :math:`x \in [-1.3, 0]`; at each state it picks a continuous action, the height
:math:`y` of its path there. The reward of a state-action pair is minus the Euclidean distance of
:math:`(x, y)` to the target pair :math:`(x_T, y_T)`, so the best path is the straight segment
:math:`y \equiv y_T` (:math:`\pi^*`). The dataset holds three crossing, sub-optimal expert paths; the
best one can do *inside their support* is to switch, at every :math:`x`, to the curve that is best there
(the stitched behaviour :math:`\beta^*`).

The experiment trains :math:`Q^\beta` by SARSA-style Bellman updates on the dataset actions, then two
deterministic policies against that fixed critic:

* ``baseline`` (TD3+BC-like, the paper's :math:`\beta`): :math:`\min_\beta E_D[-Q^\beta(s, \beta(s)) +
  \|\beta(s) - a\|^2]` (no :math:`\lambda` normalisation, BC weight 1), i.e. :class:`ReBRACLoss` with
  ``normalize_q=False, actor_bc_coef=1``;
* ``ppl``: PPL's saddle problem (eq. 12) with the same :math:`Q^\beta` and ``w = 8``, no BC term, i.e.
  :class:`PartialOTLoss` with ``actor_bc_coef=0, normalize_q=False``.

The paper leaves many choices open (end points, curve shapes, :math:`\gamma`, batch size, what the state
holds, action scaling); :class:`ToyConfig` holds ours and ``docs/toy.md`` explains each.

Everything here is deterministic for a given seed on one device: full-batch updates, seeded
initialisation, no sampling.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import nullcontext
from types import SimpleNamespace
from typing import Callable, Mapping

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from ppl_torchrl import keys
from ppl_torchrl.modules import make_actor, make_potential, make_qvalue_ensemble
from ppl_torchrl.objectives import PartialOTLoss, ReBRACLoss
from ppl_torchrl.objectives.partial_ot import check_w
from ppl_torchrl.training.onestep import fixed_q_algorithm, sarsa_algorithm

# ---------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class CurveSpec:
    r"""One dataset path: :math:`y(u) = y_T + h \cdot u^p (1-u)^q / \max_u[u^p (1-u)^q]`, :math:`u \in [0, 1]`.

    A bump that starts and ends at the target height :math:`y_T` (so every expert leaves :math:`S_0` and
    reaches :math:`S_T`) and peaks at :math:`u = p / (p + q)` with height ``height``: ``rise > fall``
    peaks late (the path is good early), ``rise < fall`` peaks early (good late).
    """

    height: float
    rise: float
    fall: float

    def __post_init__(self):
        if not (self.rise > 0 and self.fall > 0):
            raise ValueError(f"CurveSpec rise and fall must be > 0, got rise={self.rise}, fall={self.fall}.")
        if not math.isfinite(self.height):
            raise ValueError(f"CurveSpec height must be finite, got {self.height}.")


#: Three crossing curves: good early / good late / a low broad arc that is best in the middle.
DEFAULT_CURVES = (CurveSpec(1.0, 3.0, 1.0), CurveSpec(1.0, 1.0, 3.0), CurveSpec(0.35, 2.0, 2.0))


@dataclass(frozen=True)
class ToyConfig:
    """Every choice of the toy experiment; the defaults are the recipe's (``recipes/config/toy.yaml``)."""

    # problem
    num_states: int = 50
    x_start: float = -1.3
    x_end: float = 0.0
    target_y: float = -0.6
    curves: tuple[CurveSpec, ...] = DEFAULT_CURVES
    # learning
    gamma: float = 0.5
    seed: int = 0
    hidden_dim: int = 32
    num_hidden: int = 1
    potential_num_hidden: int = 2
    critic_steps: int = 5000
    critic_lr: float = 1e-3
    critic_tau: float = 5e-3
    policy_steps: int = 5000
    actor_lr: float = 1e-3
    potential_lr: float = 1e-3
    w: float = 8.0
    potential_gp: float = 0.0  # loss=ppl_stable's one-sided gradient penalty on f (0: the paper's f, no penalty)
    potential_lipschitz: float = 1.0
    baseline_bc_coef: float = 1.0
    device: str = "cpu"

    def __post_init__(self):
        if self.num_states < 2:
            raise ValueError(f"num_states must be >= 2, got {self.num_states}.")
        if not self.x_start < self.x_end:
            raise ValueError(f"x_start must be < x_end, got {self.x_start} >= {self.x_end}.")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}.")
        if len(self.curves) < 1:
            raise ValueError("curves must hold at least one CurveSpec (the dataset's expert paths).")
        for name in ("critic_steps", "policy_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        # checked here, before minutes of training, rather than when the PPL loss is built
        check_w(self.w)
        for name in ("critic_lr", "actor_lr", "potential_lr", "critic_tau", "potential_lipschitz"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        if not self.potential_gp >= 0:
            raise ValueError(f"potential_gp must be >= 0 (0: no penalty), got {self.potential_gp}.")
        if not (self.hidden_dim >= 1 and self.num_hidden >= 1 and self.potential_num_hidden >= 1):
            raise ValueError("hidden_dim, num_hidden and potential_num_hidden must be >= 1.")

    @classmethod
    def from_mapping(cls, cfg: Mapping) -> "ToyConfig":
        """Build from a flat mapping (e.g. a hydra config section); ``curves`` as a list of dicts."""
        cfg = dict(cfg)
        unknown = set(cfg) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Unknown toy settings {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}.")
        if "curves" in cfg:
            cfg["curves"] = tuple(c if isinstance(c, CurveSpec) else CurveSpec(**dict(c)) for c in cfg["curves"])
        return cls(**cfg)


# ---------------------------------------------------------------------------------------- problem


@dataclass(frozen=True)
class ToyProblem:
    """The states ``xs`` ``[T]``, the dataset paths ``curves`` ``[K, T]`` and the target pair."""

    xs: torch.Tensor
    curves: torch.Tensor
    target: tuple[float, float]

    @property
    def num_states(self) -> int:
        return self.xs.shape[0]


def curve_heights(u: torch.Tensor, spec: CurveSpec) -> torch.Tensor:
    """Bump of ``spec`` at ``u`` in [0, 1], zero at both ends, maximum ``spec.height``."""
    p, q = spec.rise, spec.fall
    peak = p / (p + q)
    norm = peak**p * (1 - peak) ** q
    return spec.height * u.pow(p) * (1 - u).pow(q) / norm


def make_toy_problem(cfg: ToyConfig = ToyConfig()) -> ToyProblem:
    """States evenly spaced on ``[x_start, x_end]``; target ``(x_end, target_y)``; one path per curve."""
    xs = torch.linspace(cfg.x_start, cfg.x_end, cfg.num_states, dtype=torch.float64)
    u = (xs - cfg.x_start) / (cfg.x_end - cfg.x_start)
    curves = torch.stack([cfg.target_y + curve_heights(u, spec) for spec in cfg.curves])
    if curves.abs().max() > 1:
        raise ValueError(
            f"The dataset paths reach |y| = {curves.abs().max():.3f} > 1, outside the tanh actor's range "
            "[-1, 1]: lower the curve heights or move target_y."
        )
    return ToyProblem(xs=xs, curves=curves, target=(cfg.x_end, cfg.target_y))


def toy_reward(x: torch.Tensor, y: torch.Tensor, target: tuple[float, float]) -> torch.Tensor:
    """``-||(x, y) - (x_T, y_T)||``: minus the Euclidean distance to the target state-action pair."""
    return -torch.sqrt((x - target[0]) ** 2 + (y - target[1]) ** 2)


def path_rewards(problem: ToyProblem, ys: torch.Tensor) -> torch.Tensor:
    """Per-state rewards ``[..., T]`` of one or more paths ``ys`` ``[..., T]``."""
    ys = torch.as_tensor(ys, dtype=problem.xs.dtype)
    if ys.shape[-1] != problem.num_states:
        raise ValueError(f"A path needs one y per state ({problem.num_states}), got shape {tuple(ys.shape)}.")
    return toy_reward(problem.xs, ys, problem.target)


def make_toy_dataset(problem: ToyProblem, device=None) -> TensorDict:
    """The offline dataset: one transition per (curve, state), ``K * T`` in all, float32.

    The observation is ``x`` alone (the dynamics move to the next ``x`` whatever the action, so the
    previous height carries no information about the future). ``("next", "action")`` is the same curve's
    action at the next state (SARSA target); the last state of each path terminates the episode and its
    next observation/action repeat the current ones (never bootstrapped).
    """
    K, T = problem.curves.shape
    obs = problem.xs.expand(K, T)
    next_idx = torch.clamp(torch.arange(T) + 1, max=T - 1)
    terminated = torch.zeros(K, T, dtype=torch.bool)
    terminated[:, -1] = True
    data = TensorDict(
        {
            keys.OBSERVATION: obs[..., None],
            keys.ACTION: problem.curves[..., None],
            keys.NEXT_OBSERVATION: obs[:, next_idx][..., None],
            keys.NEXT_ACTION: problem.curves[:, next_idx][..., None],
            keys.REWARD: path_rewards(problem, problem.curves)[..., None],
            keys.DONE: terminated[..., None].clone(),
            keys.TERMINATED: terminated[..., None],
            keys.TRUNCATED: torch.zeros(K, T, 1, dtype=torch.bool),
        },
        batch_size=[K, T],
    ).reshape(-1)
    return data.apply(lambda t: t.float() if t.is_floating_point() else t).to(device)


def returns_to_go(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted reward-to-go along the last dim: ``G_t = r_t + gamma G_{t+1}``, ``G_{T-1} = r_{T-1}``."""
    out = torch.empty_like(rewards)
    acc = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        acc = rewards[..., t] + gamma * acc
        out[..., t] = acc
    return out


def stitched_behaviour(problem: ToyProblem, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`\beta^*`: at each state, the dataset action of highest exact :math:`Q^\beta`.

    At a dataset pair the SARSA fixed point is the discounted reward-to-go of that curve,
    :math:`Q^\beta(x_t, y_k(t)) = G_k(t)`, so :math:`\beta^*(x_t) = y_{k^*}(t)` with
    :math:`k^* = \arg\max_k G_k(t)`: the best action inside the data's support under the cost PPL
    optimises (Prop. 1 of the paper, :math:`w \to \infty`). Returns the path ``[T]`` and ``k*`` ``[T]``.
    """
    g = returns_to_go(path_rewards(problem, problem.curves), gamma)
    index = g.argmax(0)
    return problem.curves.gather(0, index[None]).squeeze(0), index


def optimal_path(problem: ToyProblem) -> torch.Tensor:
    r""":math:`\pi^*`: ``y = y_T`` at every state, the straight segment from :math:`S_0` to :math:`S_T`.

    Each reward depends only on its own :math:`(x_t, y_t)` and the next state does not depend on the
    action, so the per-state maximiser :math:`y_T` is optimal for every :math:`\gamma`.
    """
    return torch.full_like(problem.xs, problem.target[1])


# ---------------------------------------------------------------------------------------- training


def _adam(params, lr: float) -> torch.optim.Adam:
    """torch's default Adam (the toy's figures were made with it)."""
    return torch.optim.Adam(params, lr=lr)


class FullBatch:
    """The toy's data source for the trainer: every batch is the whole dataset (full-batch updates, no sampling)."""

    def __init__(self, data: TensorDict):
        _check_dataset(data)
        self.data = data
        obs_dim, act_dim = data.get(keys.OBSERVATION).shape[-1], data.get(keys.ACTION).shape[-1]
        self.dataset_stats = SimpleNamespace(obs_dim=obs_dim, act_dim=act_dim, name="toy", metadata={})
        self.state_mean, self.state_std = torch.zeros(obs_dim), torch.ones(obs_dim)

    def sample(self) -> TensorDict:
        return self.data


def toy_run_config(name: str, steps: int, seed: int, run_dir: str | Path, progress: bool, device: str = "cpu",
                   stop_after: int | None = None):
    """The run config of one toy phase, only what the loop reads: ``steps`` full-batch updates seeded with ``seed``,
    50 log rows and 10 checkpoints, no evaluation; a relaunch in the same ``run_dir`` continues it
    (``resume=auto``). The update's own settings are the toy's (:class:`ToyConfig`), given to its algorithm."""
    from omegaconf import OmegaConf

    return OmegaConf.create({
        "seed": seed, "device": device, "resume": "auto", "run_dir": str(run_dir),
        "dataset": {"id": f"toy-{name}"}, "loss": {"name": name},
        "optim": {"steps": steps}, "compile": {"updates_per_call": 1}, "eval": {"every": steps},
        "logger": {"backend": "", "log_every": max(1, steps // 50), "progress": bool(progress), "run_id": None},
        "checkpoint": {"every": max(1, steps // 10), "every_minutes": None, "stop_after": stop_after},
    })


def train_toy_phase(name: str, data: TensorDict, make: Callable, steps: int, seed: int, run_dir: str | Path | None,
                    progress: bool = True, device: str = "cpu", stop_after: int | None = None):
    """``steps`` full-batch updates of the algorithm ``make(cfg, obs_dim, act_dim, device)`` builds (after seeding
    with ``seed``), as a run of the one trainer (:func:`~ppl_torchrl.training.build.build_run`) in
    ``run_dir/name`` (a temporary folder when ``run_dir`` is ``None``); returns the algorithm."""
    import tempfile

    from ppl_torchrl.training.build import build_run
    from ppl_torchrl.training.data_source import TrainingData
    from ppl_torchrl.training.process import seed_everything

    if steps == 0:  # nothing to train: the networks as initialised
        seed_everything(seed)
        return make(None, 1, 1, device)
    with tempfile.TemporaryDirectory() if run_dir is None else nullcontext(run_dir) as root:
        cfg = toy_run_config(name, steps, seed, Path(root) / name, progress, device, stop_after)
        trainer = build_run(cfg, data=TrainingData(FullBatch(data), "toy", eval_id=None), algorithm=make,
                            evaluation=False, probe=False)
        trainer.run()
        return trainer.algorithm


def train_q_beta(data: TensorDict, cfg: ToyConfig, progress: bool = True,
                 run_dir: str | Path | None = None) -> TensorDictModule:
    r""":math:`Q^\beta` by SARSA-style Bellman updates on the dataset actions (full batch, Adam).

    Uses :class:`ReBRACLoss` with ``critic_next_action="dataset"`` (the critic that
    :class:`PartialOTLoss` inherits), one critic, soft target updates every step
    (:func:`~ppl_torchrl.training.onestep.sarsa_algorithm`, the one-step setting's). The actor handed to the
    loss is never called (the next action comes from the data). Trained by the one trainer
    (:func:`train_toy_phase`; ``run_dir``: where it keeps its logs and checkpoints, resumed there).
    """
    built = {}

    def make(_, obs_dim, act_dim, device):
        qvalue = built["qvalue"] = make_qvalue_ensemble(1, 1, num_qvalue_nets=1, hidden_dim=cfg.hidden_dim,
                                                        num_hidden=cfg.num_hidden, layer_norm=False, device=cfg.device)
        unused_actor = make_actor(1, 1, hidden_dim=cfg.hidden_dim, num_hidden=cfg.num_hidden, device=cfg.device)
        loss = ReBRACLoss(unused_actor, qvalue, critic_next_action="dataset", delay_actor=False, delay_qvalue=True,
                          validate_inputs=False)
        loss.make_value_estimator(gamma=cfg.gamma)
        return sarsa_algorithm(loss, cfg.critic_lr, cfg.critic_tau, name="toy_q_beta", optimizer=_adam)

    _check_dataset(data)
    train_toy_phase("q_beta", data, make, cfg.critic_steps, cfg.seed, run_dir, progress, cfg.device)
    return built["qvalue"]


def _policy_loss(method: str, qvalue: TensorDictModule, cfg: ToyConfig):
    actor = make_actor(1, 1, hidden_dim=cfg.hidden_dim, num_hidden=cfg.num_hidden, device=cfg.device)
    # Inputs are checked once by _check_dataset; per-step re-validation only costs time here.
    common = dict(normalize_q=False, delay_actor=False, delay_qvalue=False, critic_next_action="dataset",
                  validate_inputs=False)
    if method == "baseline":
        return ReBRACLoss(actor, qvalue, actor_bc_coef=cfg.baseline_bc_coef, **common)
    if method == "ppl":
        potential = make_potential(1, 1, hidden_dim=cfg.hidden_dim, num_hidden=cfg.potential_num_hidden,
                                   device=cfg.device)
        return PartialOTLoss(actor, qvalue, potential, w=cfg.w, actor_bc_coef=0.0,
                             potential_uses_target_actor=False, potential_gp=cfg.potential_gp,
                             potential_lipschitz=cfg.potential_lipschitz, **common)
    raise ValueError(f"Unknown toy policy method {method!r}: use 'baseline' (TD3+BC-like) or 'ppl'.")


def train_policy(method: str, data: TensorDict, qvalue: TensorDictModule, cfg: ToyConfig,
                 progress: bool = True, run_dir: str | Path | None = None) -> TensorDictModule:
    """Train the ``"baseline"`` or ``"ppl"`` actor against the fixed critic ``qvalue``; return the actor.

    Only the actor's (and for PPL the potential's) parameters are optimised: the losses read the critic
    detached, so :math:`Q^\\beta` stays as trained. PPL takes an actor step, then a potential step (the
    authors' order), every step, with the online actor in the f-step (there is no target actor here): the
    one-step setting's fixed-Q algorithm (:func:`~ppl_torchrl.training.onestep.fixed_q_algorithm`), trained by the
    one trainer (:func:`train_toy_phase`).
    """
    _check_dataset(data)
    if method not in ("baseline", "ppl"):
        raise ValueError(f"Unknown toy policy method {method!r}: use 'baseline' (TD3+BC-like) or 'ppl'.")

    def make(_, obs_dim, act_dim, device):
        # the one-step setting's policy phase (PPL on a fixed Q^beta), here on the full batch
        return fixed_q_algorithm(_policy_loss(method, qvalue, cfg), cfg.actor_lr,
                                 cfg.potential_lr if method == "ppl" else None, name=f"toy_{method}", optimizer=_adam)

    seed = cfg.seed + (1 if method == "baseline" else 2)
    return train_toy_phase(method, data, make, cfg.policy_steps, seed, run_dir, progress, cfg.device).policy


def policy_path(actor: TensorDictModule, problem: ToyProblem) -> torch.Tensor:
    """The actor's action (height ``y``) at every state, float64 ``[T]`` on CPU."""
    device = next(actor.parameters()).device
    obs = problem.xs.to(device=device, dtype=torch.float32)[:, None]
    with torch.no_grad():
        out = actor(TensorDict({keys.OBSERVATION: obs}, batch_size=[problem.num_states]))
    return out.get(keys.ACTION).squeeze(-1).double().cpu()


def q_values_at_data(qvalue: TensorDictModule, data: TensorDict) -> torch.Tensor:
    """The critic's value at every dataset pair, ``[N]`` (for comparing with the exact reward-to-go)."""
    with torch.no_grad():
        out = qvalue(data.select(keys.OBSERVATION, keys.ACTION))
    return out.get("state_action_value").min(-1).values.double().cpu()


def _check_dataset(data: TensorDict) -> None:
    missing = [k for k in keys.BATCH_KEYS if k not in data.keys(True)]
    if missing:
        raise KeyError(f"The toy dataset lacks keys {missing}; build it with make_toy_dataset(problem).")
    for k in (keys.OBSERVATION, keys.ACTION, keys.REWARD):
        if not torch.isfinite(data.get(k)).all():
            raise ValueError(f"The toy dataset has non-finite values under {k!r}.")


# ---------------------------------------------------------------------------------------- experiment


@dataclass
class ToyResult:
    """Paths (``[T]`` float64) by name, the problem, and the critic's fit to the exact reward-to-go."""

    problem: ToyProblem
    paths: dict[str, torch.Tensor]
    stitched_index: torch.Tensor
    q_fit_error: float
    config: ToyConfig = field(default_factory=ToyConfig)


#: Display names of the paths in the figure and the table, in table order.
PATH_LABELS = {
    "baseline": "beta (TD3+BC-like baseline)",
    "ppl": "PPL pi (w = {w:g})",
    "stitched": "beta* (best stitched behaviour)",
    "optimal": "pi* (straight line)",
}


def run_toy(cfg: ToyConfig = ToyConfig(), progress: bool = True, run_dir: str | Path | None = None) -> ToyResult:
    """Build the problem and dataset, train Q^beta, the baseline and PPL; return every path.

    Each is a run of the one trainer in ``run_dir/{q_beta,baseline,ppl}`` (logs, checkpoints; a relaunch continues
    an interrupted one and reuses a finished one), or in a temporary folder when ``run_dir`` is ``None``."""
    problem = make_toy_problem(cfg)
    data = make_toy_dataset(problem, device=cfg.device)
    qvalue = train_q_beta(data, cfg, progress, run_dir)
    exact = returns_to_go(path_rewards(problem, problem.curves), cfg.gamma).reshape(-1)
    q_fit = (q_values_at_data(qvalue, data) - exact).abs().max().item()
    stitched, index = stitched_behaviour(problem, cfg.gamma)
    paths = {f"dataset {k + 1}": problem.curves[k] for k in range(problem.curves.shape[0])}
    paths["baseline"] = policy_path(train_policy("baseline", data, qvalue, cfg, progress, run_dir), problem)
    paths["ppl"] = policy_path(train_policy("ppl", data, qvalue, cfg, progress, run_dir), problem)
    paths["stitched"] = stitched
    paths["optimal"] = optimal_path(problem)
    return ToyResult(problem=problem, paths=paths, stitched_index=index, q_fit_error=q_fit, config=cfg)


def mean_abs_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over states of ``|y_a - y_b|``."""
    return (torch.as_tensor(a) - torch.as_tensor(b)).abs().mean().item()


def toy_metrics(result: ToyResult) -> list[dict]:
    """One row per path: undiscounted return, mean |y - beta*|, mean |y - pi*|."""
    rows = []
    for name, ys in result.paths.items():
        rows.append({
            "path": PATH_LABELS.get(name, name).format(w=result.config.w),
            "key": name,
            "return": path_rewards(result.problem, ys).sum().item(),
            "gap_stitched": mean_abs_gap(ys, result.paths["stitched"]),
            "gap_optimal": mean_abs_gap(ys, result.paths["optimal"]),
        })
    return rows


__all__ = [
    "CurveSpec", "DEFAULT_CURVES", "ToyConfig", "ToyProblem", "ToyResult", "curve_heights", "make_toy_problem",
    "toy_reward", "path_rewards", "make_toy_dataset", "returns_to_go", "stitched_behaviour", "optimal_path",
    "train_q_beta", "train_policy", "train_toy_phase", "FullBatch", "policy_path", "q_values_at_data", "run_toy",
    "mean_abs_gap", "toy_metrics",
]
