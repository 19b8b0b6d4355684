"""The networks of PPL^R / ReBRAC as TensorDictModules.

Architectures and initialisation follow the authors' code (itself CORL's ReBRAC, "as in the
EDAC paper"): hidden layers ``Linear -> ReLU [-> LayerNorm]`` with weights ``U(+-1/sqrt(fan_in))``
and bias 0.1; the actor ends in ``tanh`` with a last layer ``U(+-1e-3)``; critics and the potential
end in a scalar layer ``U(+-3e-3)``.

=================  ==========================  ==================================================
builder            reads                        writes
=================  ==========================  ==================================================
make_actor         ``observation``              ``action`` (tanh, in [-1, 1])
make_qvalue_ensem  ``observation``, ``action``  ``state_action_value`` ``[*B, num_qvalue_nets]``
make_potential     ``observation``, ``action``  ``potential`` ``[*B, 1]``, always <= 0
make_tanh_normal_  ``observation``              ``action`` (a TanhNormal sample; CQL's and IQL's actor)
=================  ==========================  ==================================================

Two options reproduce other codebases' networks without another copy of them: ``activation`` (``"relu"``,
the default, or ``"gelu"``: flax's tanh-approximated GELU) and ``init`` (``"corl"``, the default above, or
``"fan_avg"``: flax ``variance_scaling(scale, "fan_avg", "uniform")`` weights and zero biases, scale 1 everywhere
except the actor's last layer, ``actor_last_layer_scale``). ``activation="gelu", init="fan_avg"`` with 4 x 512
layers is the FQL codebase's ReBRAC (``seohongpark/fql``: ``utils/networks.py``, ``agents/rebrac.py``; its actor's
last layer scale 0.01).

The critic ensemble is one module with stacked parameters (``[N, in, out]`` weights, batched
matrix products), not a loop over critics: its output's last dimension indexes the members.
The losses accept any critic that writes its values with that layout, so a plain TorchRL
``ValueOperator`` (one member, ``[*B, 1]``) works too.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal

from ppl_torchrl import keys

STATE_ACTION_VALUE = "state_action_value"
POTENTIAL = "potential"


def _dim(spec_or_dim) -> int:
    """Last dimension of a TensorSpec, a shape, or an int."""
    if isinstance(spec_or_dim, int):
        return spec_or_dim
    shape = getattr(spec_or_dim, "shape", spec_or_dim)
    if len(shape) == 0:
        raise ValueError(f"Cannot read a feature dimension from {spec_or_dim!r}.")
    return int(shape[-1])


def _init_hidden_(weight: torch.Tensor, bias: torch.Tensor, fan_in: int) -> None:
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        weight.uniform_(-bound, bound)
        bias.fill_(0.1)


def _init_uniform_(weight: torch.Tensor, bias: torch.Tensor, bound: float) -> None:
    with torch.no_grad():
        weight.uniform_(-bound, bound)
        bias.uniform_(-bound, bound)


ACTIVATIONS = ("relu", "gelu")
INITS = ("corl", "fan_avg")


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU(approximate="tanh")  # flax.linen.gelu's default (approximate=True)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}.")


def _init_layer_(weight: torch.Tensor, bias: torch.Tensor, fan_in: int, fan_out: int, *, init: str,
                 last_bound: float | None = None, scale: float = 1.0) -> None:
    """``init="corl"``: hidden layers (``last_bound=None``) U(+-1/sqrt(fan_in)), bias 0.1; last layers U(+-last_bound).
    ``init="fan_avg"``: flax variance_scaling(scale, fan_avg, uniform), bias 0."""
    if init == "corl":
        if last_bound is None:
            _init_hidden_(weight, bias, fan_in)
        else:
            _init_uniform_(weight, bias, last_bound)
    elif init == "fan_avg":
        bound = math.sqrt(3.0 * scale / ((fan_in + fan_out) / 2.0))
        with torch.no_grad():
            weight.uniform_(-bound, bound)
            bias.zero_()
    else:
        raise ValueError(f"init must be one of {INITS}, got {init!r}.")


def mlp(
    in_dim: int,
    out_dim: int,
    *,
    hidden_dim: int = 256,
    num_hidden: int = 3,
    layer_norm: bool = False,
    last_layer_bound: float = 3e-3,
    layer_norm_eps: float = 1e-6,
    activation: str = "relu",
    init: str = "corl",
    last_layer_scale: float = 1.0,
) -> nn.Sequential:
    """``num_hidden`` x (Linear, activation[, LayerNorm]) then a Linear; ``init`` picks the initialisation (module doc)."""
    linear = nn.Linear
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(num_hidden):
        lin = linear(d, hidden_dim)
        _init_layer_(lin.weight, lin.bias, d, hidden_dim, init=init)
        layers += [lin, _activation(activation)]
        if layer_norm:
            # Flax's LayerNorm epsilon (the authors' critics), not torch's 1e-5.
            layers.append(nn.LayerNorm(hidden_dim, eps=layer_norm_eps))
        d = hidden_dim
    last = linear(d, out_dim)
    _init_layer_(last.weight, last.bias, d, out_dim, init=init, last_bound=last_layer_bound, scale=last_layer_scale)
    layers.append(last)
    return nn.Sequential(*layers)


class DeterministicActor(nn.Module):
    """``pi(s) = tanh(MLP(s))``: the deterministic ReBRAC/PPL policy."""

    reads_in_keys_positionally = True  # forward(*[td[k] for k in in_keys]): see ppl_torchrl.objectives._networks

    def __init__(self, obs_dim: int, action_dim: int, *, hidden_dim=256, num_hidden=3, layer_norm=False,
                 activation: str = "relu", init: str = "corl", last_layer_scale: float = 0.01):
        super().__init__()
        self.net = mlp(
            obs_dim, action_dim, hidden_dim=hidden_dim, num_hidden=num_hidden,
            layer_norm=layer_norm, last_layer_bound=1e-3, activation=activation, init=init,
            last_layer_scale=last_layer_scale,
        )

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(observation))


class EnsembleLinear(nn.Module):
    """``N`` independent linear layers applied as one batched product.

    Input ``[N, M, in]`` (or ``[M, in]``, shared by all members) -> output ``[N, M, out]``.
    """

    def __init__(self, num_members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim))

    def reset_parameters(self) -> None:
        """Draws every member afresh as the default builders (``init="corl"``) draw a hidden layer: weights
        ``U(+-1/sqrt(in))``, bias 0.1 (called by ``reset_parameters_recursive``). Like
        ``nn.Linear.reset_parameters`` it knows only the layer: a builder's other draws (``U(+-3e-3)`` for the
        critics' last layer, ``init="fan_avg"``) are not repeated."""
        _init_hidden_(self.weight, self.bias, self.weight.shape[-2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # one input shared by every member
            return torch.matmul(x, self.weight) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over features with one affine (weight, bias) per ensemble member."""

    def __init__(self, num_members: int, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, dim))

    def reset_parameters(self) -> None:
        """Weight 1 and bias 0 for every member, as built (called by ``reset_parameters_recursive``)."""
        with torch.no_grad():
            self.weight.fill_(1.0)
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.layer_norm(x, x.shape[-1:], eps=self.eps)
        return torch.addcmul(self.bias, x, self.weight)


class QValueEnsemble(nn.Module):
    """``N`` critics ``Q_i(s, a)`` on ``concat(s, a)``, evaluated together.

    Returns ``[*B, N]``: member ``i`` in ``[..., i]``. Each member is initialised exactly like
    one ReBRAC critic (independent draws per member).
    """

    reads_in_keys_positionally = True  # forward(*[td[k] for k in in_keys]): see ppl_torchrl.objectives._networks

    def __init__(
        self, obs_dim: int, action_dim: int, *, num_qvalue_nets: int = 2, hidden_dim: int = 256,
        num_hidden: int = 3, layer_norm: bool = True, layer_norm_eps: float = 1e-6, activation: str = "relu",
        init: str = "corl",
    ):
        super().__init__()
        if num_qvalue_nets < 1:
            raise ValueError(f"num_qvalue_nets must be >= 1, got {num_qvalue_nets}.")
        self.num_qvalue_nets = num_qvalue_nets
        linear = EnsembleLinear
        layers: list[nn.Module] = []
        d = obs_dim + action_dim
        for _ in range(num_hidden):
            lin = linear(num_qvalue_nets, d, hidden_dim)
            _init_layer_(lin.weight, lin.bias, d, hidden_dim, init=init)
            layers += [lin, _activation(activation)]
            if layer_norm:
                layers.append(EnsembleLayerNorm(num_qvalue_nets, hidden_dim, layer_norm_eps))
            d = hidden_dim
        last = linear(num_qvalue_nets, d, 1)
        _init_layer_(last.weight, last.bias, d, 1, init=init, last_bound=3e-3)
        layers.append(last)
        self.net = nn.Sequential(*layers)

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([observation, action], -1)
        batch_shape = x.shape[:-1]
        out = self.net(x.reshape(-1, x.shape[-1]))  # [N, M, 1]
        return out.squeeze(-1).transpose(0, 1).reshape(*batch_shape, self.num_qvalue_nets)


class Potential(nn.Module):
    """The PPL potential ``f(s, a) = -|g(s, a)|`` (always <= 0, the authors' sign; see PartialOTLoss)."""

    reads_in_keys_positionally = True  # forward(*[td[k] for k in in_keys]): see ppl_torchrl.objectives._networks

    def __init__(self, obs_dim: int, action_dim: int, *, hidden_dim=256, num_hidden=3, layer_norm=False,
                 activation: str = "relu", init: str = "corl"):
        super().__init__()
        self.net = mlp(
            obs_dim + action_dim, 1, hidden_dim=hidden_dim, num_hidden=num_hidden, layer_norm=layer_norm,
            activation=activation, init=init,
        )

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return -self.net(torch.cat([observation, action], -1)).abs()


def make_actor(
    observation_spec, action_spec, *, hidden_dim: int = 256, num_hidden: int = 3,
    layer_norm: bool = False, in_key=keys.OBSERVATION, out_key=keys.ACTION, device=None,
    activation: str = "relu", init: str = "corl", last_layer_scale: float = 0.01,
) -> TensorDictModule:
    """Deterministic tanh actor (3x256 ReLU, no LayerNorm by default) reading ``in_key``; ``last_layer_scale``
    is the last layer's variance scale under ``init="fan_avg"`` (FQL's ``actor_fc_scale``)."""
    net = DeterministicActor(
        _dim(observation_spec), _dim(action_spec), hidden_dim=hidden_dim,
        num_hidden=num_hidden, layer_norm=layer_norm, activation=activation, init=init,
        last_layer_scale=last_layer_scale,
    )
    return TensorDictModule(net.to(device), in_keys=[in_key], out_keys=[out_key])


def make_tanh_normal_actor(observation_spec, action_spec, *, hidden_dim: int = 256, num_hidden: int = 3,
                           device=None) -> ProbabilisticActor:
    """Stochastic actor (TorchRL's ``ProbabilisticActor`` with a ``TanhNormal`` in ``[-1, 1]``, ReLU ``MLP`` writing
    ``loc`` and ``scale``): the actor of TorchRL's CQL and IQL losses, hence of PPL^CQL."""
    obs_dim, act_dim = _dim(observation_spec), _dim(action_spec)
    net = nn.Sequential(
        MLP(in_features=obs_dim, out_features=2 * act_dim, num_cells=[hidden_dim] * num_hidden,
            activation_class=nn.ReLU),
        NormalParamExtractor(),
    )
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=[keys.OBSERVATION], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"], out_keys=[keys.ACTION], distribution_class=TanhNormal,
        spec=Bounded(-torch.ones(act_dim), torch.ones(act_dim), (act_dim,)),
        return_log_prob=False,
    ).to(device)


def make_qvalue_ensemble(
    observation_spec, action_spec, *, num_qvalue_nets: int = 2, hidden_dim: int = 256,
    num_hidden: int = 3, layer_norm: bool = True, in_keys: Sequence = (keys.OBSERVATION, keys.ACTION),
    out_key=STATE_ACTION_VALUE, device=None, activation: str = "relu", init: str = "corl",
) -> TensorDictModule:
    """Ensemble of ``num_qvalue_nets`` LayerNorm critics writing ``[*B, num_qvalue_nets]`` values."""
    net = QValueEnsemble(
        _dim(observation_spec), _dim(action_spec), num_qvalue_nets=num_qvalue_nets,
        hidden_dim=hidden_dim, num_hidden=num_hidden, layer_norm=layer_norm, activation=activation, init=init,
    )
    return TensorDictModule(net.to(device), in_keys=list(in_keys), out_keys=[out_key])


def make_potential(
    observation_spec, action_spec, *, hidden_dim: int = 256, num_hidden: int = 3,
    layer_norm: bool = False, in_keys: Sequence = (keys.OBSERVATION, keys.ACTION),
    out_key=POTENTIAL, device=None, activation: str = "relu", init: str = "corl",
) -> TensorDictModule:
    """Potential ``f(s, a) = -|MLP(s, a)|`` (3x256 ReLU, no LayerNorm) writing ``[*B, 1]``."""
    net = Potential(
        _dim(observation_spec), _dim(action_spec), hidden_dim=hidden_dim,
        num_hidden=num_hidden, layer_norm=layer_norm, activation=activation, init=init,
    )
    return TensorDictModule(net.to(device), in_keys=list(in_keys), out_keys=[out_key])
