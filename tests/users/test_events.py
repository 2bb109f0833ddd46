"""The user events and the user_stats read model on the embedded default: in-process delivery after commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from dependency_injector import providers
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from cqrskit import ConfigurationError, Context, OperationStatus, Principal

# The example is built on the caching behaviours; until they are merged these tests cannot run.
pytest.importorskip("cqrskit.caching", reason="examples/users needs cqrskit.caching, not merged yet")

from examples.users.container import Container
from examples.users.events import UserCreated, UserDeleted, UserUpdated
from examples.users.messages import ApplyUserStatsChange, GetUserStats, UserRole
from examples.users.models import Base, UserRow, create_tables
from examples.users.passwords import ScryptCost
from examples.users.projection import PROJECTION, UserStatsProjection, stats_change
from examples.users.repositories import UserStatsRepository
from examples.users.settings import Settings

from cqrskit.events import LocalTransport, NatsTransport, OutboxPublisher, RabbitMQTransport
from tests.users.conftest import ADMIN, create, events_delivered

ADMIN_CONTEXT = Context(principal=Principal("admin", is_admin=True))


async def stats(client: httpx.AsyncClient, container: Container) -> tuple[dict[str, object], str]:
    """GET /users/stats as the admin, once the events were delivered: the body and the X-Cache header."""
    await events_delivered(container)
    response = await client.get("/users/stats", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json(), response.headers["X-Cache"]


class TestStatsFollowEvents:
    """Every command's events move the read model promptly after commit (the embedded consumer)."""

    async def test_create_update_delete(self, container: Container, client: httpx.AsyncClient) -> None:
        """Create, change role, deactivate, delete: the counters follow each step."""
        user_id = await create(client, "frank")
        assert (await stats(client, container))[0] == {
            "total": 4,
            "active": 4,
            "inactive": 0,
            "by_role": {"admin": 1, "member": 3},
        }
        await client.patch(f"/users/{user_id}", json={"role": "guest"}, headers=ADMIN)
        assert (await stats(client, container))[0]["by_role"] == {"admin": 1, "guest": 1, "member": 2}
        await client.patch(f"/users/{user_id}", json={"is_active": False}, headers=ADMIN)
        body, _ = await stats(client, container)
        assert (body["total"], body["active"], body["inactive"]) == (4, 3, 1)
        await client.delete(f"/users/{user_id}", headers=ADMIN)
        assert (await stats(client, container))[0] == {
            "total": 3,
            "active": 3,
            "inactive": 0,
            "by_role": {"admin": 1, "member": 2},
        }

    async def test_batch(self, container: Container, client: httpx.AsyncClient) -> None:
        """A batch publishes one UserCreated per user."""
        users = [
            {"email": f"b{n}@example.com", "username": f"batch{n}", "password": "password!", "full_name": "B"}
            for n in range(3)
        ]
        response = await client.post("/users/batch", json={"users": users}, headers=ADMIN)
        assert response.status_code == 201
        assert (await stats(client, container))[0]["total"] == 6

    async def test_failed_command_publishes_nothing(
        self, container: Container, client: httpx.AsyncClient
    ) -> None:
        """A duplicate (rolled back) and a refused update leave the read model as it was."""
        before, _ = await stats(client, container)
        await client.post(
            "/users",
            json={
                "email": "alice@example.com",
                "username": "x-alice",
                "password": "password!",
                "full_name": "A",
            },
            headers=ADMIN,
        )
        await client.patch(
            "/users/00000000-0000-4000-8000-00000000a11c", json={"role": "admin"}, headers=ADMIN
        )
        await client.patch(
            "/users/00000000-0000-4000-8000-00000000a11c", json={"email": "bob@example.com"}, headers=ADMIN
        )
        after, _ = await stats(client, container)
        assert after["by_role"] == {"admin": 2, "member": 1}  # only the allowed role change counted
        assert after["total"] == before["total"]

    async def test_reads_the_read_model_not_the_users(
        self, container: Container, client: httpx.AsyncClient
    ) -> None:
        """A user written behind the service's back (no event) is not counted: stats read user_stats."""
        now = datetime.now(UTC)
        async with container.database().transaction() as session:
            await session.execute(
                insert(UserRow).values(
                    id=uuid.uuid4(),
                    email="ghost@example.com",
                    username="ghost",
                    full_name="Ghost",
                    password_hash="x",
                    role="member",
                    is_active=True,
                    created_at=now,
                    updated_at=now,
                )
            )
        assert (await stats(client, container))[0]["total"] == 3


