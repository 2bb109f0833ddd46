"""`Idempotency`: a command sent again with the same idempotency key runs once."""

from __future__ import annotations

import json
import time
import typing
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import cattrs
import sqlalchemy as sa

from cqrskit._context import Context
from cqrskit._contracts import CallNext
from cqrskit._errors import ConflictError
from cqrskit._messages import Command
from cqrskit._names import qualified_name
from cqrskit._pipeline import require_kind
from cqrskit._results import AffectedEntity, Result
from cqrskit._stages import Stage
from cqrskit._status import OperationStatus
from cqrskit.events._envelope import default_converter
from cqrskit.events._tables import NO_TENANT, create_event_tables, event_tables, insert_for, purge_in_batches

if TYPE_CHECKING:
    from cqrskit.sqlalchemy._database import Database

__all__ = ["Idempotency"]


def _return_type(message_type: type) -> Any:
    """Return R for a ``Command[R]`` subclass, Any when it cannot be told."""
    for cls in message_type.__mro__:
        for base in getattr(cls, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Command):
                args = typing.get_args(base)
                if args and not isinstance(args[0], typing.TypeVar):
                    return args[0]
    return Any


class Idempotency:
    """Runs a command that carries ``context.idempotency_key`` once per (tenant, principal, key).

    The first dispatch with a key claims it with a row in the idempotency table and stores its
    successful Result in that row before the command commits; a repeat with the same key and the
    same principal waits for the first to finish (the row's unique index makes it wait) and gets
    the stored Result back, operation id included, without running the handler. A first dispatch
    that fails rolls its row back with everything else, so a repeat runs afresh. A key used again
    for another command type is a CONFLICT; keys expire `expires_after` seconds after use. Keys are
    kept per ``context.tenant``: the same key sent by two tenants names two operations.

    Its place is `Stage.IDEMPOTENCY`, inside `Transaction` (list it after it), so its row commits with
    the command's effects;
    data is stored with cattrs and comes back as the command's return type. Create its table with
    `create_tables` (or `cqrskit.events.create_event_tables`).
    """

    stage = Stage.IDEMPOTENCY

    def __init__(
        self,
        database: Database,
        *,
        schema: str | None = None,
        expires_after: float = 24 * 3600.0,
        converter: cattrs.Converter | None = None,
    ) -> None:
        self._database = database
        self._schema = schema
        self._table = event_tables(schema).idempotency
        self._insert = insert_for(database.dialect_name)
        self._expires_after = expires_after
        self._converter = converter or default_converter()
        self._return_types: dict[type, Any] = {}
        self._names: dict[type, str] = {}

    def bind(self, message_type: type) -> Idempotency:
        """Stay in every command's pipeline; learn its return type and stored name now, once.

        On a bus that is not a command bus it raises `ConfigurationError`.
        """
        require_kind(self, message_type, Command)
        self._return_types[message_type] = _return_type(message_type)
        self._names[message_type] = qualified_name(message_type)
        return self

    def describe(self, message_type: type) -> dict[str, object]:  # noqa: ARG002 - same for every type
        """Return the key lifetime, for the route inspector."""
        return {"expires_after": self._expires_after}

    async def create_tables(self) -> None:
        """Create the idempotency-key table (and the other event tables) in this behaviour's schema."""
        await create_event_tables(self._database, self._schema)

    async def purge_expired(self, *, batch_size: int | None = None) -> int:
        """Delete expired keys; return how many. Run it now and then (expired keys are reused anyway).

        With `batch_size`, keys go in transactions of at most that many, skipping locked rows.
        """
        table = self._table
        return await purge_in_batches(
            self._database,
            table,
            sa.tuple_(table.c.principal, table.c.key, table.c.tenant),
            table.c.expires_at < time.time(),
            batch_size,
        )

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Run the command once per key: claim the key, or return the Result stored under it."""
        key = context.idempotency_key
        if key is None:
            return await call_next(message, context)
        session = self._database.session
        principal = context.principal.id if context.principal is not None else ""
        tenant = context.tenant
        if tenant is None:
            tenant = NO_TENANT
        message_type = type(message)
        name = self._names.get(message_type) or qualified_name(message_type)
        table = self._table
        this_key = (table.c.principal == principal, table.c.key == key, table.c.tenant == tenant)
        if await self._claim(session, principal, key, tenant, name):
            result = await call_next(message, context)
            if result.is_success:
                await session.execute(sa.update(table).where(*this_key).values(result=self._dump(result)))
                return result
            return result
        row = (await session.execute(sa.select(table.c.message_type, table.c.result).where(*this_key))).one()
        if row.message_type != name or row.result is None:
            raise ConflictError(f"the idempotency key {key!r} was used for another command")
        return self._load(row.result, message_type)

    async def _claim(self, session: Any, principal: str, key: str, tenant: str, name: str) -> bool:
        """Insert the key's row, or take over an expired one; False when a live one is there."""
        now = time.time()
        statement = self._insert(self._table).values(
            principal=principal,
            key=key,
            tenant=tenant,
            message_type=name,
            result=None,
            expires_at=now + self._expires_after,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[self._table.c.principal, self._table.c.key, self._table.c.tenant],
            set_={"message_type": name, "result": None, "expires_at": now + self._expires_after},
            where=self._table.c.expires_at < now,
        ).returning(self._table.c.key)
        return (await session.execute(statement)).first() is not None

    def _dump(self, result: Result[Any]) -> str:
        return json.dumps(
            {
                "status": str(result.status),
                "data": self._converter.unstructure(result.data),
                "errors": dict(result.errors),
                "affected": [[e.kind, e.id, e.change, list(e.fields)] for e in result.affected_entities],
                "operation_id": result.operation_id,
            },
            separators=(",", ":"),
        )

    def _load(self, stored: str, message_type: type) -> Result[Any]:
        raw = json.loads(stored)
        data_type = self._return_types.get(message_type, Any)
        data = None if raw["data"] is None else self._converter.structure(raw["data"], data_type)
        return Result(
            OperationStatus(raw["status"]),
            data,
            MappingProxyType(raw["errors"]),
            tuple(AffectedEntity(k, i, c, tuple(f)) for k, i, c, f in raw["affected"]),
            None,
            None,
            raw["operation_id"],
        )

    def __repr__(self) -> str:
        return f"Idempotency(schema={self._schema!r}, expires_after={self._expires_after!r})"
