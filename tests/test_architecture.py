"""The package's layers import only downward, and its modules form no import cycle (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "routehead_rag"

# Lowest first; a module may import its own layer and those below. training, bench and serving are siblings that may not
# import each other. The package's own __init__ only names the public API (lazily), so it is left out.
LAYERS = {
    "base": {"paths", "status"},
    "data": {"data"},
    "engine": {"backbone", "documents", "tokens", "prompt", "capture", "forward", "scoring", "windows", "heads",
               "embedding", "router", "calibration", "presets", "trust", "reranker", "reference", "default_router",
               "evidence", "reweighting", "recipe", "adapter"},
    "features": {"features", "workers"},
    "training": {"training"},
    "bench": {"bench"},
    "serving": {"serve"},
    "interface": {"cli", "adapters"},
}
RANK = {"base": 0, "data": 1, "engine": 2, "features": 3, "training": 4, "bench": 4, "serving": 4, "interface": 5}


def _modules() -> dict[str, Path]:
    """``{"routehead_rag.x.y": path}`` for every module of the package but its top-level ``__init__``."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "routehead_rag":
            found[name] = path
    return found


def _imports(name: str, path: Path, modules_only: bool = False) -> set[str]:
    """The package modules ``name`` imports anywhere in its file (inside functions too), absolute names; with the
    names imported from them too unless ``modules_only``."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            target = f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module)
            if target and target.startswith("routehead_rag"):
                out.add(target)
                if not modules_only:
                    out.update(f"{target}.{a.name}" for a in node.names)  # "from . import features" names a module
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("routehead_rag"))
    return out


def _layer(module: str) -> str:
    top = module.split(".")[1]
    return next(layer for layer, tops in LAYERS.items() if top in tops)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(name, path) if m in modules and m != name} for name, path in modules.items()}


def test_every_module_has_a_layer():
    assert all(_layer(m) for m in _modules())


def test_every_import_of_the_package_names_a_module_of_it():
    """A lazy import inside a function (the CLI's) is checked too, not only when its command runs."""
    modules = _modules()
    missing = [f"{name} imports {target}" for name, path in modules.items()
               for target in _imports(name, path, modules_only=True) if target not in {*modules, "routehead_rag"}]
    assert not missing, "\n".join(missing)


def test_layers_import_only_downward_and_siblings_not_each_other():
    upward = []
    for module, imported in _graph().items():
        for target in imported:
            low, high = _layer(target), _layer(module)
            if RANK[low] > RANK[high] or (RANK[low] == RANK[high] and low != high):
                upward.append(f"{module} ({high}) imports {target} ({low})")
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check is not vacuous: the old circle (router importing training inside a function) is found."""
    fake = tmp_path / "router.py"
    fake.write_text("def select():\n    from .training.features import query_embedding\n")
    assert "routehead_rag.training.features" in _imports("routehead_rag.router", fake)
    assert _layer("routehead_rag.training.features") == "training" and RANK["training"] > RANK["engine"]
