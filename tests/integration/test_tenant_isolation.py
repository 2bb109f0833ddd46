"""Tenants kept apart on the real PostgreSQL server, by a tenant column and by a schema per tenant.

The same application (messages, handlers, one repository class) runs through a real command bus with
`Transaction` and a real query bus; only the strategy differs. Every test works in schemas of its own
(named from ``unique_name``) and drops them afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cqrskit import Command, CommandBus, ConfigurationError, Context, OperationStatus, Query, QueryBus
from cqrskit.sqlalchemy import (
    Database,
    SchemaPerTenant,
    TenantColumn,
    TenantRequiredError,
    Transaction,
)

pytestmark = pytest.mark.postgres


@attrs.frozen
class RegisterUser(Command[list[str]]):
    """Add a user; the handler returns the names its own transaction sees afterwards."""

    id: int
    name: str


@attrs.frozen
class RenameUser(Command[None]):
    id: int
    name: str


@attrs.frozen
class Sabotage(Command[None]):
    """Add a user, then fail: the transaction rolls back."""

    id: int


@attrs.frozen
class RegisterElsewhere(Command[None]):
    """Dispatch RegisterUser for `tenant` from inside this command's transaction."""

    tenant: str


@attrs.frozen
class GetUser(Query[str | None]):
    id: int


@attrs.frozen
class ListUsers(Query[list[str]]):
    pass


@attrs.frozen
class WhereAmI(Query[tuple[int, str]]):
    """The server process and search_path a query's read session runs with."""


class Users:
    """One repository for both strategies: `tenants` (a TenantColumn) scopes statements when given.

    Each method takes the dispatch's tenant from its handler, as a repository in an application does.
    """

    def __init__(self, database: Database, table: Table, tenants: TenantColumn | None) -> None:
        self._database = database
        self._table = table
        self._tenants = tenants

    def _scoped(self, statement: Any, tenant: str | None) -> Any:
        return statement if self._tenants is None else self._tenants.scope(statement, tenant)

    async def add(self, user_id: int, name: str, tenant: str | None) -> None:
        await self._database.session.execute(
            self._scoped(insert(self._table).values(id=user_id, name=name), tenant)
        )

    async def rename(self, user_id: int, name: str, tenant: str | None) -> None:
        statement = update(self._table).where(self._table.c.id == user_id).values(name=name)
        await self._database.session.execute(self._scoped(statement, tenant))

    async def names_in_transaction(self, tenant: str | None) -> list[str]:
        statement = select(self._table.c.name).order_by(self._table.c.name)
        return list((await self._database.session.scalars(self._scoped(statement, tenant))).all())

    async def name(self, user_id: int, tenant: str | None) -> str | None:
        async with self._database.read_session(tenant=tenant) as session:
            statement = select(self._table.c.name).where(self._table.c.id == user_id)
            return await session.scalar(self._scoped(statement, tenant))  # type: ignore[no-any-return]

    async def names(self, tenant: str | None) -> list[str]:
        async with self._database.read_session(tenant=tenant) as session:
            statement = select(self._table.c.name).order_by(self._table.c.name)
            return list((await session.scalars(self._scoped(statement, tenant))).all())


class RegisterUserHandler:
    def __init__(self, users: Users) -> None:
        self.users = users

    async def handle(self, command: RegisterUser, context: Context) -> list[str]:
        await self.users.add(command.id, command.name, context.tenant)
        await asyncio.sleep(0)  # let the other tenant's dispatches run in between
        return await self.users.names_in_transaction(context.tenant)


class RenameUserHandler:
    def __init__(self, users: Users) -> None:
        self.users = users

    async def handle(self, command: RenameUser, context: Context) -> None:
        await self.users.rename(command.id, command.name, context.tenant)


class SabotageHandler:
    def __init__(self, users: Users) -> None:
        self.users = users

    async def handle(self, command: Sabotage, context: Context) -> None:
        await self.users.add(command.id, "doomed", context.tenant)
        raise RuntimeError("fails after writing")


class RegisterElsewhereHandler:
    def __init__(self, bus: Callable[[], CommandBus]) -> None:
        self.bus = bus

    async def handle(self, command: RegisterElsewhere, context: Context) -> None:
        nested = Context(tenant=command.tenant)
        (await self.bus().execute(RegisterUser(99, "smuggled"), nested)).unwrap()


class GetUserHandler:
    def __init__(self, users: Users) -> None:
        self.users = users

    async def handle(self, query: GetUser, context: Context) -> str | None:
        return await self.users.name(query.id, context.tenant)


class ListUsersHandler:
    def __init__(self, users: Users) -> None:
        self.users = users

    async def handle(self, query: ListUsers, context: Context) -> list[str]:
        return await self.users.names(context.tenant)


