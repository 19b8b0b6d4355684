"""How the losses call a network on explicit parameters: the one home of that binding.

The losses keep each network stateless (TorchRL's ``convert_to_functional``) and call it with the parameters a
formula is differentiated in (the online ones, detached ones, the targets, or the tensors ``ppl_torchrl.update``
differentiates). The general binding is tensordict's ``params.to_module(network)`` around the TensorDictModule.

Eagerly, that binding and the TensorDictModule's output TensorDict cost about 0.35-0.5 ms per call on a 2-core AMD
EPYC (tensordict's recursive parameter swap, and a ``find_spec("pandas")`` for each output), some 5 % of an eager
AntMaze-shape PPL^R update. So a network whose wrapped module declares ``reads_in_keys_positionally = True`` (the
library's actor, critic ensemble and potential: ``forward(*[td[k] for k in in_keys])`` returning the one output) is
called through ``torch.func.functional_call`` on that module instead: the same module, the same operations and the
same numbers, with a cheaper swap. Any other network, and every call under ``torch.compile`` (where the swap costs
nothing at run time), takes the general binding.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from torch.func import functional_call


def _reads_positionally(network, out_key) -> bool:
    return (type(network) is TensorDictModule and getattr(network.module, "reads_in_keys_positionally", False)
            and network.method is None and list(network.out_keys) == [out_key])


def network_output(network, params, tensordict: TensorDictBase, out_key, replace: dict | None = None) -> torch.Tensor:
    """``network``'s ``out_key`` on ``tensordict``'s in_keys, those in ``replace`` (in_key -> tensor, e.g. the
    action a critic is evaluated at) taken from there instead, with ``params`` bound."""
    replace = replace or {}
    if not torch.compiler.is_compiling() and _reads_positionally(network, out_key):
        # TorchRL keeps a TensorDictModule's parameters under "module": ("module", "net", "0", "weight") is the
        # wrapped module's "net.0.weight"
        bound = {".".join(key[1:]): value for key, value in params.items(True, True)}
        inputs = tuple(replace[key] if key in replace else tensordict.get(key) for key in network.in_keys)
        return functional_call(network.module, bound, inputs, tie_weights=False)
    td = tensordict.select(*network.in_keys, strict=False)
    for key, value in replace.items():
        td.set(key, value)
    with params.to_module(network, preserve_module_state=False):
        return network(td).get(out_key)
