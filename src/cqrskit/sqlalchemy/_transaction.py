"""`Transaction`: the command-bus behaviour that runs each command in one database transaction."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from cqrskit._context import Context
from cqrskit._contracts import CallNext
from cqrskit._errors import ConfigurationError
from cqrskit._messages import Command
from cqrskit._pipeline import require_kind
from cqrskit._results import Result
from cqrskit._stages import Stage
from cqrskit.sqlalchemy._database import Database
from cqrskit.sqlalchemy._isolation import check_level

__all__ = ["Transaction"]


class Transaction:
    """Run each command in one transaction: commit on a SUCCESS Result, roll back on anything else.

    Put it on the command bus. Its place is `Stage.TRANSACTION`: inside `Retry` (a serialization
    failure surfaces at COMMIT, so `Retry` must re-run the whole transaction; the bus refuses the
    reverse order) and outside the event publishers and `Idempotency`.
    Handlers and repositories reach the transaction's session through ``database.session``::

        providers.Singleton(
            Transaction,
            database=database,
            isolation={Transfer: "SERIALIZABLE"},
            default_isolation="READ COMMITTED",
        )

    `isolation` maps command types to a level (``"READ COMMITTED"``, ``"REPEATABLE READ"``,
    ``"SERIALIZABLE"``); the others get `default_isolation`, or the database's own default when it is
    None. A level the database cannot honour is refused here, when the behaviour is built. The COMMIT
    is shielded from cancellation; work deferred with `cqrskit.scope.defer_until_commit` runs after
    it, and is dropped on rollback. A command dispatched from inside a handler (with
    ``context.child()``) joins the open transaction as a SAVEPOINT: its failure rolls back only its
    own writes, and its deferred work waits for the outermost commit. On a database with
    `SchemaPerTenant`, the transaction runs in the schema of the command's ``context.tenant``.
    """

    stage = Stage.TRANSACTION

    def __init__(
        self,
        database: Database,
        isolation: Mapping[type[Any], str] | None = None,
        default_isolation: str | None = None,
    ) -> None:
        if not isinstance(database, Database):
            raise ConfigurationError(f"Transaction needs a cqrskit.sqlalchemy.Database, got {database!r}")
        dialect = database.dialect_name
        levels: dict[type, str] = {}
        given: Mapping[Any, object] = isolation or {}
        for message_type, level in given.items():
            if not (isinstance(message_type, type) and issubclass(message_type, Command)):
                raise ConfigurationError(
                    f"Transaction isolation keys are Command subclasses; {message_type!r} is not one"
                )
            levels[message_type] = check_level(level, dialect, f"isolation for {message_type.__qualname__}")
        self._default = (
            None
            if default_isolation is None
            else check_level(default_isolation, dialect, "default_isolation")
        )
        self._levels: Mapping[type, str] = MappingProxyType(levels)
        self._database = database
        for each in {*levels.values(), self._default}:
            database.transaction(each)  # builds each level's session factory now, not at the first command

    def bind(self, message_type: type) -> Transaction:
        """Stay in every command's pipeline; on any bus but a command bus, raise `ConfigurationError`."""
        require_kind(self, message_type, Command)
        return self

    @property
    def configured_types(self) -> frozenset[type]:
        """The message types with a setting of their own here (the route inspector checks they are routed)."""
        return frozenset(self._levels)

    def isolation_for(self, message_type: type) -> str | None:
        """Return the isolation level `message_type` runs at (None: the database default)."""
        return self._levels.get(message_type, self._default)

    def describe(self, message_type: type) -> Mapping[str, object]:
        """Return this behaviour's settings for `message_type`, for the route inspector."""
        return {
            "database": self._database.dialect_name,
            "isolation": self.isolation_for(message_type) or "database default",
        }

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Run the rest of the pipeline inside a transaction (or a savepoint of the open one)."""
        block = self._database.transaction(
            self._levels.get(type(message), self._default), tenant=context.tenant
        )
        async with block:
            result = await call_next(message, context)
            if not result.is_success:
                block.rollback_only = True
        return result

    def __repr__(self) -> str:
        levels = {t.__qualname__: level for t, level in self._levels.items()}
        return f"Transaction({self._database!r}, isolation={levels!r}, default_isolation={self._default!r})"
