"""The service's settings, read from the environment once, at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from uuid import UUID

import attrs

from cqrskit import ConfigurationError
from examples.users.passwords import ScryptCost


@attrs.frozen
class DemoAccount:
    """Who a demo bearer token stands for."""

    user_id: UUID
    username: str
    is_admin: bool = False


ADMIN_ID = UUID("00000000-0000-4000-8000-000000000001")
ALICE_ID = UUID("00000000-0000-4000-8000-00000000a11c")
BOB_ID = UUID("00000000-0000-4000-8000-000000000b0b")

DEMO_TOKENS: Mapping[str, DemoAccount] = {
    "admin-token": DemoAccount(ADMIN_ID, "admin", is_admin=True),
    "alice-token": DemoAccount(ALICE_ID, "alice"),
    "bob-token": DemoAccount(BOB_ID, "bob"),
}
"""For the demo only: fixed bearer tokens, not an identity provider. Never deploy these."""


_BROKERS = frozenset({"rabbitmq", "nats"})


@attrs.frozen
class Settings:
    """Everything the container needs to build the service.

    With no environment at all the service runs on a SQLite file and an in-memory cache, and its domain
    events reach the ``user_stats`` projection in-process: written to the outbox table in each
    command's transaction and delivered right after it commits, retried, and dead-lettered. Set
    ``USERS_DATABASE_URL`` (``postgresql+asyncpg://...``) and ``USERS_REDIS_URL`` (``redis://...``) to
    run it on PostgreSQL and Redis, shared by several workers. ``USERS_DATABASE_SCHEMA`` puts its tables
    in a PostgreSQL schema of its own (the schema must exist). Set ``USERS_BROKER_URL`` as well and
    events go through the outbox to a broker instead, and a worker process
    (``python -m examples.users.worker``) relays and consumes them: ``amqp://...`` for RabbitMQ,
    ``nats://...`` for NATS JetStream. ``USERS_BROKER_NAME`` names the RabbitMQ exchange or the
    JetStream stream (and, with ``.user-stats`` appended, the worker's queue).

    The demo's bearer tokens (``admin-token``, ``alice-token``, ``bob-token``) and the users they stand
    for exist only with ``USERS_DEMO=1`` (``nox -s demo`` and ``nox -s serve`` set it; `demo` here).
    Without it the service knows no token but those given in `tokens`, and refuses every other one.
    """

    def __attrs_post_init__(self) -> None:
        if self.broker_url is None:
            return
        if self.broker not in _BROKERS:
            raise ConfigurationError(
                "USERS_BROKER_URL must start with amqp://, amqps://, nats:// or tls://, "
                f"not {self.broker_url!r}"
            )
        if not self.database_url.startswith("postgresql"):
            raise ConfigurationError(
                "USERS_BROKER_URL needs USERS_DATABASE_URL on PostgreSQL: the API processes and the "
                "worker share the database (its outbox, its inbox and the user_stats read model)"
            )
        if self.redis_url is None:
            raise ConfigurationError(
                "USERS_BROKER_URL needs USERS_REDIS_URL: the worker invalidates GetUserStats's cached "
                "results, and only a shared cache carries that to the API processes"
            )

    @property
    def event_delivery(self) -> str:
        """How domain events reach the projection: ``"outbox"`` with a broker, else ``"embedded"``.

        Both write them to the outbox in the command's transaction; embedded, each API process
        delivers them itself (a `LocalTransport` consumer), with a broker the worker does.
        """
        return "outbox" if self.broker_url is not None else "embedded"

    @property
    def event_transport(self) -> str:
        """The transport the consumer reads: ``"local"`` (the outbox) without a broker, else `broker`."""
        return self.broker if self.broker_url is not None else "local"

    @property
    def broker(self) -> str:
        """Which broker `broker_url` names: ``"rabbitmq"`` (``amqp://``) or ``"nats"`` (``nats://``)."""
        scheme = (self.broker_url or "amqp://").partition("://")[0]
        return {"amqp": "rabbitmq", "amqps": "rabbitmq", "nats": "nats", "tls": "nats"}.get(scheme, scheme)

    @property
    def events_schema(self) -> str | None:
        """The PostgreSQL schema of cqrskit's outbox and inbox tables: the service's own schema."""
        return self.database_schema if self.database_url.startswith("postgresql") else None

    @property
    def stats_queue(self) -> str:
        """The queue the worker's consumer reads: named after the exchange or stream."""
        return f"{self.broker_name}.user-stats"

    def engine_options(self) -> dict[str, object]:
        """Return the SQLAlchemy engine options these settings ask for (a search path on PostgreSQL)."""
        if self.database_schema and self.database_url.startswith("postgresql"):
            return {"connect_args": {"server_settings": {"search_path": self.database_schema}}}
        return {}

    database_url: str = "sqlite+aiosqlite:///users.db"
    database_schema: str | None = None
    redis_url: str | None = None
    broker_url: str | None = None
    broker_name: str = "users"
    cache_namespace: str = "users"
    scrypt_cost: ScryptCost = attrs.field(factory=ScryptCost)
    demo: bool = False
    tokens: Mapping[str, DemoAccount] = attrs.field(
        default=attrs.Factory(lambda self: DEMO_TOKENS if self.demo else {}, takes_self=True)
    )
    seed_demo_users: bool = attrs.field(default=attrs.Factory(lambda self: self.demo, takes_self=True))
    configure_logging: bool = True
    log_json: bool = False
    log_level: str = "info"
    command_timeout: float = 10.0
    query_timeout: float = 5.0
    max_body_bytes: int = 2 * 1024 * 1024
    sqlite_busy_timeout: float = 5.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``USERS_*`` environment variables, defaults for the rest."""
        env = os.environ if environ is None else environ
        defaults = cls()
        demo = (env.get("USERS_DEMO") or "0") == "1"
        return cls(
            database_url=env.get("USERS_DATABASE_URL") or defaults.database_url,
            database_schema=env.get("USERS_DATABASE_SCHEMA") or None,
            redis_url=env.get("USERS_REDIS_URL") or None,
            broker_url=env.get("USERS_BROKER_URL") or None,
            broker_name=env.get("USERS_BROKER_NAME") or defaults.broker_name,
            cache_namespace=env.get("USERS_CACHE_NAMESPACE") or defaults.cache_namespace,
            scrypt_cost=ScryptCost(n=int(env.get("USERS_SCRYPT_N") or defaults.scrypt_cost.n)),
            demo=demo,
            seed_demo_users=demo and (env.get("USERS_SEED_DEMO_USERS") or "1") != "0",
            log_json=(env.get("USERS_LOG_JSON") or "0") == "1",
            log_level=env.get("USERS_LOG_LEVEL") or defaults.log_level,
            command_timeout=float(env.get("USERS_COMMAND_TIMEOUT") or defaults.command_timeout),
        )