class WhereAmIHandler:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def handle(self, query: WhereAmI, context: Context) -> tuple[int, str]:
        async with self.database.read_session(tenant=context.tenant) as session:
            row = (
                await session.execute(text("SELECT pg_backend_pid(), current_setting('search_path')"))
            ).one()
            return int(row[0]), str(row[1])


@attrs.define
class App:
    """The buses of one strategy, and what the tests look at behind them."""

    database: Database
    commands: CommandBus
    queries: QueryBus
    server: AsyncEngine
    names: dict[str, str]  # decoy, and each tenant's schema where there is one

    async def run(self, message: Any, tenant: str | None) -> Any:
        bus: Any = self.commands if isinstance(message, Command) else self.queries
        return await bus.execute(message, Context(tenant=tenant))

    async def ok(self, message: Any, tenant: str | None) -> Any:
        return (await self.run(message, tenant)).unwrap()


def buses(database: Database, users: Users) -> tuple[CommandBus, QueryBus]:
    commands: CommandBus | None = None
    commands = CommandBus(
        {
            RegisterUser: RegisterUserHandler(users),
            RenameUser: RenameUserHandler(users),
            Sabotage: SabotageHandler(users),
            RegisterElsewhere: RegisterElsewhereHandler(lambda: commands),  # type: ignore[arg-type, return-value]
        },
        behaviours=[Transaction(database)],
    )
    queries = QueryBus(
        {
            GetUser: GetUserHandler(users),
            ListUsers: ListUsersHandler(users),
            WhereAmI: WhereAmIHandler(database),
        }
    )
    return commands, queries


