"""The package's architecture: no import cycles between its modules, and one home for each shared helper.

The import graph is read from the source with ``ast``: every ``import`` / ``from ... import`` of a
``ppl_torchrl`` module, at module level or inside a function, in ``ppl_torchrl/`` and in ``objectives/``
(installed as ``ppl_torchrl.objectives``). An import names the deepest module it reaches
(``from ppl_torchrl.registry.datasets import X`` -> ``ppl_torchrl.registry.datasets``); a module
importing a package that contains it is not an edge (the package is initialised first anyway).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the package name it is installed as (pyproject.toml's package-dir)
SOURCES = {ROOT / "ppl_torchrl": "ppl_torchrl", ROOT / "objectives": "ppl_torchrl.objectives"}


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, package in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _imported_names(module: str, path: Path) -> set[str]:
    """Dotted names of everything ``module`` imports (relative imports resolved)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in mods.items():
        targets = {resolve(name) for name in _imported_names(module, path)}
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a closed path ``[a, b, ..., a]``) per strongly connected component of more than one module."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    start = min(component)
    paths = {start: [start]}
    todo = [start]
    while todo:  # breadth-first back to start, inside the component
        v = todo.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                todo.append(w)
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def test_no_import_cycles():
    graph = import_graph()
    assert "ppl_torchrl.objectives.partial_ot" in graph and "ppl_torchrl.training.trainer" in graph
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_and_prints_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_function_level_and_relative_imports_count():
    graph = import_graph()
    # function-level: the recipe harness imports the set-up chain inside train()
    assert "ppl_torchrl.training.build" in graph["ppl_torchrl.training.recipe"]
    # relative: objectives/partial_ot.py imports .rebrac
    assert "ppl_torchrl.objectives.rebrac" in graph["ppl_torchrl.objectives.partial_ot"]


def _files_using(text: str) -> set[str]:
    return {m for m, path in _modules().items() if text in path.read_text()}


def test_one_home_for_each_shared_helper():
    """The "did you mean" lookup, figure files and mean ± std text each have one implementation."""
    assert _files_using("difflib") == {"ppl_torchrl.errors"}
    assert _files_using(".savefig(") == {"ppl_torchrl.reporting.figures"}
    assert _files_using('matplotlib.use("Agg")') == {"ppl_torchrl.reporting.figures"}
    assert _files_using("def pm(") == {"ppl_torchrl.reporting.tables"} and not _files_using("def _pm(")


def _sources() -> dict[str, str]:
    """Every Python file of the library, its recipes and its benchmarks (their tests aside): path -> text."""
    folders = ("ppl_torchrl", "objectives", "recipes", "benchmarks")
    return {path.relative_to(ROOT).as_posix(): path.read_text() for folder in folders
            for path in (ROOT / folder).rglob("*.py") if "tests" not in path.relative_to(ROOT).parts}


def _string_constants(text: str) -> set[str]:
    """The string constants of a module's code (its docstrings left out)."""
    tree = ast.parse(text)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}


#: files that still write through their own temporary file, with the reason
OWN_ATOMIC_WRITES: dict[str, str] = {}


def test_one_home_for_atomic_writes():
    """Only ppl_torchrl/atomic.py renames a temporary file into place (os.replace / mkstemp): every writer goes
    through it."""
    pattern = re.compile(r"\bos\.(?:replace|rename)\(|\bmkstemp\(|\bNamedTemporaryFile\(")
    writers = {path for path, text in _sources().items() if pattern.search(text)}
    assert writers - set(OWN_ATOMIC_WRITES) == {"ppl_torchrl/atomic.py"}


def test_one_home_for_the_import_cache_rule():
    """The D4RL, Minari and OGBench imports are reused by one rule (ppl_torchrl/data/cache.py): no other module reads
    an import's marker to decide."""
    deciders = {path for path, text in _sources().items() if "load_stats(" in text or "hashlib.sha1(" in text}
    assert deciders == {"ppl_torchrl/data/cache.py", "ppl_torchrl/data/transitions.py"}, deciders


def test_one_reader_of_metrics_jsonl():
    """A run's metrics.jsonl is named (and so opened) only by ppl_torchrl/reporting/metrics.py, whose read_metrics
    every reader calls (the run logger writes to the name it exports)."""
    assert {path for path, text in _sources().items() if "metrics.jsonl" in _string_constants(text)} == {
        "ppl_torchrl/reporting/metrics.py"}