class TestInvalidation:
    """GetUserStats's cached result is dropped by the projection's command, not by the user commands."""

    async def test_only_the_projection_invalidates(
        self, container: Container, client: httpx.AsyncClient
    ) -> None:
        """A rename moves no counter: stats stay cached; a create moves them: the next read misses."""
        user_id = await create(client, "gina")
        assert [(await stats(client, container))[1] for _ in range(2)] == ["miss", "hit"]
        renamed = await client.patch(f"/users/{user_id}", json={"full_name": "Gina G."}, headers=ADMIN)
        assert renamed.status_code == 200
        read = await client.get(f"/users/{user_id}", headers=ADMIN)
        assert read.headers["X-Cache"] == "miss"  # the command's own invalidation: its user
        assert (await stats(client, container))[1] == "hit"  # ... but not the stats
        await create(client, "hank")
        body, cache = await stats(client, container)
        assert (cache, body["total"]) == ("miss", 5)

    async def test_stats_command_invalidates(self, container: Container, client: httpx.AsyncClient) -> None:
        """ApplyUserStatsChange, sent as the projection, drops the cached stats after it commits."""
        assert [(await stats(client, container))[1] for _ in range(2)] == ["miss", "hit"]
        change = ApplyUserStatsChange((("active", 1), ("role:guest", 1)))
        result = await container.stats_bus().execute(change, Context(principal=PROJECTION))
        assert result.is_success
        body, cache = await stats(client, container)
        assert (cache, body["total"], body["by_role"]) == ("miss", 4, {"admin": 1, "guest": 1, "member": 2})

    async def test_stats_command_refused_to_anyone_else(
        self, container: Container, client: httpx.AsyncClient
    ) -> None:
        """Even an admin may not move the counters: only the projection's principal may."""
        result = await container.stats_bus().execute(ApplyUserStatsChange((("active", 1),)), ADMIN_CONTEXT)
        assert result.status is OperationStatus.UNAUTHORIZED


class TestProjectionInATransaction:
    """The projection as the worker's consumer runs it: inside a transaction that is already open."""

    async def test_joins_and_waits_for_the_commit(
        self, container: Container, client: httpx.AsyncClient
    ) -> None:
        """Counters move with the outer transaction; the cache drops only after it commits."""
        assert [(await stats(client, container))[1] for _ in range(2)] == ["miss", "hit"]
        projection: UserStatsProjection = container.stats_projection()
        async with container.database().transaction():
            result = await projection.handle(UserCreated(uuid.uuid4(), UserRole.GUEST), Context())
            assert result.is_success
            still = await container.query_bus().execute(GetUserStats(), ADMIN_CONTEXT)
            assert still.cache_info is not None
            assert still.cache_info.hit  # not yet invalidated: the outer transaction has not committed
        body, cache = await stats(client, container)
        assert (cache, body["total"]) == ("miss", 4)

    async def test_rolled_back_with_the_outer_transaction(
        self, container: Container, client: httpx.AsyncClient
    ) -> None:
        """An outer transaction that rolls back (a consumer's failed attempt): no change, no invalidation."""
        assert [(await stats(client, container))[1] for _ in range(2)] == ["miss", "hit"]
        projection: UserStatsProjection = container.stats_projection()

        async def failing_attempt() -> None:
            async with container.database().transaction():
                await projection.handle(UserCreated(uuid.uuid4(), UserRole.GUEST), Context())
                raise RuntimeError("the consumer's attempt fails")

        with pytest.raises(RuntimeError):
            await failing_attempt()
        body, cache = await stats(client, container)
        assert (cache, body["total"]) == ("hit", 3)


class TestStatsChange:
    """How each event moves the counters."""

    def test_events(self) -> None:
        """Create adds, delete removes, update moves between counters, a rename moves nothing."""
        user = uuid.uuid4()
        assert stats_change(UserCreated(user, UserRole.MEMBER)) == {"active": 1, "role:member": 1}
        assert stats_change(UserDeleted(user, UserRole.GUEST, was_active=False)) == {
            "inactive": -1,
            "role:guest": -1,
        }
        promoted = UserUpdated(user, ("role", "is_active"), UserRole.ADMIN, False, UserRole.MEMBER, True)
        assert stats_change(promoted) == {"active": -1, "inactive": 1, "role:member": -1, "role:admin": 1}
        renamed = UserUpdated(user, ("full_name",), UserRole.MEMBER, True, UserRole.MEMBER, True)
        assert stats_change(renamed) == {}


