"""Sessions: tests, lint, typing, bench, demo (and docs and serve once their issues land)."""

from __future__ import annotations

import nox

PYPROJECT = nox.project.load_toml("pyproject.toml")


def group(name: str) -> list[str]:
    """The requirements of a dependency group (read here: older pips lack --group)."""
    return list(nox.project.dependency_groups(PYPROJECT, name))


nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typing"]

PYTHON = None  # the interpreter nox runs on: a newcomer has one Python, and that is enough
ALL_EXTRAS = ".[cache,redis,sqlalchemy,postgres,rabbitmq,nats,fastapi,otel,prometheus]"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the whole test suite, integration tests included (they skip without their services)."""
    session.install("-e", ALL_EXTRAS, *group("test"))
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Run ruff's linter and check the formatting."""
    session.install(*group("lint"))
    paths = ["src", "tests", "typing_tests", "benchmarks", "examples", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


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
    session.run("python", "-m", "examples.users.tour")


@nox.session(python=PYTHON)
def serve(session: nox.Session) -> None:
    """Serve the example user service until interrupted (pass --port N, --workers N after --)."""
    session.install("-e", ALL_EXTRAS, *group("examples"))
    session.run("python", "-m", "examples.users", *session.posargs)


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
