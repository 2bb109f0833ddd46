"""Every ```python block in docs/**/*.md runs, so the docs cannot rot.

How a page's code runs:

- The blocks of one page run in order, in one namespace, inside one event loop (a tutorial builds on
  its earlier steps). A block may use ``await`` at top level.
- Before a page's own code, the code of docs/example-domain.md runs: the messages and handlers
  (``RegisterUser``, ``GetUser``, ``PlaceOrder``...) that pages wire without re-declaring them.
- A page runs in a fresh temporary directory, so SQLite files it makes vanish with it.
- ``<!-- not-run -->`` on the line before a block skips that block (for fragments that cannot run:
  a shell session shown as Python, a snippet needing a server). Use it sparingly.
- ``<!-- setup`` ... ``-->`` holds Python that runs at that point but is not shown, for the definitions
  a page's visible code assumes (the ``PlaceOrder`` a behaviour page wires, say).
- ``<!-- file: NAME -->`` on the line before a block appends the block to the file NAME of a project
  the page builds (the tutorial grows ``tasks.py``); such a block is not run in the page's namespace.
  ``<!-- run: COMMAND -->`` before a block runs COMMAND in that project, with every file as the page
  has written it so far, and the block is what the command prints last (``...`` in a line stands
  for any text: a time, a timestamp). `TestProjectFiles` runs them with this interpreter and the source tree;
  tests/test_packaging.py runs the tutorial's again in a fresh venv with the wheel installed.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PRELUDE = DOCS / "example-domain.md"
NOT_RUN = "<!-- not-run -->"
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<info>[^\n`]*)$")
_SETUP_OPEN = "<!-- setup"
_PROJECT_MARK = re.compile(r"^<!-- (?P<kind>file|run): (?P<value>.+?) -->$")


@attrs.frozen
class Block:
    """One piece of Python a page runs: its source and the line it starts on."""

    source: str
    line: int


def blocks(text: str) -> Iterator[Block]:
    """Yield the runnable Python of a Markdown page, in order: fenced blocks and hidden setup."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.strip() == _SETUP_OPEN:
            end = _closing(lines, index + 1, lambda candidate: candidate.strip() == "-->")
            yield Block("\n".join(lines[index + 1 : end]), index + 2)
            index = end + 1
            continue
        match = _FENCE.match(line)
        if match is None:
            index += 1
            continue
        fence = match["fence"]
        end = _closing(lines, index + 1, lambda candidate, fence=fence: candidate.strip() == fence)
        words = match["info"].replace("{", " ").replace("}", " ").split()
        if words[:1] in (["code-block"], ["code"], ["sourcecode"]):
            words = words[1:]
        language = words[0] if words else ""
        previous = _previous_non_blank(lines, index)
        if language in {"python", "py"} and previous != NOT_RUN and not _PROJECT_MARK.match(previous):
            yield Block("\n".join(lines[index + 1 : end]), index + 2)
        index = end + 1


def _closing(lines: list[str], start: int, is_end: Any) -> int:
    for position in range(start, len(lines)):
        if is_end(lines[position]):
            return position
    raise AssertionError(f"unclosed block starting at line {start}")


def _previous_non_blank(lines: list[str], index: int) -> str:
    for position in range(index - 1, -1, -1):
        if lines[position].strip():
            return lines[position].strip()
    return ""


def pages() -> list[Path]:
    """Every Markdown page of the docs that holds Python to run."""
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        if "_build" in path.parts or "api" in path.relative_to(DOCS).parts[:1]:
            continue
        if any(True for _ in blocks(path.read_text(encoding="utf-8"))):
            found.append(path)
    return found


