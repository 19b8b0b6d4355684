"""The README is an introduction of at most 200 lines whose commands and snippets run as written: .ci/run runs exactly
its test command, every recipe command composes a config, and every link of the README and of docs/ stays inside the
repository (docs/index.md lists every page)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_LINES = 200


def test_readme_is_an_introduction_of_at_most_200_lines():
    assert len(README.splitlines()) <= MAX_LINES, f"README.md has {len(README.splitlines())} lines: move detail to docs/"
    headings = re.findall(r"^## (.+)$", README, re.M)
    order = ["What PPL is", "Getting started", "The loss in a TorchRL pipeline",
             "Adding the potential to a TorchRL loss you already have", "Recipes", "Results"]
    assert [h for h in headings if h in order] == order, headings
    assert "](docs/index.md)" in README


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


def test_the_readme_set_up_commands_are_the_two_the_project_runs():
    """The main job (run with its budget cut by tests/test_recipes.py's quickstart test) and the test command (run by
    CI through .ci/run), each an install of an extra pyproject.toml defines, then a command."""
    commands = [c for c in re.search(r"```bash\n(.*?)```", README, re.S).group(1).splitlines()
                if c and not c.startswith("#")]
    assert commands == ['pip install torch==2.13.0 -e . && python recipes/quickstart.py',
                        'pip install -q torch==2.13.0 -e ".[test]" && python -m pytest -q']
    assert "\ntest = [" in (ROOT / "pyproject.toml").read_text()
    assert "def test_quickstart" in (ROOT / "tests" / "test_recipes.py").read_text()


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


# ----------------------------------------------------------------------------------------- the recipes' commands
def _recipe_commands() -> list[list[str]]:
    """Every `python recipes/<name>.py ...` of the README, split as a shell would."""
    found = re.findall(r"`(python recipes/[^`]+)`", README)
    found += [line for block in re.findall(r"```bash\n(.*?)```", README, re.S) for line in block.splitlines()
              if line.startswith("python recipes/")]
    return [shlex.split(c.split(" && ")[-1]) for c in dict.fromkeys(found)]


def test_the_recipes_table_lists_every_recipe_with_a_command():
    table = README.split("## Recipes", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| \[`(recipes/\w+\.py)`\]\(\1\) \|", table, re.M))
    assert listed == {f"recipes/{p.name}" for p in (ROOT / "recipes").glob("*.py")}
    assert {c[1] for c in _recipe_commands()} >= listed


@pytest.mark.parametrize("command", _recipe_commands(), ids=lambda c: " ".join(c[1:]))
def test_every_readme_recipe_command_composes(command):
    """Each recipe command's arguments are what the recipe accepts: a hydra recipe's overrides pick config-group
    options that exist and compose into a config that resolves; aggregate's arguments parse."""
    from omegaconf import OmegaConf

    assert command[0] == "python" and (ROOT / command[1]).is_file(), command
    source = (ROOT / command[1]).read_text()
    args = command[2:]
    decorator = re.search(r'@hydra_recipe\("(\w+)"(?:, version_base=(None|"[\d.]+"))?\)', source)
    if decorator is None:  # argparse recipes
        import importlib.util

        spec = importlib.util.spec_from_file_location("readme_recipe", ROOT / command[1])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.parse_args(args)
        return
    from hydra import compose, initialize_config_dir

    from ppl_torchrl.training.recipe import check_group_choices

    config_name, given = decorator.group(1), decorator.group(2)
    version_base = "1.3" if given is None else None if given == "None" else given.strip('"')  # hydra_recipe's default
    config_dir = ROOT / "recipes" / "config"
    check_group_choices(config_dir, args)
    with initialize_config_dir(str(config_dir), version_base=version_base):
        cfg = compose(config_name=config_name, overrides=args)
    OmegaConf.to_container(cfg, resolve=True)


# ---------------------------------------------------------------------------------------- docs and their links
def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()  # code and emphasis marks, links
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


@pytest.mark.parametrize("page", [ROOT / "README.md", *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_stay_inside_the_repository_and_reach_their_target(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    # no path that leaves the repository, linked or in plain text (a checkout's neighbours are not the user's)
    for path in re.findall(r"(?<![\w./])(?:\.\./)+[\w.-]+", page.read_text()):
        assert (page.parent / path).resolve().is_relative_to(ROOT), (page.name, path)
    assert "/work/" not in page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"https?://", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved == ROOT or ROOT in resolved.parents, f"{page.name}: {target} leaves the repository"
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert resolved.suffix == ".md" and anchor in _anchors(resolved), f"{page.name}: no heading for {target}"


def test_docs_index_lists_every_page():
    index = (ROOT / "docs" / "index.md").read_text()
    listed = set(re.findall(r"^\| \[([\w.]+\.md)\]\(\1\) \|", index, re.M))
    assert listed == {p.name for p in DOCS if p.name != "index.md"}


def test_generated_sections_sit_in_the_files_their_scripts_write():
    """benchmarks/markdown.py's markers come in ordered pairs; the README holds none (no script writes it), and the
    OGBench short table is docs/results.md's, where benchmarks/ogbench_evidence.py writes it."""
    for page in [ROOT / "README.md", *DOCS]:
        text = page.read_text()
        begins = re.findall(r"<!-- ([\w.-]+):begin \(generated; edits here are overwritten\) -->", text)
        ends = re.findall(r"<!-- ([\w.-]+):end -->", text)
        assert begins == ends, page.name
        for name in begins:
            assert text.index(f"<!-- {name}:begin") < text.index(f"<!-- {name}:end -->"), (page.name, name)
    assert "<!--" not in README
    source = (ROOT / "benchmarks" / "ogbench_evidence.py").read_text()
    assert 'SUMMARY = REPO / "docs" / "results.md"' in source and 'default=str(SUMMARY)' in source
    assert "<!-- ogbench-cube-single:begin" in (ROOT / "docs" / "results.md").read_text()
