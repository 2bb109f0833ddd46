"""Isolation levels: their names, their order, and which database honours which."""

from __future__ import annotations

from cqrskit._errors import ConfigurationError

__all__ = ["LEVELS", "check_level", "stricter_than"]

READ_UNCOMMITTED = "READ UNCOMMITTED"
READ_COMMITTED = "READ COMMITTED"
REPEATABLE_READ = "REPEATABLE READ"
SERIALIZABLE = "SERIALIZABLE"

LEVELS = (READ_UNCOMMITTED, READ_COMMITTED, REPEATABLE_READ, SERIALIZABLE)
"""Every level, weakest first."""

_RANK = {level: rank for rank, level in enumerate(LEVELS)}

# SQLite runs every cqrskit write transaction alone (BEGIN IMMEDIATE), which is serializable and so
# gives everything READ COMMITTED and REPEATABLE READ promise. It cannot let one connection read
# another's uncommitted rows (that needs a shared cache), so READ UNCOMMITTED is refused there.
_HONOURED = {
    "sqlite": frozenset({READ_COMMITTED, REPEATABLE_READ, SERIALIZABLE}),
    "postgresql": frozenset(LEVELS),
}
_DEFAULT_HONOURED = frozenset({READ_COMMITTED, REPEATABLE_READ, SERIALIZABLE})


def check_level(level: object, dialect: str, where: str) -> str:
    """Return `level` in canonical form, or raise `ConfigurationError` if `dialect` cannot honour it."""
    if not isinstance(level, str):
        raise ConfigurationError(
            f"{where}: an isolation level is a string such as 'SERIALIZABLE', not {level!r}"
        )
    canonical = " ".join(level.replace("_", " ").upper().split())
    honoured = _HONOURED.get(dialect, _DEFAULT_HONOURED)
    if canonical not in honoured:
        choices = ", ".join(repr(x) for x in LEVELS if x in honoured)
        if canonical in _RANK:
            raise ConfigurationError(
                f"{where}: {dialect} cannot honour isolation level {level!r}; use one of {choices}"
            )
        raise ConfigurationError(f"{where}: unknown isolation level {level!r}; use one of {choices}")
    return canonical


def stricter_than(wanted: str, current: str | None) -> bool:
    """Tell whether a transaction at `current` (None: READ COMMITTED) is weaker than `wanted`."""
    return _RANK[wanted] > _RANK.get(current or READ_COMMITTED, _RANK[READ_COMMITTED])
