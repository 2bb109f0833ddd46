"""`SchemaPerTenant`: each tenant's tables in a PostgreSQL schema of its own, chosen per transaction.

`Database` opens every session of a tenant with the tenant's name in the session's ``info``; a listener
on the session class runs, at the start of every transaction the session begins, one statement that
checks the tenant's schema exists and sets ``search_path`` with ``set_config(..., true)``, which is
``SET LOCAL``: the setting ends with the transaction, so a pooled connection goes back to the pool with
the server's default and the next user of it never inherits a tenant's path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker
from sqlalchemy.schema import MetaData

from cqrskit._errors import ConfigurationError
from cqrskit.sqlalchemy._errors import TenantRequiredError, UnknownTenantError

__all__ = ["TENANT_INFO", "SchemaPerTenant"]

TENANT_INFO = "cqrskit_tenant"
"""The key of ``Session.info`` that holds the tenant a session was opened for (absent: no tenant)."""

_MAX_IDENTIFIER = 63  # PostgreSQL silently truncates longer names: two tenants could share one schema
_TENANT = re.compile(r"[A-Za-z0-9_-]+")
_PREFIX = re.compile(r"[a-z_][a-z0-9_]*")
# One round trip: the row exists only when the schema does, and set_config runs only for that row.
_SET_TENANT_PATH = text(
    "SELECT pg_catalog.set_config('search_path', :path, true) "
    "FROM pg_catalog.pg_namespace WHERE nspname = :schema"
)
_SET_PATH = text("SELECT pg_catalog.set_config('search_path', :path, true)")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SchemaPerTenant:
    """Keep each tenant's tables in a PostgreSQL schema of its own, selected per transaction.

    Give it to `Database` (``Database(url, tenant_schemas=SchemaPerTenant())``); then every transaction
    `Database` opens for a tenant (the `Transaction` behaviour passes the command's ``context.tenant``,
    a query handler passes it to ``database.read_session(tenant=...)``) runs with ``search_path`` set,
    by ``SET LOCAL``, to that tenant's schema followed by the `shared` schemas. The setting ends with
    the transaction, so a pooled connection never carries one tenant's path to its next user.

    The schema of a tenant is `prefix` followed by the tenant id, quoted: tenant ``"acme"`` lives in
    ``"tenant_acme"``. A tenant id is made of ASCII letters, digits, ``_`` and ``-`` (case counts), and
    the name fits PostgreSQL's 63 bytes; any other id has no schema (`UnknownTenantError`), so no text
    from a caller ever reaches SQL as anything but a quoted identifier, and two ids never share a
    schema. A tenant whose schema does not exist is `UnknownTenantError` when its transaction begins,
    never a silent fallback to ``public``.

    A transaction without a tenant raises `TenantRequiredError`, unless `required` is False: then it
    runs with ``search_path`` set to the `shared` schemas only (empty when there are none), so an
    unqualified table name never reaches a tenant's rows or ``public`` by accident. List in `shared`
    the schemas every tenant reads (reference data, cqrskit's outbox and idempotency tables); a
    tenant's own table of the same name comes first.
    """

    def __init__(self, prefix: str = "tenant_", *, shared: Iterable[str] = (), required: bool = True) -> None:
        if not _PREFIX.fullmatch(prefix) or prefix.startswith("pg_"):
            raise ConfigurationError(
                f"SchemaPerTenant prefix {prefix!r}: use lowercase letters, digits and '_', not starting "
                "with a digit or 'pg_' (an empty prefix would let a tenant named 'public' read public)"
            )
        if len(prefix) >= _MAX_IDENTIFIER:
            raise ConfigurationError(f"SchemaPerTenant prefix {prefix!r} leaves no room for a tenant id")
        given: tuple[object, ...] = tuple(shared)
        names: list[str] = []
        for name in given:
            if (
                not isinstance(name, str)
                or not name
                or "\x00" in name
                or len(name.encode()) > _MAX_IDENTIFIER
            ):
                raise ConfigurationError(f"SchemaPerTenant shared schema {name!r} is not a PostgreSQL name")
            if name.startswith(prefix):
                raise ConfigurationError(
                    f"SchemaPerTenant shared schema {name!r} starts with the tenant prefix {prefix!r}: "
                    "it would be some tenant's schema"
                )
            names.append(name)
        self.prefix = prefix
        """What every tenant's schema name starts with."""
        self.shared: tuple[str, ...] = tuple(names)
        """The schemas after the tenant's in ``search_path``."""
        self.required = required
        """Whether a transaction without a tenant is refused."""
        self._shared_path = ", ".join(_quoted(name) for name in names)

    def schema_for(self, tenant: str) -> str:
        """Return `tenant`'s schema name (unquoted); `UnknownTenantError` for an id that can have none.

        >>> SchemaPerTenant().schema_for("acme")
        'tenant_acme'
        """
        given: object = tenant  # a caller's value, whatever its annotation says
        if not isinstance(given, str) or not _TENANT.fullmatch(given):
            raise UnknownTenantError(tenant, "a tenant id is made of ASCII letters, digits, '_' and '-'")
        schema = self.prefix + tenant
        if len(schema) > _MAX_IDENTIFIER:
            raise UnknownTenantError(tenant, f"its schema name would be longer than {_MAX_IDENTIFIER} bytes")
        return schema

    def search_path(self, tenant: str | None) -> str:
        """Return the ``search_path`` a transaction of `tenant` runs with (quoted, comma separated).

        >>> SchemaPerTenant(shared=["reference"]).search_path("acme")
        '"tenant_acme", "reference"'
        """
        if tenant is None:
            if self.required:
                raise TenantRequiredError(
                    "this Database keeps each tenant in its own schema and the transaction has no tenant: "
                    "dispatch with Context(tenant=...), pass tenant= to read_session(), or build "
                    "SchemaPerTenant(required=False) for work that is no tenant's"
                )
            return self._shared_path
        own = _quoted(self.schema_for(tenant))
        return f"{own}, {self._shared_path}" if self._shared_path else own

    def install(self, sessions: sessionmaker[Session]) -> None:
        """Make every session `sessions` opens set its tenant's path at the start of each transaction.

        `Database` calls it once, when it is built; you do not need to.
        """
        event.listen(sessions, "after_begin", self._after_begin)

    def _after_begin(
        self, session: Session, _transaction: SessionTransaction, connection: Connection
    ) -> None:
        self.set_search_path(connection, session.info.get(TENANT_INFO))

    def set_search_path(self, connection: Connection, tenant: str | None) -> None:
        """Set `tenant`'s ``search_path`` on `connection` until its transaction (or savepoint) ends.

        One statement, ``set_config('search_path', ..., true)`` (that is ``SET LOCAL``), run only when
        the tenant's schema exists; raises `UnknownTenantError` when it does not, and
        `TenantRequiredError` for no tenant when one is required. `Database` calls it at every BEGIN
        of its sessions; call it yourself only on a connection you manage.
        """
        path = self.search_path(tenant)
        if tenant is None:
            connection.execute(_SET_PATH, {"path": path})
            return
        found = connection.execute(
            _SET_TENANT_PATH, {"path": path, "schema": self.schema_for(tenant)}
        ).first()
        if found is None:
            raise UnknownTenantError(tenant, "its schema does not exist")

    async def create_schema(self, engine: AsyncEngine, tenant: str, metadata: MetaData) -> str:
        """Create `tenant`'s schema, if missing, and in it every table of `metadata` that names no schema.

        Run it when you add a tenant (and again after adding tables: existing ones are skipped); it
        returns the schema's name. Tables whose ``schema`` is set (those of a `shared` schema) are
        not touched: create them once, for everyone. Once you have a migration tool, run it per
        tenant schema instead.
        """
        schema = self.schema_for(tenant)
        own = [table for table in metadata.sorted_tables if table.schema is None]
        async with engine.begin() as connection:
            await connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {_quoted(schema)}")
            translated = await connection.execution_options(schema_translate_map={None: schema})
            await translated.run_sync(lambda sync: metadata.create_all(sync, tables=own))
        return schema

    async def drop_schema(self, engine: AsyncEngine, tenant: str) -> None:
        """Drop `tenant`'s schema and everything in it (``DROP SCHEMA ... CASCADE``); gone for good."""
        async with engine.begin() as connection:
            await connection.exec_driver_sql(
                f"DROP SCHEMA IF EXISTS {_quoted(self.schema_for(tenant))} CASCADE"
            )

    def __repr__(self) -> str:
        return f"SchemaPerTenant(prefix={self.prefix!r}, shared={self.shared!r}, required={self.required!r})"
