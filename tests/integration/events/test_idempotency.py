"""Idempotency on real PostgreSQL: one key, one effect, the same Result for every repeat."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from dependency_injector import containers, providers

from cqrskit import (
    AffectedEntity,
    Command,
    CommandBus,
    ConfigurationError,
    Context,
    OperationStatus,
    Principal,
    Result,
)
from cqrskit.behaviours import Retry
from cqrskit.events import Idempotency, create_event_tables
from cqrskit.sqlalchemy import Database, Transaction

pytestmark = [pytest.mark.postgres]


@attrs.frozen
class PlaceOrder(Command[uuid.UUID]):
    item: str
    fail: bool = False


@attrs.frozen
class CancelOrder(Command[None]):
    item: str


def orders_table(schema: str) -> sa.Table:
    return sa.Table(
        "orders",
        sa.MetaData(schema=schema),
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("item", sa.String, nullable=False),
    )


class PlaceOrderHandler:
    def __init__(self, database: Database, orders: sa.Table) -> None:
        self.database = database
        self.orders = orders
        self.runs = 0
        self.gate: asyncio.Event | None = None  # when set up, the first run holds its key until it opens

    async def handle(self, command: PlaceOrder, context: Context) -> Any:
        self.runs += 1
        order_id = uuid.uuid4()
        await self.database.session.execute(sa.insert(self.orders).values(id=order_id, item=command.item))
        if self.gate is not None:
            await asyncio.wait_for(self.gate.wait(), 30)
        if command.fail:
            return Result.failure(OperationStatus.CONFLICT, {"item": "sold out"})
        return Result.success(order_id, affected_entities=[AffectedEntity("order", str(order_id), "created")])


class CancelOrderHandler:
    async def handle(self, command: CancelOrder, context: Context) -> None:
        return None


class Container(containers.DeclarativeContainer):
    config = providers.Configuration()
    database = providers.Singleton(Database, url=config.url)
    orders = providers.Object(None)
    place_order = providers.Singleton(PlaceOrderHandler, database=database, orders=orders)
    idempotency = providers.Singleton(
        Idempotency, database=database, schema=config.schema, expires_after=config.expires_after
    )
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {PlaceOrder: place_order, CancelOrder: providers.Factory(CancelOrderHandler)}
        ),
        behaviours=providers.List(
            providers.Singleton(Retry),
            providers.Singleton(Transaction, database=database),
            idempotency,
        ),
    )


@pytest.fixture
async def container(postgres_url: str, unique_name: str) -> AsyncIterator[Container]:
    container = Container()
    container.config.from_dict({"url": postgres_url, "schema": unique_name, "expires_after": 3600.0})
    orders = orders_table(unique_name)
    container.orders.override(providers.Object(orders))
    database = container.database()
    try:
        await container.idempotency().create_tables()
        async with database.engine.begin() as connection:
            await connection.run_sync(orders.metadata.create_all)
        yield container
    finally:
        async with database.engine.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE'))
        await database.dispose()


async def order_count(container: Container) -> int:
    async with container.database().engine.connect() as connection:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(container.orders())) or 0)


async def waiting_on_the_key(database: Database, schema: str, count: int) -> None:
    """Return once `count` sessions are blocked on a lock while inserting into `schema`'s key table."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE :pattern"
    )
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        async with database.engine.connect() as connection:
            waiting = await connection.scalar(query, {"pattern": f"%{schema}.cqrskit_idempotency_keys%"})
        if waiting == count:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{waiting} of {count} repeats waiting"
        await asyncio.sleep(0.02)


async def run_held(handler: PlaceOrderHandler, database: Database, schema: str, dispatches: Any) -> list[Any]:
    """Run `dispatches` at once; the first holds its key until every other one waits on it."""
    handler.gate = asyncio.Event()
    tasks = [asyncio.create_task(d) for d in dispatches]
    try:
        await waiting_on_the_key(database, schema, len(tasks) - 1)
    finally:
        handler.gate.set()
    return list(await asyncio.gather(*tasks))


def keyed(key: str, principal: str = "alice") -> Context:
    return Context(principal=Principal(principal), idempotency_key=key)


