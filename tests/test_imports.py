"""Import boundaries: reading a sweep's files needs no torch."""

from __future__ import annotations

import subprocess
import sys


def test_the_analysis_and_the_results_schema_import_without_torch():
    # a fresh interpreter: this test process has long imported torch
    code = ("import sys, analysis, analysis.load, analysis.report, tune.results, "
            "s4l_models.predictions; sys.exit(1 if 'torch' in sys.modules else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr or "importing the analysis imported torch"


def test_the_package_names_still_load_on_use():
    from s4l_models import TrainConfig, create_model, list_methods

    assert "supervised" in list_methods() and TrainConfig().arch and callable(create_model)


# --- the import graph of the project's own modules --------------------------------------------
import ast  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("s4l_models", "search_spaces", "tune", "analysis")
# The only project modules imported inside functions (docs/architecture.md says why): modules
# that import torch (the command line, the results schema and the analysis start without it),
# the Ray runner (imported after the command set Ray's environment) and the report (matplotlib).
DECLARED_LATE = {
    "s4l_models.resnet", "s4l_models.schedule", "s4l_models.stages", "s4l_models.methods",
    "s4l_models.methods.base", "s4l_models.data.datasets", "tune.runner", "analysis.report",
}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]):
    """(imported project module, inside a function?) for every import statement."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                yield t, id(node) in in_function


def test_no_project_module_is_imported_inside_a_function_except_the_declared_ones():
    modules = _modules()
    late = sorted(f"{name} -> {t}" for name, path in modules.items()
                  for t, inside in _imports(name, path, modules)
                  if inside and t not in DECLARED_LATE)
    assert not late, "undeclared imports inside functions: " + "; ".join(late)


def test_the_module_level_import_graph_has_no_cycles():
    modules = _modules()
    graph = {name: {t for t, inside in _imports(name, path, modules) if not inside}
             for name, path in modules.items()}
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(cycles)
