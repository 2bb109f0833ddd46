"""Sphinx configuration: MyST Markdown pages, furo, and an API reference made from the docstrings."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

project = "cqrskit"
author = "cqrskit developers"
copyright = "cqrskit developers"  # noqa: A001 - the name Sphinx reads

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinxcontrib.mermaid",  # docs/architecture.md's diagram, drawn in the browser
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "README.md"]
html_theme = "furo"
html_title = "cqrskit"
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "imported-members": True, "show-inheritance": True}

# The public modules, in the order the reference lists them. Every one must import (``nox -s docs``
# installs every extra): a module missing from the reference would otherwise go unnoticed.
PUBLIC_MODULES = [
    "cqrskit",
    "cqrskit.behaviours",
    "cqrskit.testing",
    "cqrskit.scope",
    "cqrskit.sqlalchemy",
    "cqrskit.caching",
    "cqrskit.events",
    "cqrskit.processes",
    "cqrskit.fastapi",
]


def _write_reference_pages() -> None:
    """Write docs/api/<module>.md for every public module that imports (generated, not committed)."""
    target = HERE / "api"
    target.mkdir(exist_ok=True)
    wanted = set()
    for position, name in enumerate(PUBLIC_MODULES, start=1):
        importlib.import_module(name)
        page = target / f"{position:02d}-{name}.md"
        wanted.add(page)
        text = f"# `{name}`\n\n```{{automodule}} {name}\n```\n"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
    for stale in target.glob("*.md"):
        if stale not in wanted:
            stale.unlink()


_write_reference_pages()


def _existing_toctree_entries(docname: str, text: str) -> str:
    """Let a toctree glob follow the pages its document already names, without listing them twice.

    An entry is a page name or a glob pattern. A pattern adds only the pages no other entry of this
    document lists (``how-to/fastapi`` first, then ``how-to/*`` for the rest), and is left out when it
    adds none. A page name stays as it is: one with no Markdown file behind it fails the build.
    """
    lines = text.split("\n")
    taken = {HERE / f"{docname}.md"}
    inside = False
    for line in lines:  # first pass: every page this document names outright
        stripped = line.strip()
        if stripped.startswith("```{toctree}"):
            inside = True
        elif inside and stripped.startswith("```"):
            inside = False
        elif inside and stripped and not stripped.startswith(":") and not any(c in stripped for c in "*?["):
            taken.add(HERE / f"{stripped}.md")
    kept: list[str] = []
    inside = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("```{toctree}"):
            inside = True
        elif inside and stripped.startswith("```"):
            inside = False
        elif inside and any(c in stripped for c in "*?[") and not stripped.startswith(":"):
            found = set(HERE.glob(f"{stripped}.md")) - taken
            taken |= found
            if not found:
                continue
        kept.append(line)
    return "\n".join(kept)


def _on_source_read(_app: object, docname: str, source: list[str]) -> None:
    source[0] = _existing_toctree_entries(docname, source[0])


def setup(app: Any) -> None:
    """Register the toctree filter."""
    app.connect("source-read", _on_source_read)
