"""The README's snippet runs as written, and .ci/run runs exactly the README's test command."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_loss_snippets_run_as_written():
    section = README.split("## The loss in a TorchRL pipeline", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    namespace: dict = {}
    for code in blocks:  # the second continues the first
        exec(compile(code, "README.md", "exec"), namespace)
    losses = namespace["losses"]
    assert {"loss_qvalue", "loss_actor", "loss_potential"} <= set(losses.keys())
    assert all(losses[k].isfinite() for k in ("loss_qvalue", "loss_actor", "loss_potential"))
    metrics = namespace["metrics"]
    assert {"loss_qvalue", "loss_actor", "loss_potential"} <= set(metrics.keys())
    assert all(v.isfinite().all() for v in metrics.values())


def test_ci_runs_the_readme_test_command():
    commands = re.search(r"```bash\n(.*?)```", README, re.S).group(1).splitlines()
    test_command = commands[commands.index(next(c for c in commands if c.startswith("# tests"))) + 1]
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test_command


def test_readme_composition_snippet_runs_as_written():
    section = README.split("## Adding the potential to a TorchRL loss you already have", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    out, loss = namespace["out"], namespace["loss"]
    assert {"loss_qvalue", "loss_actor", "loss_potential", "potential_actor"} <= set(out.keys())
    assert all(out[k].isfinite() for k in ("loss_qvalue", "loss_actor", "loss_potential"))
    # the snippet's step reached the potential through loss_potential
    assert all(p.grad is not None for p in loss.potential_network_params.values(True, True))
