"""The released artefacts: what the sdist and the wheel hold, and the wheel working on its own.

These tests build from a copy of the project with junk planted in it (a docs build, a nox venv, caches),
then install the wheel in a fresh virtual environment, away from the source tree, and run the README's
quick start there. Installing needs PyPI for the dependencies: deselect with ``-m "not packaging"``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import attrs
import pytest

from tests.test_docs import project_runs, run_project

ROOT = Path(__file__).resolve().parent.parent
# Every extra pyproject.toml declares, so a new one is installed here without editing this file.
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ALL_EXTRAS = ",".join(PYPROJECT["project"]["optional-dependencies"])

pytestmark = pytest.mark.packaging

# Files a build must leave out: each is planted in the copy the artefacts are built from.
JUNK = [
    ".nox/lint/bin/python",
    ".venv/bin/python",
    "dist/cqrskit-0.0.0.tar.gz",
    "build/lib/cqrskit/__init__.py",
    "docs/_build/html/index.html",
    "docs/api/01-cqrskit.md",
    "src/cqrskit/__pycache__/_bus.cpython-311.pyc",
]


@attrs.frozen
class Artefacts:
    """The sdist and wheel built from one copy of the project."""

    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Artefacts:
    """Copy the project (no .git, no nox venvs), plant the junk, and build the sdist and the wheel."""
    copy = tmp_path_factory.mktemp("project") / "cqrskit"
    shutil.copytree(ROOT, copy, ignore=_not_copied)
    for junk in JUNK:
        (copy / junk).parent.mkdir(parents=True, exist_ok=True)
        (copy / junk).write_text("junk\n")
    out = tmp_path_factory.mktemp("dist")
    # The wheel is built from the sdist (build's default), so a file the sdist misses breaks the wheel.
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(copy)], cwd=copy)
    return Artefacts(sdist=next(out.glob("*.tar.gz")), wheel=next(out.glob("*.whl")))


class TestSdist:
    def test_holds_the_project(self, artefacts: Artefacts) -> None:
        """The sdist holds the sources, the tests, the docs, the metadata files and py.typed."""
        names = _sdist_names(artefacts.sdist)
        expected = {
            "pyproject.toml",
            "README.md",
            "CHANGELOG.md",
            "LICENSE",
            "src/cqrskit/py.typed",
            "tests/test_packaging.py",
            "docs/index.md",
            "docs/conf.py",
            "typing_tests/test_buses.py",
        }
        sources = {path.relative_to(ROOT).as_posix() for path in (ROOT / "src").rglob("*.py")}

        assert expected | sources <= names

    def test_leaves_out_the_junk(self, artefacts: Artefacts) -> None:
        """No docs build, venv, old artefact, generated page or bytecode gets into the sdist."""
        names = _sdist_names(artefacts.sdist)

        assert [name for name in names if name in JUNK or name.endswith(".pyc")] == []


class TestWheel:
    def test_holds_the_package_and_nothing_else(self, artefacts: Artefacts) -> None:
        """The wheel holds every module of src/cqrskit and py.typed, and nothing else but its metadata."""
        with zipfile.ZipFile(artefacts.wheel) as wheel:
            names = {name for name in wheel.namelist() if ".dist-info/" not in name}
        package = ROOT / "src"
        expected = {path.relative_to(package).as_posix() for path in (package / "cqrskit").rglob("*.py")}

        assert names == expected | {"cqrskit/py.typed"}

    def test_runs_the_quick_start_alone(self, artefacts: Artefacts, tmp_path: Path) -> None:
        """Installed alone in a fresh venv, the wheel runs the README's quick start and ships py.typed."""
        python = _fresh_venv(tmp_path)
        _run([str(python), "-m", "pip", "install", "--quiet", str(artefacts.wheel)], cwd=tmp_path)
        (tmp_path / "quick_start.py").write_text(_quick_start())

        out = _run([str(python), "-I", "quick_start.py"], cwd=tmp_path)
        where = _run([str(python), "-I", "-c", _WHERE], cwd=tmp_path)

        assert "CreateUser success" in out
        assert "ada@example.com" in out
        assert where.split() == [str(tmp_path / "venv"), "True"]

    def test_runs_the_tutorial_as_written(self, artefacts: Artefacts, tmp_path: Path) -> None:
        """In a fresh venv with the wheel and the extras the tutorial names, each step runs as shown.

        The tutorial's files are written as the page grows them and run with ``python -I`` (no source
        tree, no PYTHONPATH, no user site), each run's output compared with the page's.
        """
        python = _fresh_venv(tmp_path)
        wheel = f"cqrskit[cache,fastapi] @ {artefacts.wheel.as_uri()}"
        _run(
            [str(python), "-m", "pip", "install", "--quiet", wheel, "pytest", "pytest-asyncio"], cwd=tmp_path
        )
        project = tmp_path / "tasks"
        project.mkdir()
        runs = project_runs((ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8"))

        run_project(runs, [str(python), "-I"], project, _clean_env())

        assert (project / "tasks.py").is_file()

    def test_every_public_module_imports_with_the_extras(self, artefacts: Artefacts, tmp_path: Path) -> None:
        """With every extra installed, each public module imports and each name in its __all__ resolves."""
        python = _fresh_venv(tmp_path)
        wheel = f"cqrskit[{ALL_EXTRAS}] @ {artefacts.wheel.as_uri()}"
        _run([str(python), "-m", "pip", "install", "--quiet", wheel], cwd=tmp_path)

        out = _run([str(python), "-I", "-c", _IMPORT_EVERYTHING], cwd=tmp_path)

        assert out.split() == [
            "cqrskit",
            "cqrskit.behaviours",
            "cqrskit.caching",
            "cqrskit.events",
            "cqrskit.fastapi",
            "cqrskit.health",
            "cqrskit.processes",
            "cqrskit.routing",
            "cqrskit.scope",
            "cqrskit.sqlalchemy",
            "cqrskit.testing",
        ]


# Where the installed package is, and whether its py.typed came with it.
_WHERE = """
import pathlib, sys, cqrskit
package = pathlib.Path(cqrskit.__file__).parent
print(sys.prefix, (package / "py.typed").is_file())
"""

# Import every public module of the installed package and resolve each name of its __all__.
_IMPORT_EVERYTHING = """
import importlib, pkgutil, cqrskit
names = ["cqrskit"] + [
    f"cqrskit.{info.name}" for info in pkgutil.iter_modules(cqrskit.__path__) if not info.name.startswith("_")
]
for name in sorted(names):
    module = importlib.import_module(name)
    for attribute in module.__all__:
        getattr(module, attribute)
    print(name)
"""


def _not_copied(directory: str, names: list[str]) -> set[str]:
    """Leave out the repository and whatever the copy's own junk stands for (big, or not ours)."""
    left_out = {".git", ".nox", ".venv", "dist", "build", "__pycache__"} if Path(directory) == ROOT else set()
    if Path(directory) == ROOT / "docs":
        left_out = {"_build", "api"}
    return {name for name in names if name in left_out or name == "__pycache__"}


def _quick_start() -> str:
    """Return the first Python block after the README's "Quick start" heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match is not None, "the README's quick start has no python block"
    return match[1]


def _fresh_venv(where: Path) -> Path:
    command = [sys.executable, "-m", "venv", str(where / "venv")]
    subprocess.run(command, check=True, env=_clean_env())  # noqa: S603 - this interpreter, fixed arguments
    return where / "venv" / "bin" / "python"


def _run(command: list[str], cwd: Path) -> str:
    done = subprocess.run(  # noqa: S603 - interpreters we made, fixed arguments
        command, cwd=cwd, env=_clean_env(), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _clean_env() -> dict[str, str]:
    """The environment without anything that would put the source tree or this venv on the path."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    }


def _sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