async def run_page(path: Path, text: str, prelude: str = "") -> None:
    """Run `prelude`'s blocks, then each block of `path`, in one namespace, awaiting top-level await."""
    # A real module, so that attrs, cattrs and typing can resolve names the page's classes use.
    module = types.ModuleType(f"docs_page_{path.stem.replace('-', '_')}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    try:
        for block in [*blocks(prelude), *blocks(text)]:
            source = "\n" * (block.line - 1) + block.source  # tracebacks point at the page's own lines
            # dont_inherit: this file's "from __future__ import annotations" must not leak into the page.
            code = compile(source, str(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
            outcome = eval(code, module.__dict__)  # noqa: S307 - running our own documentation is the point
            if inspect.iscoroutine(outcome):
                await outcome
    finally:
        del sys.modules[module.__name__]


@attrs.frozen
class ProjectRun:
    """A command a page runs in the project it builds: the files so far, and what it must print last."""

    files: dict[str, str]
    command: tuple[str, ...]
    expected: str
    line: int


def project_runs(text: str) -> list[ProjectRun]:
    """Return each ``<!-- run: ... -->`` of a page with the project's files as written before it."""
    lines = text.splitlines()
    files: dict[str, str] = {}
    runs: list[ProjectRun] = []
    for index, line in enumerate(lines):
        match = _FENCE.match(line)
        mark = _PROJECT_MARK.match(_previous_non_blank(lines, index)) if match else None
        if match is None or mark is None:
            continue
        fence = match["fence"]
        end = _closing(lines, index + 1, lambda candidate, fence=fence: candidate.strip() == fence)
        body = "\n".join(lines[index + 1 : end]) + "\n"
        if mark["kind"] == "file":
            name = mark["value"]
            files[name] = files[name] + "\n\n" + body if name in files else body
        else:
            runs.append(ProjectRun(dict(files), tuple(mark["value"].split()), body, index + 2))
    return runs


def output_matches(expected: str, out: str) -> bool:
    """Tell whether `out` ends with the lines of `expected`, where ``...`` in a line matches any text."""
    wanted = expected.strip("\n").splitlines()
    got = out.rstrip("\n").splitlines()[-len(wanted) :] if wanted else []
    if len(got) != len(wanted):
        return False
    patterns = [re.compile(".*".join(re.escape(part) for part in want.split("...")) + "$") for want in wanted]
    return all(pattern.match(line) for pattern, line in zip(patterns, got, strict=True))


def run_project(runs: list[ProjectRun], python: list[str], where: Path, env: dict[str, str]) -> None:
    """Write each run's files in `where` and run its command there with `python`; compare the output."""
    for run in runs:
        for name, content in run.files.items():
            (where / name).write_text(content, encoding="utf-8")
        program, *arguments = run.command
        assert program == "python", f"line {run.line}: only python commands can run: {run.command}"
        done = subprocess.run(  # noqa: S603 - the interpreter we were given, the page's own command
            [*python, *arguments], cwd=where, env=env, capture_output=True, text=True, check=False
        )
        shown = (
            f"line {run.line}: {' '.join(run.command)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        assert done.returncode == 0, shown
        assert output_matches(run.expected, done.stdout), f"{shown}\nexpected to end with:\n{run.expected}"


class TestBlocks:
    """The extractor finds what a page runs and skips what it must not."""

    def test_fences_markers_and_setup(self) -> None:
        """Python fences run, other languages and marked blocks do not, hidden setup does."""
        text = "\n".join(
            [
                "```python",
                "a = 1",
                "```",
                "```bash",
                "ls",
                "```",
                NOT_RUN,
                "```python",
                "skipped = True",
                "```",
                _SETUP_OPEN,
                "b = 2",
                "-->",
                "````{code-block} python",
                "c = 3",
                "````",
            ]
        )
        assert [block.source for block in blocks(text)] == ["a = 1", "b = 2", "c = 3"]
        assert [block.line for block in blocks(text)] == [2, 12, 15]


def _params() -> list[Any]:
    return [pytest.param(path, id=path.relative_to(DOCS).as_posix()) for path in pages()]


@pytest.mark.parametrize("page", _params())
def test_page_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Python block of the page runs without error."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CQRSKIT_DOCS_TEST", "1")
    prelude = PRELUDE.read_text(encoding="utf-8") if page != PRELUDE else ""
    asyncio.run(run_page(page, page.read_text(encoding="utf-8"), prelude))


def _project_pages() -> list[Any]:
    return [
        pytest.param(path, id=path.relative_to(DOCS).as_posix())
        for path in sorted(DOCS.rglob("*.md"))
        if "_build" not in path.parts and project_runs(path.read_text(encoding="utf-8"))
    ]


class TestProjectFiles:
    """The files a page builds step by step run as a reader runs them, and print what the page shows."""

    @pytest.mark.parametrize("page", _project_pages())
    def test_each_run_prints_what_the_page_shows(self, page: Path, tmp_path: Path) -> None:
        """Each ``<!-- run -->`` command, with the files as written up to it, ends with the page's output."""
        env = {**os.environ, "PYTHONPATH": str(DOCS.parent / "src")}
        run_project(project_runs(page.read_text(encoding="utf-8")), [sys.executable], tmp_path, env)

    def test_the_tutorial_builds_a_project(self) -> None:
        """The tutorial grows tasks.py, adds its tests, and runs the file after each step."""
        runs = project_runs((DOCS / "tutorial.md").read_text(encoding="utf-8"))
        assert {"tasks.py", "test_tasks.py", "pyproject.toml"} <= set(runs[-1].files)
        assert sum(run.command == ("python", "tasks.py") for run in runs) >= 4
        assert "asyncio.run(main())" in runs[0].files["tasks.py"]

    def test_marks_and_outputs(self) -> None:
        """File blocks accumulate, run blocks capture them, and ``...`` matches any text."""
        text = "\n".join(
            [
                "<!-- file: a.py -->",
                "```python",
                "x = 1",
                "```",
                "<!-- run: python a.py -->",
                "```text",
                "done in ...",
                "```",
                "<!-- file: a.py -->",
                "```python",
                "y = 2",
                "```",
            ]
        )
        (run,) = project_runs(text)
        assert run.files == {"a.py": "x = 1\n"}
        assert run.command == ("python", "a.py")
        assert list(blocks(text)) == []
        assert output_matches(run.expected, "noise\ndone in 0.1s\n")
        assert not output_matches(run.expected, "done\n")
        assert output_matches("... [warning] x ... y=1", "2026-01-01 [warning] x a=2 y=1")


_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:")


def _relative_links_in(text: str) -> Iterator[str]:
    """Yield the relative link targets of Markdown `text`, outside code blocks and code spans."""
    inside_code = False
    for line in text.splitlines():
        if _FENCE.match(line):
            inside_code = not inside_code
            continue
        if inside_code:
            continue
        for match in _LINK.finditer(re.sub(r"`[^`]*`", "", line)):
            target = match["target"]
            if not _SCHEME.match(target) and not target.startswith("#"):
                yield target


def _linking_pages() -> list[Path]:
    root = DOCS.parent
    found = [root / "README.md", root / "CHANGELOG.md", *sorted(root.joinpath("examples").rglob("*.md"))]
    found += [
        path
        for path in sorted(DOCS.rglob("*.md"))
        if "_build" not in path.parts and "api" not in path.relative_to(DOCS).parts[:1]
    ]
    return found


class TestLinks:
    """Every relative link in the README, the changelog, the examples and the docs names a real file."""

    @pytest.mark.parametrize(
        "page", _linking_pages(), ids=lambda path: path.relative_to(DOCS.parent).as_posix()
    )
    def test_relative_links_resolve(self, page: Path) -> None:
        """Each relative target (its #anchor left aside) exists next to the page that links to it."""
        broken = [
            target
            for target in _relative_links_in(page.read_text(encoding="utf-8"))
            if not (page.parent / target.split("#")[0]).exists()
        ]
        assert broken == []

    def test_finds_links(self) -> None:
        """The link finder sees links in prose and ignores code."""
        text = "see [a](a.md) and [b](https://x.org)\n```python\n[c](c.md)\n```\n`[d](d.md)` ![e](e.png)\n"
        assert list(_relative_links_in(text)) == ["a.md"]
