"""Architecture rules import-linter has no contract for: no import cycle, no string imports.

`python -m tests.architecture` (run by ``nox -s lint`` next to ``lint-imports``) prints every problem and
exits 1 if there is one; tests/test_architecture.py runs the same checks in the suite. Both read the code,
they do not import it: ``src`` must be findable (installed, or on ``PYTHONPATH``), nothing more.

- Cycles: the import graph of ``cqrskit`` as grimp builds it, imports under ``TYPE_CHECKING`` included.
  A module in a cycle cannot be understood, tested or moved on its own.
- String imports: ``importlib.import_module("...")`` and its kin hide an import from every tool that reads
  the graph (import-linter included), so each one must be in `STRING_IMPORTS_ALLOWED` with the reason it
  cannot be a plain ``import`` statement.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import grimp

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "cqrskit"

# Calls that import a module named by a string.
_STRING_IMPORT_CALLS = frozenset(
    {"import_module", "__import__", "spec_from_file_location", "module_from_spec"}
)

# (file under src/, enclosing function's qualified name) -> why it must import by name.
STRING_IMPORTS_ALLOWED: Mapping[tuple[str, str], str] = {
    ("cqrskit/_inspect.py", "load_container"): "the route inspector loads the container the user named",
    ("cqrskit/_inspect.py", "message_classes"): "the route inspector loads the modules the user named",
}


def import_graph() -> grimp.ImportGraph:
    """Build the import graph of cqrskit from its source, imports under TYPE_CHECKING included."""
    return grimp.build_graph(PACKAGE, exclude_type_checking_imports=False, cache_dir=None)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Return each set of modules that import each other in a ring (a strongly connected component).

    Tarjan's algorithm, iterative so a deep graph cannot overflow the stack; each cycle is sorted, and
    the list of cycles too, so the output is stable.
    """
    edges = {module: sorted(graph.find_modules_directly_imported_by(module)) for module in graph.modules}
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(edges[root]))]
        index[root] = lowlink[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = lowlink[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(edges.get(successor, []))))
                    break
                if successor in on_stack:
                    lowlink[node] = min(lowlink[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[node])
                if lowlink[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in edges[node]:
                        cycles.append(sorted(component))
    return sorted(cycles)


def string_imports(src: Path = SRC) -> list[tuple[str, str, int]]:
    """Return (file, enclosing function, line) of every call importing a module by its name, in src."""
    found: list[tuple[str, str, int]] = []
    for path in sorted(src.rglob("*.py")):
        relative = path.relative_to(src).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found.extend((relative, where, line) for where, line in _string_import_calls(tree, ""))
    return found


def _string_import_calls(node: ast.AST, scope: str) -> Iterator[tuple[str, int]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield from _string_import_calls(child, f"{scope}.{child.name}" if scope else child.name)
            continue
        if isinstance(child, ast.Call):
            function = child.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if name in _STRING_IMPORT_CALLS:
                yield scope or "<module>", child.lineno
        yield from _string_import_calls(child, scope)


def problems() -> list[str]:
    """Return one line per broken rule: each import cycle, each string import not allowed."""
    lines = [f"import cycle: {' <-> '.join(cycle)}" for cycle in import_cycles(import_graph())]
    lines.extend(
        f"string import: src/{path}:{line} (in {where}): import it with an import statement, or add it to "
        "STRING_IMPORTS_ALLOWED in tests/architecture.py with the reason it cannot be one"
        for path, where, line in string_imports()
        if (path, where) not in STRING_IMPORTS_ALLOWED
    )
    return lines


def main() -> int:
    """Print every problem; return 1 if there is one."""
    found = problems()
    for line in found:
        print(line)
    if not found:
        print("architecture: no import cycle, no string import outside the allowed ones")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