@pytest.fixture
async def server(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """An autocommit side connection, for making and dropping this test's schemas and for peeking."""
    engine = create_async_engine(postgres_url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


async def execute(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as connection:
        result = await connection.execute(text(sql))
        return result.scalar() if result.returns_rows else None


def plain_users(metadata: MetaData) -> Table:
    return Table("users", metadata, Column("id", Integer, primary_key=True), Column("name", String(40)))


@pytest.fixture
def pool_size() -> int:
    """The schema app's pool: four connections, unless a test parametrizes it."""
    return 4


@pytest.fixture
def required() -> bool:
    """Whether the schema app refuses work without a tenant: yes, unless a test parametrizes it."""
    return True


@pytest.fixture
async def schema_app(
    postgres_url: str, unique_name: str, server: AsyncEngine, pool_size: int, required: bool
) -> AsyncIterator[App]:
    """Schema per tenant: tenants 'a' and 'b' each have a users table; the connections' default
    search_path is a decoy schema with a users table of its own, which no tenant may ever read."""
    decoy = f"{unique_name}decoy"
    schemas = SchemaPerTenant(prefix=f"{unique_name}_", required=required)
    created = [decoy]
    database: Database | None = None
    try:
        await execute(server, f'CREATE SCHEMA "{decoy}"')
        await execute(server, f'CREATE TABLE "{decoy}".users (id integer primary key, name varchar(40))')
        await execute(server, f"INSERT INTO \"{decoy}\".users VALUES (1, 'decoy'), (2, 'decoy two')")
        database = Database(
            postgres_url,
            tenant_schemas=schemas,
            engine_options={
                "connect_args": {"server_settings": {"search_path": decoy, "application_name": unique_name}},
                "pool_size": pool_size,
                "max_overflow": 0,
            },
        )
        metadata = MetaData()
        users = plain_users(metadata)
        names = {"decoy": decoy}
        for tenant in ("a", "b"):
            names[tenant] = await schemas.create_schema(database.engine, tenant, metadata)
            created.append(names[tenant])
        commands, queries = buses(database, Users(database, users, None))
        yield App(database, commands, queries, server, names)
    finally:
        if database is not None:
            await database.dispose()
        for schema in created:
            await execute(server, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def column_app(postgres_url: str, unique_name: str, server: AsyncEngine) -> AsyncIterator[App]:
    """Tenant column: one members table in this test's schema, keyed by (tenant_id, id)."""
    metadata = MetaData()
    members = Table(
        "members",
        metadata,
        Column("tenant_id", String(40), primary_key=True),
        Column("id", Integer, primary_key=True),
        Column("name", String(40)),
    )
    database: Database | None = None
    try:
        await execute(server, f'CREATE SCHEMA "{unique_name}"')
        database = Database(
            postgres_url,
            engine_options={
                "connect_args": {
                    "server_settings": {"search_path": unique_name, "application_name": unique_name}
                },
                "pool_size": 4,
                "max_overflow": 0,
            },
        )
        async with database.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        commands, queries = buses(database, Users(database, members, TenantColumn()))
        yield App(database, commands, queries, server, {})
    finally:
        if database is not None:
            await database.dispose()
        await execute(server, f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE')


@pytest.fixture(params=["column", "schema"])
def app(request: pytest.FixtureRequest) -> App:
    """Each strategy in turn."""
    chosen: App = request.getfixturevalue(f"{request.param}_app")
    return chosen


class TestSameIdsSameQueries:
    """Two tenants with the same user ids, through the same buses, never see each other's rows."""

    async def test_reads_and_writes_stay_in_their_tenant(self, app: App) -> None:
        """Same ids, same commands, same queries: each tenant reads, lists and renames only its own."""
        assert await app.ok(RegisterUser(1, "ann of a"), "a") == ["ann of a"]
        assert await app.ok(RegisterUser(1, "ann of b"), "b") == ["ann of b"]
        assert await app.ok(RegisterUser(2, "bob of a"), "a") == ["ann of a", "bob of a"]

        assert await app.ok(GetUser(1), "a") == "ann of a"
        assert await app.ok(GetUser(1), "b") == "ann of b"
        assert await app.ok(GetUser(2), "b") is None
        await app.ok(RenameUser(1, "renamed"), "b")
        assert await app.ok(ListUsers(), "a") == ["ann of a", "bob of a"]
        assert await app.ok(ListUsers(), "b") == ["renamed"]

    async def test_a_tenant_with_no_rows_sees_none(self, app: App) -> None:
        """A third tenant of the column table, or the decoy's rows for a schema tenant, stay out of sight."""
        await app.ok(RegisterUser(1, "ann of a"), "a")
        assert await app.ok(ListUsers(), "b") == []
        assert await app.ok(GetUser(1), "b") is None

    async def test_interleaved_concurrent_dispatches_stay_apart(self, app: App) -> None:
        """Forty commands, then forty queries, for two tenants at once: each sees only its own."""
        ids = range(1, 21)
        registered = await asyncio.gather(
            *(app.ok(RegisterUser(n, f"{tenant}{n:02}"), tenant) for n in ids for tenant in ("a", "b"))
        )
        for (n, tenant), seen in zip(((n, t) for n in ids for t in ("a", "b")), registered, strict=True):
            assert f"{tenant}{n:02}" in seen
            assert all(name.startswith(tenant) for name in seen), (tenant, seen)
        read = await asyncio.gather(*(app.ok(GetUser(n), tenant) for n in ids for tenant in ("a", "b")))
        assert read == [f"{tenant}{n:02}" for n in ids for tenant in ("a", "b")]
        listed = await asyncio.gather(*(app.ok(ListUsers(), tenant) for tenant in ("a", "b", "a", "b")))
        assert listed == [[f"{tenant}{n:02}" for n in ids] for tenant in ("a", "b", "a", "b")]

    async def test_no_tenant_is_refused_before_any_statement(self, app: App) -> None:
        """A command or a query without a tenant raises TenantRequiredError from execute."""
        with pytest.raises(TenantRequiredError, match=r"Context\(tenant=\.\.\.\)"):
            await app.run(RegisterUser(1, "nobody's"), None)
        with pytest.raises(TenantRequiredError):
            await app.run(ListUsers(), None)
        assert await app.ok(ListUsers(), "a") == []
        assert await app.ok(ListUsers(), "b") == []


class TestSchemaPerTenant:
    """What the schema strategy guarantees beyond the shared tests: SET LOCAL, unknown schemas, nesting."""

    @pytest.mark.parametrize("pool_size", [1], ids=["pool1"])
    async def test_a_pooled_connection_never_carries_a_tenants_path(self, schema_app: App) -> None:
        """With one pooled connection, B after A (commit, rollback, read) gets its own path, and the
        connection returns to the pool with the server's default path every time."""
        app = schema_app
        async with app.database.engine.connect() as connection:
            pid = await connection.scalar(text("SELECT pg_backend_pid()"))
            default = await connection.scalar(text("SHOW search_path"))
        assert default == app.names["decoy"]

        async def pool_default() -> tuple[int, str]:
            async with app.database.engine.connect() as connection:
                row = (
                    await connection.execute(text("SELECT pg_backend_pid(), current_setting('search_path')"))
                ).one()
                return int(row[0]), str(row[1])

        await app.ok(RegisterUser(1, "ann of a"), "a")
        assert await pool_default() == (pid, default)
        assert await app.ok(WhereAmI(), "a") == (pid, f'"{app.names["a"]}"')
        assert await pool_default() == (pid, default)
        assert await app.ok(ListUsers(), "b") == []
        assert await app.ok(WhereAmI(), "b") == (pid, f'"{app.names["b"]}"')
        failed = await app.run(Sabotage(5), "a")
        assert failed.status is OperationStatus.FAILED
        assert await pool_default() == (pid, default)
        assert await app.ok(ListUsers(), "a") == ["ann of a"]

    async def test_an_unknown_tenant_is_not_found_and_never_reads_the_default_path(
        self, schema_app: App
    ) -> None:
        """A tenant without a schema, or with an id no schema can have, gets NOT_FOUND; the decoy on
        the default search_path is neither read nor written."""
        app = schema_app
        for tenant, reason in [("zz", "its schema does not exist"), ('a"; --', "a tenant id is made of")]:
            for message in (GetUser(1), ListUsers(), RegisterUser(3, "intruder")):
                result = await app.run(message, tenant)
                assert result.status is OperationStatus.NOT_FOUND, (tenant, message)
                assert result.errors["detail"].startswith(f"unknown tenant {tenant!r}: {reason}")
        assert await execute(app.server, f'SELECT count(*) FROM "{app.names["decoy"]}".users') == 2

    async def test_a_nested_command_for_another_tenant_is_refused(self, schema_app: App) -> None:
        """A command of tenant A cannot dispatch one of tenant B into its own transaction."""
        app = schema_app
        with pytest.raises(ConfigurationError, match="cannot join the transaction of tenant 'a'"):
            await app.run(RegisterElsewhere("b"), "a")
        assert await app.ok(ListUsers(), "b") == []
        assert await app.ok(ListUsers(), "a") == []

    @pytest.mark.parametrize("required", [False])
    async def test_commands_for_tenants_inside_a_transaction_of_no_tenant(self, schema_app: App) -> None:
        """As a consumer's batch does: each nested command runs in its tenant's schema, and the host
        transaction's own path (empty: no shared schemas) comes back after each, commit or not."""
        app = schema_app
        async with app.database.transaction() as session:
            assert await session.scalar(text("SHOW search_path")) == ""
            assert await app.ok(RegisterUser(1, "ann of a"), "a") == ["ann of a"]
            assert await session.scalar(text("SHOW search_path")) == ""
            assert await app.ok(RegisterUser(1, "ann of b"), "b") == ["ann of b"]
            assert (await app.run(Sabotage(2), "a")).status is OperationStatus.FAILED
            assert await session.scalar(text("SHOW search_path")) == ""
            assert (await app.run(RegisterUser(1, "x"), "zz")).status is OperationStatus.NOT_FOUND
            assert await session.scalar(text("SHOW search_path")) == ""
            with pytest.raises(ProgrammingError, match='relation "users" does not exist'):
                async with app.database.transaction():  # a savepoint of no tenant: no table to find
                    await session.execute(text("SELECT * FROM users"))
        assert await app.ok(ListUsers(), "a") == ["ann of a"]
        assert await app.ok(ListUsers(), "b") == ["ann of b"]


class TestSharedSchemas:
    """Schemas every tenant reads after its own, and work that is no tenant's."""

    async def test_shared_tables_are_read_after_the_tenants_own_and_no_tenant_reads_only_them(
        self, postgres_url: str, unique_name: str, server: AsyncEngine
    ) -> None:
        """create_schema leaves a shared table where it is; a tenant reads it; required=False without
        a tenant reads the shared schema and cannot name a tenant's table."""
        shared = f"{unique_name}shared"
        metadata = MetaData()
        users = plain_users(metadata)
        Table("plans", metadata, Column("name", String(20), primary_key=True), schema=shared)
        schemas = SchemaPerTenant(prefix=f"{unique_name}_", shared=[shared], required=False)
        database = Database(postgres_url, tenant_schemas=schemas)
        assert database.tenant_schemas is schemas
        try:
            await execute(server, f'CREATE SCHEMA "{shared}"')
            tenant_schema = await schemas.create_schema(database.engine, "a", metadata)
            tables = "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = '{}'"
            assert await execute(server, tables.format(tenant_schema)) == "users"
            assert await execute(server, tables.format(shared)) is None  # shared tables are the app's
            await execute(server, f'CREATE TABLE "{shared}".plans (name varchar(20) primary key)')
            async with database.transaction(tenant="a") as session:
                await session.execute(insert(users).values(id=1, name="ann"))
                await session.execute(text("INSERT INTO plans VALUES ('gold')"))
                assert await session.scalar(text("SHOW search_path")) == f'"{tenant_schema}", "{shared}"'
            async with database.read_session(tenant="a") as session:
                joined = await session.execute(text("SELECT users.name, plans.name FROM users, plans"))
                assert joined.all() == [("ann", "gold")]
            async with database.read_session() as session:
                assert await session.scalar(text("SELECT name FROM plans")) == "gold"
                assert await session.scalar(text("SHOW search_path")) == f'"{shared}"'
            with pytest.raises(ProgrammingError, match='relation "users" does not exist'):
                async with database.read_session() as session:
                    await session.execute(text("SELECT * FROM users"))
        finally:
            await database.dispose()
            await schemas.drop_schema(server, "a")
            await execute(server, f'DROP SCHEMA IF EXISTS "{shared}" CASCADE')