def test_the_dataset_registry_sits_below_data_envs_and_evaluation():
    """Ids, specs, reference scores and OGBench id parsing (ppl_torchrl.registry) import none of the layers that use
    them, and no import (at module level or in a function) runs back up: data/ and envs/ never import evaluation/,
    evaluation/ never imports data/, and the reports never import the training harness."""
    graph = import_graph()

    def edges(source: str, target: str) -> list[str]:
        def inside(module: str, package: str) -> bool:
            return module == package or module.startswith(package + ".")

        return [f"{m} -> {t}" for m, ts in graph.items() if inside(m, source) for t in ts if inside(t, target)]

    registry = [m for m in graph if m.startswith("ppl_torchrl.registry")]
    assert registry and all(t.startswith("ppl_torchrl.registry") or t == "ppl_torchrl.errors"
                            for m in registry for t in graph[m]), {m: graph[m] for m in registry}
    for source, target in (("ppl_torchrl.data", "ppl_torchrl.evaluation"), ("ppl_torchrl.envs", "ppl_torchrl.evaluation"),
                           ("ppl_torchrl.envs", "ppl_torchrl.data"), ("ppl_torchrl.evaluation", "ppl_torchrl.data"),
                           ("ppl_torchrl.data", "ppl_torchrl.envs"), ("ppl_torchrl.reporting", "ppl_torchrl.training")):
        assert not edges(source, target), edges(source, target)


def test_no_module_over_500_lines_without_a_reason():
    """A module longer than 500 lines says why in its docstring (a sentence with "500 lines")."""
    pending: dict[str, str] = {}  # files outside this change, with the reason
    long = {m for m, path in _modules().items() if len(path.read_text().splitlines()) > 500
            and "500 lines" not in (ast.get_docstring(ast.parse(path.read_text())) or "")}
    assert long <= set(pending), sorted(long - set(pending))


def test_the_package_holds_no_experiment_report_and_one_verdict_rule():
    """This project's experiments report from benchmarks/; the 2-SE verdict they use lives once, there."""
    assert not [m for m in _modules() if "evidence" in m or m.endswith(("verdict", "markdown", "launch"))]
    rule = {path for path, text in _sources().items() if "class Verdict" in text or "def compare(" in text}
    assert rule == {"benchmarks/verdict.py"}


#: the grid drivers of benchmarks/, which share benchmarks/grid.py
GRID_DRIVERS = ("evidence", "long_evidence", "ogbench_evidence", "compose_evidence", "finetune")


def _imports(text: str) -> list[tuple[str, list[str]]]:
    """(module, names) of every absolute import of a source (names empty for ``import module``)."""
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.append((node.module, [alias.name for alias in node.names]))
    return out


def test_benchmarks_share_one_grid_driver_and_import_no_script_as_a_top_level_module():
    """benchmarks/ is a package: its modules import each other as benchmarks.<module>, never as top-level scripts, and
    the five grid drivers leave launching, resuming and timing their runs to benchmarks/grid.py."""
    folder = ROOT / "benchmarks"
    scripts = {p.stem for p in folder.glob("*.py")} - {"__init__"}
    for path in folder.rglob("*.py"):
        bad = [m for m, _ in _imports(path.read_text()) if m.split(".")[0] in scripts]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad} as top-level modules: import benchmarks.<module>"
    sources = _sources()
    for driver in GRID_DRIVERS:
        assert any(m == "benchmarks.grid" for m, _ in _imports(sources[f"benchmarks/{driver}.py"])), driver
    own = {path for path, text in sources.items() if path.startswith("benchmarks/")
           and ("Popen(" in text or "finished_results" in text or "timing.json" in _string_constants(text)
                or any(c.startswith("checkpoint.stop_after") for c in _string_constants(text)))}
    assert own == {"benchmarks/grid.py"}, own