class TestIdempotency:
    """A command with an idempotency key runs once per (principal, key)."""

    async def test_ten_concurrent_dispatches_one_effect_ten_identical_results(
        self, container: Container
    ) -> None:
        """Ten dispatches at once with one key, nine waiting on the first: one run, ten equal Results."""
        bus = container.command_bus()
        dispatches = [bus.execute(PlaceOrder("book"), keyed("k-1")) for _ in range(10)]
        results = await run_held(
            container.place_order(), container.database(), container.config.schema(), dispatches
        )
        assert container.place_order().runs == 1
        assert await order_count(container) == 1
        assert all(r == results[0] for r in results)
        first = results[0]
        assert first.is_success
        assert isinstance(first.data, uuid.UUID)
        assert first.affected_entities == (AffectedEntity("order", str(first.data), "created"),)
        assert {r.operation_id for r in results} == {first.operation_id}

    async def test_a_later_repeat_gets_the_stored_result(self, container: Container) -> None:
        """A repeat after the first committed returns its Result, operation id included, without running."""
        bus = container.command_bus()
        first = await bus.execute(PlaceOrder("pen"), keyed("k-2"))
        again = await bus.execute(PlaceOrder("pen"), keyed("k-2"))
        assert again == first
        assert again.operation_id == first.operation_id
        assert container.place_order().runs == 1

    async def test_keys_belong_to_a_principal(self, container: Container) -> None:
        """The same key from another principal is another command."""
        bus = container.command_bus()
        a = await bus.execute(PlaceOrder("cup"), keyed("k-3", "alice"))
        b = await bus.execute(PlaceOrder("cup"), keyed("k-3", "bob"))
        assert a.data != b.data
        assert await order_count(container) == 2

    async def test_a_failed_first_attempt_is_not_stored(self, container: Container) -> None:
        """A failure rolls back with its key, so the repeat runs afresh."""
        bus = container.command_bus()
        failed = await bus.execute(PlaceOrder("mug", fail=True), keyed("k-4"))
        assert failed.status is OperationStatus.CONFLICT
        ok = await bus.execute(PlaceOrder("mug"), keyed("k-4"))
        assert ok.is_success
        assert container.place_order().runs == 2
        assert await order_count(container) == 1

    async def test_a_key_reused_for_another_command_is_a_conflict(self, container: Container) -> None:
        """One key, two command types: the second is refused with CONFLICT."""
        bus = container.command_bus()
        assert (await bus.execute(PlaceOrder("hat"), keyed("k-5"))).is_success
        other = await bus.execute(CancelOrder("hat"), keyed("k-5"))
        assert other.status is OperationStatus.CONFLICT

    async def test_no_key_means_no_idempotency(self, container: Container) -> None:
        """Without a key every dispatch runs."""
        bus = container.command_bus()
        await bus.execute(PlaceOrder("a"))
        await bus.execute(PlaceOrder("a"))
        assert container.place_order().runs == 2

    async def test_an_expired_key_runs_again(self, container: Container) -> None:
        """With keys that expire at once, a repeat is a new command; purge_expired removes the rest."""
        container.config.expires_after.from_value(0.0)
        container.idempotency.reset()
        container.command_bus.reset()
        bus = container.command_bus()
        await bus.execute(PlaceOrder("old"), keyed("k-6"))
        await bus.execute(PlaceOrder("old"), keyed("k-6"))
        assert container.place_order().runs == 2
        assert await container.idempotency().purge_expired() == 1

    async def test_a_key_is_kept_for_expires_after_seconds(self, container: Container) -> None:
        """With keys kept half a second, a repeat at once gets the stored Result; one after expiry runs."""
        container.config.expires_after.from_value(0.5)
        container.idempotency.reset()
        container.command_bus.reset()
        bus = container.command_bus()
        first = await bus.execute(PlaceOrder("tea"), keyed("k-8"))
        assert await bus.execute(PlaceOrder("tea"), keyed("k-8")) == first
        assert container.place_order().runs == 1
        deadline = asyncio.get_running_loop().time() + 30
        while container.place_order().runs == 1:  # repeat until the key has expired and it runs again
            assert asyncio.get_running_loop().time() < deadline, "the key never expired"
            await asyncio.sleep(0.05)
            later = await bus.execute(PlaceOrder("tea"), keyed("k-8"))
        assert later.is_success
        assert later.operation_id != first.operation_id
        assert await order_count(container) == 2

    async def test_direct_call_with_a_fake_next_step(self, container: Container) -> None:
        """Called directly inside a transaction, the second call returns the first Result, not call_next's."""
        database = container.database()
        idempotency = Idempotency(database, schema=container.config.schema())
        idempotency.bind(PlaceOrder)
        calls: list[str] = []

        async def call_next(message: Any, context: Context) -> Result[Any]:
            calls.append(context.operation_id or "")
            return Result.success(uuid.UUID(int=len(calls)))

        async with database.transaction():
            first = await idempotency(PlaceOrder("x"), keyed("k-7"), call_next)
        async with database.transaction():
            second = await idempotency(PlaceOrder("x"), keyed("k-7"), call_next)
        assert len(calls) == 1
        assert second.data == uuid.UUID(int=1)
        assert second == first

    async def test_repeatable_read_repeats_retry_into_the_stored_result(self, container: Container) -> None:
        """Under REPEATABLE READ the waiting repeats fail to serialize once; Retry brings them the Result."""
        database = container.database()
        handler = PlaceOrderHandler(database, container.orders())
        bus = CommandBus(
            {PlaceOrder: handler},
            [
                Retry(),
                Transaction(database, default_isolation="REPEATABLE READ"),
                Idempotency(database, schema=container.config.schema()),
            ],
        )
        dispatches = [bus.execute(PlaceOrder("rr"), keyed("k-rr")) for _ in range(5)]
        results = await run_held(handler, database, container.config.schema(), dispatches)
        assert handler.runs == 1
        assert all(r.is_success and r == results[0] for r in results)

    def test_it_must_sit_inside_transaction(self, container: Container) -> None:
        """Listing Idempotency before Transaction is refused when the bus is built."""
        database = container.database()
        with pytest.raises(ConfigurationError):
            CommandBus({CancelOrder: CancelOrderHandler()}, [Idempotency(database), Transaction(database)])


class TestIdempotencyOnSqlite:
    """The same behaviour works on the embedded SQLite database."""

    async def test_repeat_on_sqlite(self) -> None:
        """Two dispatches with one key on SQLite: one run, one Result."""
        database = Database()
        try:
            await create_event_tables(database)
            orders = orders_table(None)  # type: ignore[arg-type]
            async with database.engine.begin() as connection:
                await connection.run_sync(orders.metadata.create_all)
            handler = PlaceOrderHandler(database, orders)
            bus = CommandBus({PlaceOrder: handler}, [Transaction(database), Idempotency(database)])
            results = await asyncio.gather(*(bus.execute(PlaceOrder("s"), keyed("k")) for _ in range(3)))
            assert handler.runs == 1
            assert all(r == results[0] for r in results)
        finally:
            await database.dispose()
