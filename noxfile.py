"""Sessions: tests, lint, typing, docs, build, bench, demo, serve, check, dashboard."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

PYPROJECT = nox.project.load_toml("pyproject.toml")


def group(name: str) -> list[str]:
    """The requirements of a dependency group (read here: older pips lack --group)."""
    return list(nox.project.dependency_groups(PYPROJECT, name))


nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typing"]

PYTHON = None  # the interpreter nox runs on: a newcomer has one Python, and that is enough
# Every extra pyproject.toml declares: the sessions test all of them.
ALL_EXTRAS = f".[{','.join(PYPROJECT['project']['optional-dependencies'])}]"


def install_chromium(session: nox.Session) -> None:
    """Install Debian's chromium for the Swagger UI test when it is missing and we may (as root)."""
    if Path("/usr/bin/chromium").exists() or shutil.which("apt-get") is None or os.geteuid() != 0:
        return  # outside CI the test then skips with its reason; in CI it fails
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    # A fresh machine has no package lists yet: without them the install finds nothing.
    session.run("apt-get", "update", "-qq", external=True, env=env, success_codes=[0, 100])
    session.run("apt-get", "install", "-y", "chromium", external=True, env=env, success_codes=[0, 100])


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the whole test suite, integration tests included (they skip without their services)."""
    session.install("-e", ALL_EXTRAS, *group("test"))
    install_chromium(session)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Run ruff's linter, check the formatting, and check the architecture (docs/architecture.md)."""
    session.install(*group("lint"))
    paths = ["src", "tests", "typing_tests", "benchmarks", "examples", "docs/_tools", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    # Both read the source without importing it: src on the path is all they need, no extras.
    source = {"PYTHONPATH": "src"}
    session.run("lint-imports", "--no-cache", env=source)  # the contracts in pyproject.toml
    session.run("python", "-m", "tests.architecture", env=source)  # no import cycle, no string import


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """Check the package and the typing tests with mypy --strict, and the typing tests with pyright."""
    session.install("-e", ALL_EXTRAS, *group("typing"), *group("test"))
    session.run("mypy", "--strict")
    session.run("pyright", "typing_tests")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run every benchmark in benchmarks/ and print its table."""
    session.install("-e", ALL_EXTRAS, *group("test"))
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Start the example user service on a free port, drive a scripted HTTP tour, print it, stop it."""
    session.install("-e", ALL_EXTRAS, *group("examples"))
    session.run("python", "-m", "examples.users.tour", env={"USERS_DEMO": "1"})


@nox.session(python=PYTHON)
def serve(session: nox.Session) -> None:
    """Serve the example user service until interrupted (pass --port N, --workers N after --)."""
    session.install("-e", ALL_EXTRAS, *group("examples"))
    # The demo's bearer tokens and seeded users: without USERS_DEMO=1 the service accepts no token.
    session.run("python", "-m", "examples.users", *session.posargs, env={"USERS_DEMO": "1"})


@nox.session(python=PYTHON)
def dashboard(session: nox.Session) -> None:
    """Draw docs/_static/grafana-cqrskit.png from the example's metrics (PostgreSQL, Redis, RabbitMQ)."""
    session.install("-e", ALL_EXTRAS, *group("examples"), *group("dashboard"))
    session.run("python", "-m", "docs._tools.dashboard", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site into docs/_build/html, with every warning an error."""
    session.install("-e", ALL_EXTRAS, *group("docs"))
    build = ["sphinx-build", "-E", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"]
    session.run(*build, *session.posargs)


@nox.session(python=PYTHON)
def check(session: nox.Session) -> None:
    """Check the example service's wiring with the route inspector (exits non-zero on a problem)."""
    session.install("-e", ALL_EXTRAS)
    session.run(
        "python", "-m", "cqrskit", "check", "examples.users.container:Container",
        "--modules", "examples.users.messages",
    )  # fmt: skip


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel into dist/ (emptied first) and check them with twine."""
    session.install(*group("build"))
    shutil.rmtree("dist", ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", "dist")
    session.run("twine", "check", "--strict", *sorted(str(path) for path in Path("dist").iterdir()))
