"""Names a package exports but imports only on first use, so it imports without optional extras."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """Return a module-level ``__getattr__`` for `package` that imports `modules[name]` on first use."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - it is the module's __getattr__
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
