"""Loss modules of ppl-torchrl (installed as ``ppl_torchrl.objectives``).

* :class:`ReBRACLoss`: ReBRAC, the base algorithm of PPL^R (TorchRL has none).
* :class:`PartialOTLoss`: PPL^R, ReBRAC plus the partial-OT potential.
* :class:`PartialOTCQLLoss`: PPL^CQL, TorchRL's ``CQLLoss`` plus the partial-OT potential.
"""
from .partial_ot import PartialOTCQLLoss, PartialOTLoss
from .rebrac import ReBRACLoss

__all__ = ["PartialOTLoss", "PartialOTCQLLoss", "ReBRACLoss"]