class TestEventDelivery:
    """The settings choose the publisher: in-process by default, the outbox with a broker."""

    def test_embedded_default(self) -> None:
        """No broker: handlers write outbox rows, which the API process's consumer reads from the outbox."""
        container = Container()
        container.settings.override(providers.Object(Settings(configure_logging=False)))
        events = container.events()
        assert isinstance(events, OutboxPublisher)
        assert events in container.command_bus().behaviours
        assert isinstance(container.transport(), LocalTransport)

    def test_broker(self) -> None:
        """With a broker: an OutboxPublisher in the service's own schema."""
        container = Container()
        settings = Settings(
            database_url="postgresql+asyncpg://nobody@127.0.0.1/none",
            database_schema="users_svc",
            redis_url="redis://127.0.0.1:6379/0",
            broker_url="amqp://guest:guest@127.0.0.1/",
            configure_logging=False,
        )
        container.settings.override(providers.Object(settings))
        events = container.events()
        assert isinstance(events, OutboxPublisher)
        assert events in container.command_bus().behaviours
        assert (settings.events_schema, settings.stats_queue) == ("users_svc", "users.user-stats")
        assert isinstance(container.transport(), RabbitMQTransport)

    def test_a_nats_url_chooses_nats(self) -> None:
        """One setting picks the broker: a nats:// URL gives the worker a NatsTransport."""
        container = Container()
        settings = Settings(
            database_url="postgresql+asyncpg://nobody@127.0.0.1/none",
            redis_url="redis://127.0.0.1:6379/0",
            broker_url="nats://127.0.0.1:4222",
            configure_logging=False,
        )
        container.settings.override(providers.Object(settings))
        assert settings.broker == "nats"
        assert isinstance(container.transport(), NatsTransport)

    def test_an_unknown_broker_scheme_is_refused(self) -> None:
        """A URL that names neither broker is a ConfigurationError at start-up."""
        with pytest.raises(ConfigurationError, match="USERS_BROKER_URL"):
            Settings(database_url="postgresql://x/y", redis_url="redis://x", broker_url="kafka://x")

    @pytest.mark.parametrize(
        ("database_url", "redis_url", "missing"),
        [
            ("sqlite+aiosqlite:///users.db", "redis://localhost", "PostgreSQL"),
            ("postgresql://x/y", None, "REDIS"),
        ],
    )
    def test_broker_needs_postgres_and_redis(
        self, database_url: str, redis_url: str | None, missing: str
    ) -> None:
        """A broker without a shared database or a shared cache is refused at start-up."""
        with pytest.raises(ConfigurationError, match=missing):
            Settings(database_url=database_url, redis_url=redis_url, broker_url="amqp://localhost/")


class TestCreateTables:
    """A database from before the read model gets its user_stats filled once."""

    @pytest.fixture
    async def old_database(self, tmp_path: Path) -> str:
        """A SQLite file with a users table, two users, and no user_stats table."""
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        engine = create_async_engine(url)
        now = datetime.now(UTC)
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.tables["users"].create)
            for name, role, active in (("old1", "member", True), ("old2", "guest", False)):
                await connection.execute(
                    insert(UserRow).values(
                        id=uuid.uuid4(),
                        email=f"{name}@example.com",
                        username=name,
                        full_name=name,
                        password_hash="x",
                        role=role,
                        is_active=active,
                        created_at=now,
                        updated_at=now,
                    )
                )
        await engine.dispose()
        return url

    async def test_backfill(self, old_database: str) -> None:
        """The counters match the users that were there; a second start-up adds nothing."""
        container = Container()
        container.settings.override(
            providers.Object(
                Settings(
                    database_url=old_database,
                    scrypt_cost=ScryptCost(n=16),
                    configure_logging=False,
                    seed_demo_users=False,
                )
            )
        )
        engine = container.database().engine
        try:
            await create_tables(engine)
            await create_tables(engine)
            result = await container.query_bus().execute(GetUserStats(), ADMIN_CONTEXT)
            assert result.unwrap().by_role == {"guest": 1, "member": 1}
            assert (result.unwrap().active, result.unwrap().inactive) == (1, 1)
        finally:
            await container.cache().close()
            await container.database().dispose()


class FlakyStats(UserStatsRepository):
    """The read model's repository, failing its first `failures` writes (the database busy, say)."""

    failures = 0

    async def apply(self, changes: Sequence[tuple[str, int]]) -> None:
        if FlakyStats.failures > 0:
            FlakyStats.failures -= 1
            raise RuntimeError("the read model's database was busy")
        await super().apply(changes)


class TestDurableDelivery:
    """The embedded default loses no projection update when a subscriber fails (issue 11)."""

    async def test_a_failing_projection_is_retried_and_counts_once(self, container: Container) -> None:
        from examples.users.app import create_app

        from tests.asgi import asgi_client

        container.user_stats.override(providers.Factory(FlakyStats, database=container.database))
        try:
            async with asgi_client(create_app(container), base_url="http://users.test") as client:
                await events_delivered(container)  # the demo accounts, before the failures start
                FlakyStats.failures = 3  # the consumer's max_attempts is 5
                await create(client, "ivan")
                body, _ = await stats(client, container)
                assert body["total"] == 4  # neither one short nor counted twice
                assert FlakyStats.failures == 0
                assert await container.local_transport().dead_letters(container.settings().stats_queue) == []
        finally:
            container.user_stats.reset_override()
            FlakyStats.failures = 0

    async def test_past_max_attempts_it_is_dead_lettered_and_replayed(self, container: Container) -> None:
        from examples.users.app import create_app

        from tests.asgi import asgi_client

        container.user_stats.override(providers.Factory(FlakyStats, database=container.database))
        queue = container.settings().stats_queue
        try:
            async with asgi_client(create_app(container), base_url="http://users.test") as client:
                await events_delivered(container)
                FlakyStats.failures = 5
                await create(client, "judy")
                await events_delivered(container)  # settled: as a dead letter
                [dead] = await container.local_transport().dead_letters(queue)
                assert dead.name == "UserCreated"
                assert (await stats(client, container))[0]["total"] == 3  # one short, until replayed
                assert await container.local_transport().replay(queue) == 1
                body, _ = await stats(client, container)
                assert body["total"] == 4
        finally:
            container.user_stats.reset_override()
            FlakyStats.failures = 0
