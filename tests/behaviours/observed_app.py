"""A small application wired through a DeclarativeContainer, for the observability behaviour tests.

`Register` carries a sensitive `password` whose repr is left on on purpose: redaction must not depend on
it. The handler's outcome is steered by the email: ``boom@...`` raises an unexpected error,
``taken@...`` a `ConflictError`, ``hang@...`` waits until cancelled, anything else succeeds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import structlog
from dependency_injector import containers, providers
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from cqrskit import (
    AffectedEntity,
    Command,
    CommandBus,
    ConflictError,
    Context,
    NotFoundError,
    Query,
    QueryBus,
    Result,
)
from cqrskit.behaviours import Audit, AuditRecord, Logging, Metrics, Tracing


@attrs.frozen
class Credentials:
    """A value object with a sensitive field of its own."""

    username: str
    secret: str = attrs.field(metadata={"sensitive": True})


@attrs.frozen
class Register(Command[str]):
    email: str
    password: str = attrs.field(metadata={"sensitive": True})
    display_name: str = "someone"


@attrs.frozen
class Connect(Command[None]):
    credentials: Credentials


@attrs.frozen
class FindUser(Query[str]):
    email: str


class Hang:
    """Lets a test wait until a handler is inside its dispatch."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.cancelled = False


class RegisterHandler:
    def __init__(self, users: dict[str, str], hang: Hang) -> None:
        self.users = users
        self.hang = hang

    async def handle(self, command: Register, context: Context) -> Result[str]:
        structlog.get_logger("tests.handler").info("registering", email=command.email)
        if command.email.startswith("boom@"):
            raise RuntimeError("the database fell over")
        if command.email.startswith("taken@") or command.email in self.users:
            raise ConflictError("that email is taken")
        if command.email.startswith("hang@"):
            self.hang.entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.hang.cancelled = True
                raise
        user_id = str(len(self.users) + 1)
        self.users[command.email] = user_id
        return Result.success(user_id, affected_entities=[AffectedEntity("user", user_id, "created")])


class ConnectHandler:
    async def handle(self, command: Connect, context: Context) -> None:
        return None


class FindUserHandler:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    async def handle(self, query: FindUser, context: Context) -> str:
        try:
            return self.users[query.email]
        except KeyError:
            raise NotFoundError(f"no user {query.email}") from None


class MemoryAuditSink:
    """An audit sink that keeps the records it is given."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    async def write(self, record: AuditRecord) -> None:
        self.records.append(record)

    def __repr__(self) -> str:
        return "MemoryAuditSink()"


class BrokenAuditSink:
    """An audit sink whose storage is down."""

    async def write(self, record: AuditRecord) -> None:
        raise ConnectionError("audit store unreachable")


def tracer_provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def tracer_from(provider: TracerProvider) -> Tracer:
    return provider.get_tracer("tests")


class ObservedContainer(containers.DeclarativeContainer):
    """The composition root: every observability behaviour, in the canonical order."""

    span_exporter = providers.Singleton(InMemorySpanExporter)
    provider = providers.Singleton(tracer_provider, exporter=span_exporter)
    tracer = providers.Singleton(tracer_from, provider)
    registry = providers.Singleton(CollectorRegistry)
    audit_sink = providers.Singleton(MemoryAuditSink)
    users = providers.Singleton(dict)
    hang = providers.Singleton(Hang)

    tracing = providers.Singleton(Tracing, tracer=tracer)
    logging = providers.Singleton(Logging)
    metrics = providers.Singleton(Metrics, registry=registry)
    audit = providers.Singleton(Audit, sink=audit_sink)

    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                Register: providers.Factory(RegisterHandler, users=users, hang=hang),
                Connect: providers.Factory(ConnectHandler),
            }
        ),
        behaviours=providers.List(tracing, logging, metrics, audit),
    )
    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict({FindUser: providers.Factory(FindUserHandler, users=users)}),
        behaviours=providers.List(tracing, logging, metrics, audit),
    )


class UnloggedContainer(ObservedContainer):
    """The same application without Logging: the bus logs unexpected errors itself."""

    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                Register: providers.Factory(
                    RegisterHandler, users=ObservedContainer.users, hang=ObservedContainer.hang
                )
            }
        ),
        behaviours=providers.List(
            ObservedContainer.tracing, ObservedContainer.metrics, ObservedContainer.audit
        ),
    )


def events_named(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The captured events called `name`."""
    return [event for event in logs if event["event"] == name]
