"""`ProcessManager`: runs a process definition's reactions, one instance at a time, durably."""

from __future__ import annotations

import enum
import json
import time
import typing
import uuid
from collections.abc import Mapping, Sequence
from types import MappingProxyType, UnionType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs
import cattrs
import sqlalchemy as sa

from cqrskit._context import Context
from cqrskit._errors import ConfigurationError, ConflictError
from cqrskit._logs import library_logger
from cqrskit._messages import Command
from cqrskit._names import qualified_name
from cqrskit.events._envelope import Envelope, envelope_for
from cqrskit.events._event import message_name
from cqrskit.events._tables import NO_TENANT, insert_for, key_lock_id
from cqrskit.processes._steps import ProcessDefinition, Reaction, ReactionKind, Send, Step
from cqrskit.processes._tables import create_process_tables, process_tables

if TYPE_CHECKING:
    from cqrskit.events._scheduling import CommandScheduler

__all__ = ["ProcessHistoryEntry", "ProcessInstance", "ProcessManager", "ProcessStatus"]

S = TypeVar("S")
C = TypeVar("C", bound=Command[Any])


class ProcessStatus(enum.StrEnum):
    """Where an instance is: still running, completed, or ended by compensating."""

    RUNNING = "running"
    COMPLETED = "completed"
    COMPENSATED = "compensated"


@attrs.frozen
class ProcessHistoryEntry:
    """One step an instance took: the version it made, the message, the status after, what it sent."""

    version: int
    message: str
    status: ProcessStatus
    sent: tuple[str, ...]
    at: float


@attrs.frozen
class ProcessInstance(Generic[S]):
    """One instance of a process as it is stored: its typed state, status, version and history."""

    process: str
    key: str
    status: ProcessStatus
    version: int
    state: S
    started_at: float
    updated_at: float
    history: tuple[ProcessHistoryEntry, ...]


