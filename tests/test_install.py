"""The package installs from a built wheel into another project's environment (its own torch kept), and the README's
quickstart runs there, pasted as it is, offline. About 30 s: the wheel, a fresh virtualenv, one model load."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What the wheel under test replaces, and .pth files (editable installs of this checkout), left out of the environment
# that stands for the user's project.
_OURS = re.compile(r"(routehead_rag|langchain_routehead|llama_index_postprocessor_routehead|__editable__).*|.*\.pth")
# Nothing of this checkout on the path (a PYTHONPATH to it would count as routehead-rag installed); no hub downloads.
_CLEAN = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "HF_HUB_OFFLINE": "1",
          "TRANSFORMERS_OFFLINE": "1"}


def readme_quickstart() -> str:
    """The Python block of the README's Quickstart section."""
    section = ROOT.joinpath("README.md").read_text().split("\n## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def project_environment(tmp_path: Path) -> Path:
    """A fresh virtualenv whose only packages are this environment's (torch, transformers, the default model's
    wheel, ...) but for routehead-rag itself: a user's project that already has its torch."""
    theirs = tmp_path / "their-packages"
    theirs.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not _OURS.fullmatch(entry.name):
            (theirs / entry.name).symlink_to(entry)
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, env=_CLEAN)
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([env / "bin" / "python", "-c", where], capture_output=True, text=True,
                               check=True).stdout.strip())
    (site / "their_packages.pth").write_text(f"{theirs}\n")
    return env


def built_wheel(tmp_path: Path) -> Path:
    """The wheel of this checkout, built from a clean copy (a stale build/ folder cannot leak into it)."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                                "__pycache__", ".pytest_cache", ".hypothesis"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, env=_CLEAN)
    return next((tmp_path / "dist").glob("routehead_rag-*.whl"))


@pytest.mark.slow
def test_the_wheel_installs_beside_the_projects_torch_and_the_readme_quickstart_runs_offline(tmp_path):
    wheel, env = built_wheel(tmp_path), project_environment(tmp_path)
    python = env / "bin" / "python"
    # --no-index: every dependency must be met by what the project has; nothing may replace its torch.
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                                f"{wheel}[serve]"], capture_output=True, text=True, env=_CLEAN)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "Successfully installed routehead-rag-" in installed.stdout and "torch" not in installed.stdout.split(
        "Successfully installed")[1]

    work = tmp_path / "elsewhere"  # not the checkout: the import must come from the installed wheel
    work.mkdir()
    where = subprocess.run([python, "-c", "import routehead_rag; print(routehead_rag.__file__)"], cwd=work, env=_CLEAN,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(env))
    run = subprocess.run([python, "-c", readme_quickstart()], cwd=work, env=_CLEAN, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("1 ") and "vitamin C" in lines[0], run.stdout
    assert "Loading weights" not in run.stderr  # quiet by default
    shown = subprocess.run([env / "bin" / "routehead", "--help"], cwd=work, env=_CLEAN, capture_output=True, text=True)
    assert shown.returncode == 0 and "everyday commands" in shown.stdout