def test_nothing_in_the_package_is_there_only_for_benchmarks():
    """Every module of ppl_torchrl/ that benchmarks/ imports, and every name it imports from one, is also used by the
    library or its recipes: experiment code lives in benchmarks/."""
    sources = _sources()
    library = {path: text for path, text in sources.items() if not path.startswith("benchmarks/")}
    benchmarks = {path: text for path, text in sources.items() if path.startswith("benchmarks/")}
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    def imported(texts) -> set[str]:
        found = set()
        for text in texts:
            for module, names in _imports(text):
                found |= {resolve(n) for n in [module, *(f"{module}.{a}" for a in names)] if n.startswith("ppl_torchrl")}
        return found - {None}

    used = imported(library.values())
    only_benchmarks = imported(benchmarks.values()) - used
    assert not only_benchmarks, f"only benchmarks/ import {sorted(only_benchmarks)}: move them to benchmarks/"

    words = set()  # every name the library and the recipes use or import
    for text in library.values():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                words.add(node.id)
            elif isinstance(node, ast.Attribute):
                words.add(node.attr)
            elif isinstance(node, ast.ImportFrom):
                words.update(alias.name for alias in node.names)
    unused = sorted({f"{module}.{name}" for text in benchmarks.values() for module, names in _imports(text)
                     if module.startswith("ppl_torchrl") for name in names if name not in words})
    assert not unused, f"only benchmarks/ use {unused}: move them to benchmarks/"


def test_where_to_change_what_names_files_that_exist():
    """The map of the code (docs/layout.md) names real files and folders."""
    section = (ROOT / "docs" / "layout.md").read_text().split("## Where to change what", 1)[1].split("\n## ", 1)[0]
    paths = set(re.findall(r"`((?:ppl_torchrl|objectives|recipes|docs|benchmarks)/[\w./<>-]*)`", section))
    assert len(paths) >= 10
    missing = [p for p in paths if "<" not in p and not (ROOT / p).exists()]
    assert not missing, missing


def test_one_home_for_the_bc_term():
    """ReBRAC's behaviour-cloning distance (||pi(s) - a||^2 summed over action dimensions) is written once,
    ``objectives.rebrac.bc_distance``; the actor term, the critic's penalty and the one-step BC phase call it."""
    pattern = re.compile(r"\)\.pow\(2\)\.sum\(-1")
    homes = []
    for folder in ("ppl_torchrl", "objectives"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) and "action" in line:
                    homes.append(f"{path.relative_to(ROOT)}:{n}")
    assert len(homes) == 1 and homes[0].startswith("objectives/rebrac.py"), homes


def test_one_network_builder_for_every_loss():
    """The training harness builds the library's networks in one place, ``NetworkConfig.actor / critics / potential``
    (width, depth, activation and initialisation the same way for every loss), never with its own call of the
    ``make_*`` builders."""
    calls = []
    for path in sorted((ROOT / "ppl_torchrl" / "training").rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bmake_(actor|potential|qvalue_ensemble)\(", line):
                calls.append(f"{path.relative_to(ROOT)}:{n}")
    assert calls and all(c.startswith("ppl_torchrl/training/config.py") for c in calls), calls


def test_objectives_use_no_private_attribute_of_torchrl_or_torch():
    """``objectives/`` reads no underscore attribute of another object (``base_loss._x``, ``module._modules``), and on
    ``self`` only its own or the subclass hooks that TorchRL's own ``TD3BCLoss`` uses (how a ``LossModule`` is written:
    the reduction, priority weights, the value estimator's keys, the in-keys cache)."""
    import torchrl.objectives.td3_bc as td3_bc

    torchrl_hooks = set(re.findall(r"self\.(_[a-z]\w*)", Path(td3_bc.__file__).read_text()))
    own, used, foreign = set(), {}, []
    for path in sorted((ROOT / "objectives").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith("_"):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                where = f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}"
                if isinstance(node.value, ast.Name) and node.value.id == "self":
                    if isinstance(node.ctx, ast.Store):
                        own.add(node.attr)
                    used.setdefault(node.attr, where)
                elif not (isinstance(node.value, ast.Name) and node.value.id in {"cls", "type"}):
                    foreign.append(where)
    assert not foreign, foreign
    borrowed = {name: where for name, where in used.items() if name not in own}
    assert borrowed and all(name in torchrl_hooks for name in borrowed), (borrowed, sorted(torchrl_hooks))
    assert "_has_update_associated" not in borrowed
