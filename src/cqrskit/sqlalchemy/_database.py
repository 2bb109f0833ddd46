"""`Database`: the engines, the sessions, and the transaction that makes a session current."""

from __future__ import annotations

import functools
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from cqrskit._errors import ConfigurationError
from cqrskit.sqlalchemy._block import Open, TransactionBlock, close_session, domain_error_for
from cqrskit.sqlalchemy._completion import to_completion
from cqrskit.sqlalchemy._errors import NoActiveSessionError
from cqrskit.sqlalchemy._isolation import SERIALIZABLE, check_level
from cqrskit.sqlalchemy._sqlite import BEGIN_OPTION, install_hooks, private_database_url
from cqrskit.sqlalchemy._tenant_schemas import TENANT_INFO, SchemaPerTenant

__all__ = ["Database"]

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_EXTRAS = {"aiosqlite": "sqlalchemy", "asyncpg": "postgres"}
_hooked_engines: weakref.WeakSet[Any] = weakref.WeakSet()

_NO_SESSION = (
    "no transaction is open in this task, so there is no current session. In a command handler, put "
    "the Transaction behaviour on the command bus (or open one with 'async with "
    "database.transaction():'); in a query handler, read through 'async with database.read_session() "
    "as session:'"
)


def _async_url(url: str | URL) -> URL:
    parsed = make_url(url)
    if "+" not in parsed.drivername and parsed.drivername in _ASYNC_DRIVERS:
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[parsed.drivername])
    return parsed


