from __future__ import annotations

import tomllib
from pathlib import Path

import grimp

from tests import architecture

ROOT = Path(__file__).resolve().parent.parent


class TestNoImportCycle:
    def test_src_has_none(self) -> None:
        """No module of cqrskit sits in an import cycle, imports under TYPE_CHECKING included."""
        assert architecture.import_cycles(architecture.import_graph()) == []

    def test_a_ring_is_found(self) -> None:
        """A three-module ring and a module importing itself are reported; a chain is not."""
        graph = grimp.ImportGraph()
        ring = [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d"), ("p.e", "p.e")]
        for importer, imported in ring:
            graph.add_import(importer=importer, imported=imported)

        assert architecture.import_cycles(graph) == [["p.a", "p.b", "p.c"], ["p.e"]]


class TestNoStringImport:
    def test_src_has_none_but_the_allowed(self) -> None:
        """Every importlib call in src is in the allow-list, with its reason."""
        found = architecture.string_imports()
        assert [hit for hit in found if (hit[0], hit[1]) not in architecture.STRING_IMPORTS_ALLOWED] == []

    def test_a_string_import_is_found(self, tmp_path: Path) -> None:
        """import_module and __import__ are found wherever they are, with their enclosing function."""
        (tmp_path / "pkg").mkdir()
        (tmp_path / "pkg" / "mod.py").write_text(
            "import importlib\n"
            "X = __import__('json')\n"
            "class A:\n"
            "    def f(self):\n"
            "        return importlib.import_module('json')\n"
        )

        found = architecture.string_imports(tmp_path)

        assert found == [("pkg/mod.py", "<module>", 2), ("pkg/mod.py", "A.f", 5)]


class TestContracts:
    def test_every_core_module_is_forbidden_the_integrations(self) -> None:
        """The core layer of the layers contract and the core's forbidden contract list the same modules."""
        contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
        layers = next(contract for contract in contracts if contract["type"] == "layers")
        core_layer = {f"cqrskit.{name.strip()}" for name in layers["layers"][-1].split(":")}
        forbidden = next(contract for contract in contracts if contract["name"].startswith("The core names"))

        assert set(forbidden["source_modules"]) == core_layer | {"cqrskit"}