class ProcessManager(Generic[S, C]):
    """Runs a process: give it your `ProcessDefinition` in the container, and route its messages to it.

    ``ProcessManager(Onboarding(), name="onboarding", state=OnboardingState, scheduler=scheduler)``
    is a handler like any other: list it as a subscriber of the events the process reacts to on
    your `EventBus`, and as the handler of the commands it reacts to (its deadlines included) on
    your `CommandBus`. `name` is stored with every instance: keep it stable.

    Each message runs in one transaction (a savepoint of the consumer's, whose inbox row then
    commits with it): the instance row is locked (an advisory lock per instance on PostgreSQL,
    ``BEGIN IMMEDIATE`` on SQLite) and checked by version, the reaction's `Step` is taken, and the
    new state, the history entry and the commands it sends (rows of the `CommandScheduler`'s table,
    run in order per instance) are written together. A crash before the commit leaves nothing, and
    the message is delivered again; a message delivered again after the commit is stopped by the
    inbox. State is stored as JSON with cattrs.
    """

    def __init__(
        self,
        process: ProcessDefinition[S, C],
        *,
        name: str,
        state: type[S],
        scheduler: CommandScheduler,
        converter: cattrs.Converter | None = None,
        logger: Any = None,
    ) -> None:
        reactions: dict[type, Reaction[S, C]] = {}
        for reaction in process.reactions():
            if reaction.message_type in reactions:
                raise ConfigurationError(
                    f"process {name!r} reacts to {reaction.message_type.__qualname__} twice"
                )
            reactions[reaction.message_type] = reaction
        if not any(r.kind is ReactionKind.STARTS for r in reactions.values()):
            raise ConfigurationError(
                f"process {name!r} has no reaction made with starts(): nothing starts it"
            )
        self._process = process
        self._name = name
        self._state_type = state
        self._scheduler = scheduler
        self._database = scheduler.database
        self._schema = scheduler.schema
        self._tables = process_tables(scheduler.schema)
        self._insert = insert_for(self._database.dialect_name)
        self._postgres = self._database.dialect_name == "postgresql"
        self._converter = converter or scheduler.converter
        self._names = scheduler.names
        self._reactions: Mapping[type, Reaction[S, C]] = MappingProxyType(reactions)
        self._deadline_types = tuple(t for t, r in reactions.items() if r.kind is ReactionKind.DEADLINE)
        self._logger = logger if logger is not None else library_logger("cqrskit.processes")

    @property
    def name(self) -> str:
        """The name instances are stored under."""
        return self._name

    @property
    def reactions(self) -> Mapping[type, Reaction[S, C]]:
        """The process's reactions by message type."""
        return self._reactions

    async def create_tables(self) -> None:
        """Create the process tables, the scheduled-commands table and the event tables unless they exist."""
        await create_process_tables(self._database, self._schema)

    async def handle(self, message: Any, context: Context) -> None:
        """Apply `message` to the instance it names, in one transaction; ignore it when it does not apply."""
        reaction = self._reactions.get(type(message))
        if reaction is None:
            raise ConfigurationError(
                f"process {self._name!r} has no reaction to {type(message).__qualname__}"
            )
        key = reaction.key(message)
        tenant = NO_TENANT if context.tenant is None else context.tenant  # instances are per tenant
        log = self._logger.bind(process=self._name, key=key, message=type(message).__name__)
        instances = self._tables.instances
        this_instance = (
            instances.c.process == self._name,
            instances.c.tenant == tenant,
            instances.c.key == key,
        )
        async with self._database.transaction() as session:
            if self._postgres:
                # Serialises the messages of one instance, including two starts of one not there yet.
                lock = key_lock_id(self._schema, f"cqrskit.process:{self._name}:{tenant}:{key}")
                await session.execute(sa.select(sa.func.pg_advisory_xact_lock(lock)))
            row = (await session.execute(sa.select(instances).where(*this_instance))).first()
            if reaction.kind is ReactionKind.STARTS:
                if row is not None:
                    log.info("process_start_ignored", reason="the instance exists")
                    return
                step: Step[S, C] = await reaction.handler(message)
                compensations: list[dict[str, str]] = []
                version = 1
            else:
                if row is None or row.status != ProcessStatus.RUNNING:
                    log.info("process_message_ignored", reason="no running instance")
                    return
                state = self._converter.structure(json.loads(row.state), self._state_type)
                step = await reaction.handler(message, state)
                compensations = json.loads(row.compensations)
                version = row.version + 1
            sent = await self._apply(step, key, compensations, context)
            status = (
                ProcessStatus.COMPENSATED
                if step.compensate
                else ProcessStatus.COMPLETED
                if step.complete
                else ProcessStatus.RUNNING
            )
            now = time.time()
            values = {
                "status": str(status),
                "version": version,
                "state": json.dumps(self._converter.unstructure(step.state), separators=(",", ":")),
                "compensations": json.dumps(compensations, separators=(",", ":")),
                "updated_at": now,
            }
            if row is None:
                await session.execute(
                    sa.insert(instances).values(
                        process=self._name, key=key, tenant=tenant, started_at=now, **values
                    )
                )
            else:
                changed = await session.execute(
                    sa.update(instances)
                    .where(*this_instance, instances.c.version == row.version)
                    .values(**values)
                )
                if not getattr(changed, "rowcount", 1):
                    raise ConflictError(f"process {self._name!r} instance {key!r} moved on meanwhile")
            await session.execute(
                sa.insert(self._tables.history).values(
                    process=self._name,
                    key=key,
                    tenant=tenant,
                    version=version,
                    message=type(message).__name__,
                    status=str(status),
                    sent=json.dumps(sent),
                    at=now,
                )
            )
            log.debug("process_step", version=version, status=str(status), sent=sent)

    async def _apply(
        self, step: Step[S, C], key: str, compensations: list[dict[str, str]], context: Context
    ) -> list[str]:
        """Schedule what `step` sends, sets and cancels; return the names of what it sent."""
        scheduler = self._scheduler
        chain = f"process:{self._name}:{key}"
        child = context.child()
        sent: list[str] = []
        for item in step.send:
            command, compensation = (
                (item.command, item.compensation) if isinstance(item, Send) else (item, None)
            )
            await scheduler.schedule(command, ordering_key=chain, context=child)
            sent.append(message_name(type(command), self._names))
            if compensation is not None:
                envelope = envelope_for(compensation, None, converter=self._converter, names=self._names)
                compensations.append({"name": envelope.name, "payload": envelope.payload.decode()})
        for each in step.deadlines:
            await scheduler.schedule(
                each.command,
                at=each.at,
                after=each.after,
                key=self._deadline_key(key, type(each.command)),
                context=child,
            )
            sent.append(f"deadline {message_name(type(each.command), self._names)}")
        ending = step.complete or step.compensate
        for deadline_type in self._deadline_types if ending else step.cancel:
            await scheduler.cancel(self._deadline_key(key, deadline_type), context=child)
        if step.compensate:
            for stored in reversed(compensations):
                envelope = Envelope(
                    message_id=uuid.uuid4().hex,
                    name=stored["name"],
                    payload=stored["payload"].encode(),
                    correlation_id=child.correlation_id,
                    causation_id=child.causation_id,
                    principal=child.principal,
                    created_at=time.time(),
                    tenant=child.tenant,
                )
                await scheduler.schedule_envelope(envelope, ordering_key=chain)
                sent.append(f"compensation {stored['name']}")
            compensations.clear()
        return sent

    def _deadline_key(self, key: str, command_type: type) -> str:
        return f"process:{self._name}:{key}:deadline:{message_name(command_type, self._names)}"

    async def instance(self, key: str, *, tenant: str | None = None) -> ProcessInstance[S] | None:
        """Return `tenant`'s instance `key` with its state and history, or None when it never started."""
        instances, history = self._tables.instances, self._tables.history
        stored_tenant = NO_TENANT if tenant is None else tenant
        async with self._database.read_session() as session:
            row = (
                await session.execute(
                    sa.select(instances).where(
                        instances.c.process == self._name,
                        instances.c.tenant == stored_tenant,
                        instances.c.key == key,
                    )
                )
            ).first()
            if row is None:
                return None
            steps = (
                await session.execute(
                    sa.select(history)
                    .where(
                        history.c.process == self._name,
                        history.c.tenant == stored_tenant,
                        history.c.key == key,
                    )
                    .order_by(history.c.version)
                )
            ).all()
        return ProcessInstance(
            process=self._name,
            key=key,
            status=ProcessStatus(row.status),
            version=row.version,
            state=self._converter.structure(json.loads(row.state), self._state_type),
            started_at=row.started_at,
            updated_at=row.updated_at,
            history=tuple(
                ProcessHistoryEntry(
                    s.version, s.message, ProcessStatus(s.status), tuple(json.loads(s.sent)), s.at
                )
                for s in steps
            ),
        )

    def describe(self) -> dict[str, object]:
        """Return what the route inspector prints: the reactions, the commands it may send, its deadlines."""
        by_kind: dict[ReactionKind, list[str]] = {kind: [] for kind in ReactionKind}
        sends: set[str] = set()
        for message_type, reaction in self._reactions.items():
            by_kind[reaction.kind].append(qualified_name(message_type))
            sends.update(qualified_name(t) for t in _sent_types(reaction))
        return {
            "state": qualified_name(self._state_type),
            "starts on": sorted(by_kind[ReactionKind.STARTS]),
            "reacts to": sorted(by_kind[ReactionKind.CONTINUES]),
            "deadlines": sorted(by_kind[ReactionKind.DEADLINE]),
            "may send": sorted(sends) if sends else ["(not declared in the handlers' return types)"],
        }

    def __repr__(self) -> str:
        return f"ProcessManager({self._name!r}, state={self._state_type.__qualname__})"


def _sent_types(reaction: Reaction[Any, Any]) -> Sequence[type]:
    """Return the command types a reaction's handler declares in its return type, ``Step[S, A | B]``."""
    try:
        hints = typing.get_type_hints(reaction.handler)
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved just declares nothing
        return ()
    args = typing.get_args(hints.get("return"))
    if len(args) != 2:  # noqa: PLR2004 - Step's two type arguments
        return ()
    sent = args[1]
    members = (
        typing.get_args(sent)
        if isinstance(sent, UnionType) or typing.get_origin(sent) is typing.Union
        else (sent,)
    )
    return tuple(m for m in members if isinstance(m, type) and m is not Command)
