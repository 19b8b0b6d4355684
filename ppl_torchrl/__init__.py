"""ppl-torchrl: Partial Policy Learning (partial optimal transport for offline RL) for TorchRL.

    >>> from ppl_torchrl import PartialOTLoss, ReBRACLoss

The loss modules live in :mod:`ppl_torchrl.objectives` (the top-level ``objectives/`` folder of
the repository); networks in :mod:`ppl_torchrl.modules`; the PPL^R / ReBRAC update in :mod:`ppl_torchrl.update`;
data in :mod:`ppl_torchrl.data` (generated data in :mod:`ppl_torchrl.datagen`); evaluation environments in
:mod:`ppl_torchrl.envs`; dataset ids, reference scores and policy evaluation in :mod:`ppl_torchrl.evaluation`;
the recipes' training harness in :mod:`ppl_torchrl.training`; results tables and figures in
:mod:`ppl_torchrl.reporting`. docs/layout.md ("Where to change what") says which file holds what.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public names and the submodule that defines them. Imported on first access, so that
# ``import ppl_torchrl.registry`` (used by data tools) does not pull in torchrl's losses.
_LAZY = {
    "PartialOT": "ppl_torchrl.objectives",
    "PartialOTLoss": "ppl_torchrl.objectives",
    "PartialOTCQLLoss": "ppl_torchrl.objectives",
    "ReBRACLoss": "ppl_torchrl.objectives",
    "make_actor": "ppl_torchrl.modules",
    "make_qvalue_ensemble": "ppl_torchrl.modules",
    "make_potential": "ppl_torchrl.modules",
    "make_tanh_normal_actor": "ppl_torchrl.modules",
    "normalized_score": "ppl_torchrl.registry",
    "get_dataset_spec": "ppl_torchrl.registry",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ppl_torchrl' has no attribute {name!r}")


def __dir__():
    return __all__