class Database:
    """Your application's database: async engine(s), sessions, and the current command's transaction.

    Give a URL (``"postgresql+asyncpg://..."``, ``"sqlite+aiosqlite:///app.db"``) or an `AsyncEngine`
    you built; with neither you get a private SQLite database in a temporary directory, deleted by
    `dispose`. `read_url` (or `read_engine`) points query handlers' `read_session` at a replica or a
    read store. Build one per process, as a container ``Singleton`` (or ``Resource`` that awaits
    `dispose`), and inject it into repositories, which use `session`::

        class SqlUserRepository:
            def __init__(self, database: Database) -> None:
                self._database = database

            async def add(self, user: User) -> None:
                self._database.session.add(user)

    On SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (so concurrent commands cannot
    lose updates), in WAL mode, waiting up to `sqlite_busy_timeout` seconds for the write lock.
    `engine_options` go to ``create_async_engine`` and `session_options` to the session factory
    (``expire_on_commit`` is False unless you say otherwise).

    Two engine settings differ from SQLAlchemy's defaults, for the engines `Database` creates:

    - `pool_pre_ping` (True): a pooled connection is checked before use and replaced when the server
      dropped it (a restart, ``pg_terminate_backend``, an idle timeout), so a statement never runs on
      a dead connection; it costs a round trip per checkout. Pass False to turn it off.
    - `hide_parameters` (True): SQLAlchemy's error text leaves out the statement's parameters, which
      can hold a password hash or personal data, so a logged error does not carry them. Pass False
      while debugging to see them.

    Failures become what the caller can act on, in `transaction` and `read_session` alike: a unique
    violation `ConflictError`, a value the database refuses (a number out of range, a text too long
    or with a character it cannot hold) `ValidationFailedError`, a database that cannot be reached or
    a dropped connection `UnavailableError` (HTTP 503; `Retry` retries it).

    `tenant_schemas` (PostgreSQL only) keeps each tenant's tables in a schema of its own: every
    transaction and read session opened for a tenant runs with ``search_path`` set to its schema
    (see `SchemaPerTenant` and the tenancy page of the docs).
    """

    def __init__(
        self,
        url: str | URL | None = None,
        engine: AsyncEngine | None = None,
        read_url: str | URL | None = None,
        *,
        read_engine: AsyncEngine | None = None,
        engine_options: Mapping[str, Any] | None = None,
        session_options: Mapping[str, Any] | None = None,
        sqlite_busy_timeout: float = 5.0,
        pool_pre_ping: bool = True,
        hide_parameters: bool = True,
        tenant_schemas: SchemaPerTenant | None = None,
    ) -> None:
        if url is not None and engine is not None:
            raise ConfigurationError("give Database a url or an engine, not both")
        if read_url is not None and read_engine is not None:
            raise ConfigurationError("give Database a read_url or a read_engine, not both")
        options = {"pool_pre_ping": pool_pre_ping, "hide_parameters": hide_parameters}
        options.update(engine_options or {})
        self._owned: list[AsyncEngine] = []
        self._cleanup: weakref.finalize[Any, Any] | None = None
        if engine is None:
            target, self._cleanup = private_database_url(
                _async_url(url if url is not None else "sqlite+aiosqlite://"), self
            )
            engine = self._create(target, options)
        self.engine: AsyncEngine = engine
        """The engine commands write through."""
        if read_engine is None and read_url is not None:
            read_engine = self._create(_async_url(read_url), options)
        self.read_engine: AsyncEngine = read_engine if read_engine is not None else engine
        """The engine `read_session` reads through: the one for `read_url`, else `engine`."""
        self._is_sqlite = self.engine.dialect.name == "sqlite"  # decided once, read per transaction
        for each in {id(e): e for e in (self.engine, self.read_engine)}.values():
            if each.dialect.name == "sqlite" and each.sync_engine not in _hooked_engines:
                install_hooks(each, sqlite_busy_timeout)
                _hooked_engines.add(each.sync_engine)

        self._session_options: dict[str, Any] = {"expire_on_commit": False, **(session_options or {})}
        self._schemas = tenant_schemas
        if tenant_schemas is not None:
            self._install_schemas(tenant_schemas)
        self._makers: dict[str | None, async_sessionmaker[AsyncSession]] = {
            None: async_sessionmaker(self.engine, **self._session_options)
        }
        reader = self.read_engine
        if reader.dialect.name == "sqlite":
            reader = reader.execution_options(**{BEGIN_OPTION: "DEFERRED"})
        self._read_maker = async_sessionmaker(reader, **self._session_options)
        self._active: ContextVar[Open | None] = ContextVar(f"cqrskit_session_{id(self):x}", default=None)

    def _install_schemas(self, schemas: SchemaPerTenant) -> None:
        if not isinstance(schemas, SchemaPerTenant):
            raise ConfigurationError(f"tenant_schemas is a SchemaPerTenant, not {schemas!r}")
        for each in (self.engine, self.read_engine):
            if each.dialect.name != "postgresql":
                raise ConfigurationError(
                    f"a schema per tenant needs PostgreSQL (it sets search_path); this database is "
                    f"{each.dialect.name}, which has no schemas to choose between. Keep tenants apart "
                    "with a tenant column instead (cqrskit.sqlalchemy.TenantColumn)"
                )
        # Every session this Database opens comes from one sessionmaker that carries the listener
        # setting the tenant's path at each BEGIN: installed once here, never per transaction.
        sessions: sessionmaker[Session] = sessionmaker(
            class_=self._session_options.pop("sync_session_class", Session)
        )
        schemas.install(sessions)
        self._session_options["sync_session_class"] = sessions
        self._set_tenant = functools.partial(_set_tenant, schemas)  # built once, passed to every block

    def _create(self, url: URL, options: Mapping[str, Any]) -> AsyncEngine:
        try:
            engine = create_async_engine(url, **options)
        except ModuleNotFoundError as exc:
            extra = _EXTRAS.get(exc.name or "", "sqlalchemy")
            raise ImportError(
                f"the database driver {exc.name!r} for {url.drivername} is not installed: "
                f"pip install 'cqrskit[{extra}]'"
            ) from exc
        self._owned.append(engine)
        return engine

    @property
    def dialect_name(self) -> str:
        """The write engine's dialect: ``"sqlite"``, ``"postgresql"``, ..."""
        return self.engine.dialect.name

    @property
    def session(self) -> AsyncSession:
        """The session of the transaction open in this task (a command's, inside `Transaction`).

        Raises `NoActiveSessionError` outside one. Tasks you spawn inherit it, but a session is not
        safe for concurrent use: parallel reads each open their own `read_session`.
        """
        current = self._active.get()
        if current is None:
            raise NoActiveSessionError(_NO_SESSION)
        return current.session

    def in_transaction(self) -> bool:
        """Tell whether a transaction (or savepoint) on this database is open in this task."""
        return self._active.get() is not None

    @property
    def tenant_schemas(self) -> SchemaPerTenant | None:
        """The schema-per-tenant strategy this database applies, or None when it has none."""
        return self._schemas

    def transaction(self, isolation: str | None = None, *, tenant: str | None = None) -> TransactionBlock:
        """Open a transaction, make its session current, and commit or roll it back at the end.

        ``async with database.transaction() as session:`` begins (``BEGIN IMMEDIATE`` on SQLite) at
        the first statement, commits when the block ends normally (the COMMIT is shielded from
        cancellation) and then runs the work queued with `cqrskit.scope.defer_until_commit`; an
        exception rolls it back, drops that work and passes on (a unique-constraint violation as
        `ConflictError`). Inside an open transaction it is a SAVEPOINT: its failure rolls back only
        its own part, and its deferred work waits for the outermost commit. `isolation` (PostgreSQL:
        ``"READ COMMITTED"``, ``"REPEATABLE READ"``, ``"SERIALIZABLE"``) applies to this transaction
        only; a savepoint cannot ask for a stricter level than its transaction has.

        With `tenant_schemas`, `tenant` chooses the schema: the transaction begins on entry with
        ``search_path`` set by ``SET LOCAL`` (`TenantRequiredError` without a tenant,
        `UnknownTenantError` for one without a schema). A savepoint for another tenant is refused
        inside a tenant's transaction; inside one without a tenant (``SchemaPerTenant(required=False)``:
        a consumer's batch, say) it runs in its tenant's schema and the host's path comes back when it
        ends. Without `tenant_schemas`, `tenant` is ignored.
        """
        level = None if isolation is None else check_level(isolation, self.dialect_name, "transaction()")
        if self._schemas is None:
            return TransactionBlock(self._active, self._maker(level), level, self._effective_level(level))
        return TransactionBlock(
            self._active,
            functools.partial(_open_for_tenant, self._schemas, self._maker(level), tenant),
            level,
            self._effective_level(level),
            tenant=tenant,
            set_tenant=self._set_tenant,
        )

    def _maker(self, level: str | None) -> async_sessionmaker[AsyncSession]:
        """Return the session factory for `level`, built at its first use (SQLite ignores levels)."""
        if self._is_sqlite:
            level = None
        maker = self._makers.get(level)
        if maker is None:
            engine = self.engine.execution_options(isolation_level=level)
            maker = self._makers[level] = async_sessionmaker(engine, **self._session_options)
        return maker

    def _effective_level(self, level: str | None) -> str | None:
        return SERIALIZABLE if self._is_sqlite else level

    @asynccontextmanager
    async def read_session(self, *, tenant: str | None = None) -> AsyncIterator[AsyncSession]:
        """Open a new session on the read engine, for query handlers; closed (never committed) at the end.

        ``async with database.read_session() as session: ...``. On SQLite it begins with a plain
        deferred BEGIN, so readers do not queue behind writers. A failure inside is turned into what
        the caller can act on, as in `transaction` (a database that cannot be reached becomes
        `UnavailableError`, a refused value `ValidationFailedError`).

        With `tenant_schemas`, pass the query's ``context.tenant`` as `tenant`: the session begins on
        entry with ``search_path`` set to that tenant's schema (``SET LOCAL``, so it ends with the
        session); the errors are those of `transaction`. Without it, `tenant` is ignored.
        """
        if self._schemas is None:
            session = self._read_maker()
        else:
            session = _open_for_tenant(self._schemas, self._read_maker, tenant)
        try:
            if self._schemas is not None:
                await session.connection()
            yield session
        except Exception as exc:
            translated = domain_error_for(exc)
            if translated is not None:
                raise translated from exc
            raise
        finally:
            await to_completion(close_session(session))

    async def dispose(self) -> None:
        """Close every pooled connection of the engines this object created (not ones you passed in)."""
        for engine in self._owned:
            await engine.dispose()
        if self._cleanup is not None:
            self._cleanup()

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        extra = "" if self._schemas is None else f", tenant_schemas={self._schemas!r}"
        if self.read_engine is not self.engine:
            read = self.read_engine.url.render_as_string(hide_password=True)
            return f"Database({url!r}, read_url={read!r}{extra})"
        return f"Database({url!r}{extra})"


async def _set_tenant(schemas: SchemaPerTenant, session: AsyncSession, tenant: str | None) -> None:
    """Set `tenant`'s path on the connection of `session`'s open transaction (for a savepoint)."""
    connection = await session.connection()
    await connection.run_sync(schemas.set_search_path, tenant)


def _open_for_tenant(
    schemas: SchemaPerTenant, maker: Callable[..., AsyncSession], tenant: str | None
) -> AsyncSession:
    """Open a session for `tenant`, refusing at once a tenant that cannot have a schema, or none."""
    schemas.search_path(tenant)  # raises TenantRequiredError or UnknownTenantError before any I/O
    return maker(info={} if tenant is None else {TENANT_INFO: tenant})
