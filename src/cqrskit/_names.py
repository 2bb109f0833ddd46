"""How cqrskit names a class or function in messages, descriptions, keys and durable names."""

from __future__ import annotations

__all__ = ["qualified_name", "short_name"]


def qualified_name(obj: object) -> str:
    """Return ``module.QualName`` for a class or function (anything with both), else ``repr(obj)``.

    Cache keys, idempotency records and subscriber names are built from it, so its output for a
    class must not change between releases.
    """
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}.{qualname}"
    return repr(obj)


def short_name(obj: object) -> str:
    """Return the ``__qualname__`` of a class or function, else ``repr(obj)``: for settings and logs."""
    qualname = getattr(obj, "__qualname__", None)
    return qualname if isinstance(qualname, str) and qualname else repr(obj)
