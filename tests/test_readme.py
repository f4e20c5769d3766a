"""The README as a new user pastes it: every Python block runs in a fresh interpreter with the default model and
prints what the README shows after it; and every import of examples/ (and of the README's blocks) is installed by the
README's install lines (their requirements followed through the installed packages' metadata)."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from test_serve import Server

from routehead_rag.serve import ServeSettings, create_app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_NUMBER = re.compile(r"-?\d+\.\d+")


def blocks() -> list[tuple[str, str]]:
    """The README's fenced blocks, ``(language, text)``, in order."""
    return re.findall(r"```(\w*)\n(.*?)```", README.read_text(), flags=re.S)


def python_blocks() -> list[tuple[int, str, str | None]]:
    """Each Python block's index among :func:`blocks`, its code, and the ``text`` block right after it (what the
    README says it prints) or ``None``."""
    found = blocks()
    return [(i, code, found[i + 1][1] if i + 1 < len(found) and found[i + 1][0] == "text" else None)
            for i, (language, code) in enumerate(found) if language == "python"]


def same_output(printed: str, shown: str, tolerance: float = 0.02) -> bool:
    """The lines are the same but for numbers, which may differ by ``tolerance`` (a CPU without a bf16 matmul runs
    the model in float32)."""
    a, b = printed.strip().splitlines(), shown.strip().splitlines()
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if _NUMBER.sub("#", x) != _NUMBER.sub("#", y):
            return False
        if any(abs(float(p) - float(q)) > tolerance for p, q in zip(_NUMBER.findall(x), _NUMBER.findall(y))):
            return False
    return True


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("index", [i for i, _, _ in python_blocks()])
def test_every_python_block_runs_as_pasted_and_prints_what_the_readme_shows(index, tmp_path, default_reranker):
    code, shown = next((c, s) for i, c, s in python_blocks() if i == index)
    if "base_url=" in code:  # a client of `routehead serve`: the README's server, started as its bash block says
        key = re.search(r'api_key="([^"]+)"', code)[1]
        with Server(create_app(default_reranker, ServeSettings(api_key=key))) as running:
            done = _run(re.sub(r"http://127\.0\.0\.1:\d+", running.url, code), tmp_path)
    else:
        done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    if shown is not None:
        assert same_output(done.stdout, shown), f"printed:\n{done.stdout}\nthe README shows:\n{shown}"


def install_lines() -> list[list[str]]:
    """The arguments of each ``pip install`` in the README's Install section (comments dropped)."""
    section = README.read_text().split("\n## Install", 1)[1].split("\n## ", 1)[0]
    code = next(text for language, text in re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S) if language == "bash")
    lines = [line.split("#", 1)[0].split() for line in code.splitlines()]
    return [words[2:] for words in lines if words[:2] == ["pip", "install"]]


def _local(argument: str) -> tuple[str, list[Requirement]]:
    """A local path argument (``"./routehead-rag[extra]"``, an integration's folder): its project's name and what it
    requires, with the extras asked for."""
    path, _, extras = argument.strip('"').partition("[")
    folder = ROOT if Path(path) == Path("routehead-rag") else ROOT / Path(path).relative_to("routehead-rag")
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project.get("dependencies", [])]
    for extra in filter(None, extras.rstrip("]").split(",")):
        wanted += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return project["name"], wanted


def installed_by_readme() -> set[str]:
    """Every distribution the README's install lines bring, by normalized name: their requirements followed through
    the installed packages' metadata (extras included where asked for)."""
    todo: list[Requirement] = []
    names: set[str] = set()
    for words in install_lines():
        for argument in (w for w in words if not w.startswith(("-", "http"))):
            if argument.strip('"').startswith("./routehead-rag"):
                name, wanted = _local(argument)
                names.add(_normalized(name))
                todo += wanted
            else:
                todo.append(Requirement(argument))
    while todo:
        requirement = todo.pop()
        if requirement.name == "routehead-rag":  # an integration's own requirement of this package, with extras
            todo += [r for extra in requirement.extras for r in _local(f"./routehead-rag[{extra}]")[1]]
            continue
        name = _normalized(requirement.name)
        if name in names:
            continue
        names.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in requirement.extras or {""}):
                todo.append(child)
    return names


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports(code: str) -> set[str]:
    tops = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            tops.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module if node.module.startswith("llama_index") else node.module.split(".")[0])
    return tops


def test_every_import_of_the_examples_and_snippets_is_installed_by_the_readme():
    local = {p.stem for p in (ROOT / "examples").glob("*.py")}
    sources = {p.name: p.read_text() for p in (ROOT / "examples").glob("*.py")}
    sources.update({f"README block {i}": code for i, code, _ in python_blocks()})
    brought = installed_by_readme()
    owners = metadata.packages_distributions()
    missing = {}
    for name, code in sources.items():
        for module in _imports(code) - local - set(sys.stdlib_module_names) - {"__future__"}:
            top = module.split(".")[0]
            if module.startswith("llama_index."):  # a namespace package: the portion's own distribution
                dists = {"llama-index-postprocessor-routehead"} if "routehead" in module else {
                    "llama-index-embeddings-huggingface"} if "embeddings.huggingface" in module else {"llama-index-core"}
            else:
                dists = {_normalized(d) for d in owners.get(top, [top])}
            if not dists & brought:
                missing.setdefault(name, []).append(module)
    assert not missing, f"imports that the README's install lines do not bring: {missing}"
