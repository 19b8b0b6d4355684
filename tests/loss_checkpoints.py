"""Tiny composed losses, a batch, and the checkpoint of them written before issue 36 changed the composed loss.

``python tests/loss_checkpoints.py`` wrote ``tests/data/losses_before_issue36.pt`` with the code of commit 788906f
(before ``PartialOT`` held its base loss as a registered submodule): for each loss its ``state_dict()`` and its
forward's values on :func:`batch`. tests/test_loss_conventions.py loads it into losses built with other seeds and
checks that every value comes back, so a checkpoint of an older run keeps loading. Run it again only to write a new
reference on purpose (a changed file no longer shows the old checkpoints load).
"""
from __future__ import annotations

from pathlib import Path

import torch
from tensordict import TensorDict

PATH = Path(__file__).resolve().parent / "data" / "losses_before_issue36.pt"
NAMES = ("ppl", "td3_bc", "cql")  # PartialOTLoss, PartialOT(TD3BCLoss), PartialOT(CQLLoss) (a base with its own parameters)
OBS, ACT, HID, N = 3, 2, 4, 6


def batch(n: int = N) -> TensorDict:
    g = torch.Generator().manual_seed(11)
    term = torch.zeros(n, 1, dtype=torch.bool)
    term[::3] = True
    return TensorDict({
        "observation": torch.randn(n, OBS, generator=g), "action": torch.rand(n, ACT, generator=g) * 2 - 1,
        ("next", "observation"): torch.randn(n, OBS, generator=g),
        ("next", "action"): torch.rand(n, ACT, generator=g) * 2 - 1,
        ("next", "reward"): torch.randn(n, 1, generator=g), ("next", "done"): term.clone(),
        ("next", "terminated"): term,
    }, [n])


def build(name: str, seed: int):
    """The loss ``name`` on tiny networks drawn from ``seed`` (targets moved off the online networks)."""
    from tensordict.nn import NormalParamExtractor, TensorDictModule
    from torch import nn
    from torchrl.data import Bounded
    from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
    from torchrl.objectives import CQLLoss, TD3BCLoss

    from ppl_torchrl.modules import make_actor, make_potential, make_qvalue_ensemble
    from ppl_torchrl.objectives import PartialOT, PartialOTLoss

    torch.manual_seed(seed)
    critic = ValueOperator(MLP(in_features=OBS + ACT, out_features=1, num_cells=[HID]), in_keys=["observation", "action"])
    if name == "ppl":
        loss = PartialOTLoss(make_actor(OBS, ACT, hidden_dim=HID, num_hidden=1),
                             make_qvalue_ensemble(OBS, ACT, hidden_dim=HID, num_hidden=1),
                             make_potential(OBS, ACT, hidden_dim=HID, num_hidden=1), w=4.0, actor_bc_coef=0.3)
    elif name == "td3_bc":
        loss = PartialOT(TD3BCLoss(make_actor(OBS, ACT, hidden_dim=HID, num_hidden=1), critic, bounds=(-1.0, 1.0)),
                         make_potential(OBS, ACT, hidden_dim=HID, num_hidden=1), w=4.0)
    else:
        net = nn.Sequential(MLP(in_features=OBS, out_features=2 * ACT, num_cells=[HID]), NormalParamExtractor())
        actor = ProbabilisticActor(TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
                                   in_keys=["loc", "scale"], distribution_class=TanhNormal,
                                   spec=Bounded(-torch.ones(ACT), torch.ones(ACT), (ACT,)))
        loss = PartialOT(CQLLoss(actor, critic, action_spec=Bounded(-torch.ones(ACT), torch.ones(ACT), (ACT,)),
                                 num_random=2),
                         make_potential(OBS, ACT, hidden_dim=HID, num_hidden=1), w=4.0)
    loss.make_value_estimator(gamma=0.9)
    with torch.no_grad():
        for key, target in loss.named_buffers():
            if "target_" in key:
                target.add_(0.1 * torch.randn_like(target))
    return loss


def values(loss) -> dict[str, torch.Tensor]:
    """The loss's forward on :func:`batch`, from a fixed random state."""
    torch.manual_seed(5)
    out = loss(batch())
    return {k: v.detach().clone() for k, v in out.items()}


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore", message="No target network updater")
    blob = {}
    for name in NAMES:
        loss = build(name, seed=0)
        blob[name] = {"state_dict": loss.state_dict(), "values": values(loss)}
    PATH.parent.mkdir(exist_ok=True)
    torch.save(blob, PATH)
    print(f"wrote {PATH} ({PATH.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
