"""Loss modules of ppl-torchrl (installed as ``ppl_torchrl.objectives``).

* :class:`PartialOT`: the partial-OT potential, added to any TorchRL loss with an actor (TD3+BC, CQL, IQL, ...).
* :class:`ReBRACLoss`: ReBRAC, the base algorithm of PPL^R (TorchRL has none).
* :class:`PartialOTLoss`: PPL^R, ``PartialOT`` on ``ReBRACLoss``.
* :class:`PartialOTCQLLoss`: PPL^CQL, ``PartialOT`` on TorchRL's ``CQLLoss``.
* :func:`declare_target_updater`: tell a loss that your own update moves its targets (TorchRL's public route).
* ``SATURATED``: the |action| beyond which a tanh actor gets (almost) no gradient (the saturation penalty's edge).
"""
from ._composition import SATURATED, declare_target_updater
from .partial_ot import PartialOTCQLLoss, PartialOTLoss
from .potential import PartialOT
from .rebrac import ReBRACLoss, bc_distance

__all__ = ["PartialOT", "PartialOTLoss", "PartialOTCQLLoss", "ReBRACLoss", "bc_distance", "declare_target_updater", "SATURATED"]
