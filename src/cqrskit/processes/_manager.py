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
from cqrskit.events._schedule_table import schedule_table
from cqrskit.events._scheduling import due_time
from cqrskit.events._tables import NO_TENANT, insert_for, key_lock_id
from cqrskit.processes._steps import ProcessDefinition, Reaction, ReactionKind, Send, Step
from cqrskit.processes._tables import create_process_tables, process_tables

if TYPE_CHECKING:
    from cqrskit.events._scheduling import CommandScheduler
    from cqrskit.sqlalchemy._database import Database

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

    It is also a `DeadLetterHook`: give it to the `Consumer` (or `ScheduleRunner`) that runs the
    commands it sends, with ``dead_letter_hooks=[manager]``, and a sent command that fails for good
    makes its instance compensate (`dead_lettered`).
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
    def database(self) -> Database:
        """The database instances are stored in (the scheduler's)."""
        return self._database

    @property
    def schema(self) -> str | None:
        """The schema of the process tables (the scheduler's; None: the default one)."""
        return self._schema

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
            if reaction.kind is ReactionKind.DEADLINE:
                await self._forget_deadlines(key, tenant, [type(message)])  # taken: no longer waited for
            now = time.time()  # the step's time, and what its deadlines' delays count from
            sent = await self._apply(step, key, compensations, context, now)
            status = (
                ProcessStatus.COMPENSATED
                if step.compensate
                else ProcessStatus.COMPLETED
                if step.complete
                else ProcessStatus.RUNNING
            )
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
            await self._record(session, key, tenant, version, type(message).__name__, status, sent, now)
            log.debug("process_step", version=version, status=str(status), sent=sent)

    async def _apply(
        self, step: Step[S, C], key: str, compensations: list[dict[str, str]], context: Context, now: float
    ) -> list[str]:
        """Schedule what `step` sends, sets and cancels; return the names of what it sent."""
        scheduler = self._scheduler
        chain = f"process:{self._name}:{key}"
        child = context.child()
        tenant = NO_TENANT if context.tenant is None else context.tenant
        sent: list[str] = []
        for item in step.send:
            command, compensation = (
                (item.command, item.compensation) if isinstance(item, Send) else (item, None)
            )
            sending = envelope_for(command, child, converter=self._converter, names=self._names)
            await scheduler.schedule_envelope(sending, ordering_key=chain)
            sent.append(sending.name)
            if compensation is not None:
                envelope = envelope_for(compensation, None, converter=self._converter, names=self._names)
                # "for": the command it undoes, left out should that command be dead-lettered.
                compensations.append(
                    {"name": envelope.name, "payload": envelope.payload.decode(), "for": sending.message_id}
                )
        for each in step.deadlines:
            due = due_time(each.at, each.after, now)
            await scheduler.schedule(
                each.command, at=due, key=self._deadline_key(key, type(each.command)), context=child
            )
            await self._await_deadline(key, tenant, type(each.command), due)
            sent.append(f"deadline {message_name(type(each.command), self._names)}")
        ending = step.complete or step.compensate
        cancelled = self._deadline_types if ending else step.cancel
        for deadline_type in cancelled:
            await scheduler.cancel(self._deadline_key(key, deadline_type), context=child)
        await self._forget_deadlines(key, tenant, cancelled)
        if step.compensate:
            sent += await self._compensate(compensations, chain, child)
        return sent

    async def _compensate(
        self, compensations: list[dict[str, str]], chain: str, context: Context
    ) -> list[str]:
        """Schedule `compensations`, last first, on the instance's chain; empty the list."""
        sent: list[str] = []
        for stored in reversed(compensations):
            envelope = Envelope(
                message_id=uuid.uuid4().hex,
                name=stored["name"],
                payload=stored["payload"].encode(),
                correlation_id=context.correlation_id,
                causation_id=context.causation_id,
                principal=context.principal,
                created_at=time.time(),
                tenant=context.tenant,
            )
            await self._scheduler.schedule_envelope(envelope, ordering_key=chain)
            sent.append(f"compensation {stored['name']}")
        compensations.clear()
        return sent

    async def _await_deadline(self, key: str, tenant: str, command_type: type, due: float) -> None:
        """Record that the instance waits for the deadline `command_type` at `due` (what finds it stuck)."""
        deadlines = self._tables.deadlines
        name = message_name(command_type, self._names)
        statement = (
            self._insert(deadlines)
            .values(process=self._name, tenant=tenant, key=key, deadline=name, due_at=due)
            .on_conflict_do_update(index_elements=list(deadlines.primary_key.columns), set_={"due_at": due})
        )
        await self._database.session.execute(statement)

    async def _forget_deadlines(self, key: str, tenant: str, command_types: Sequence[type]) -> None:
        """Drop the recorded deadlines `command_types` of the instance: taken, cancelled, or ended."""
        if not command_types:
            return
        deadlines = self._tables.deadlines
        names = [message_name(t, self._names) for t in command_types]
        await self._database.session.execute(
            sa.delete(deadlines).where(
                deadlines.c.process == self._name,
                deadlines.c.tenant == tenant,
                deadlines.c.key == key,
                deadlines.c.deadline.in_(names),
            )
        )

    async def dead_lettered(self, envelope: Envelope, reason: str) -> None:
        """Compensate the running instance whose sent command `envelope` failed for good.

        The `DeadLetterHook` the consumer (or runner) calls in the transaction that gives the command
        up. Only commands this manager sent from a step are its own (their ordering key names the
        instance); others, and commands of an instance that has ended, are left alone. The instance
        ends as compensated, as if a step had returned ``compensate=True``: the commands it sent
        after the failed one and that have not left the schedule yet are cancelled, its deadlines
        too, and the compensations of the other commands it sent run, last sent first (the failed
        command's own is left out: it did nothing). The history entry is ``dead letter <name>``.
        """
        prefix = f"process:{self._name}:"
        if envelope.key is None or not envelope.key.startswith(prefix):
            return
        key = envelope.key[len(prefix) :]
        # The command carries the tenant of the step that sent it: the instance is that tenant's.
        tenant = NO_TENANT if envelope.tenant is None else envelope.tenant
        log = self._logger.bind(process=self._name, key=key, message=envelope.name, reason=reason)
        if envelope.tenant is not None:
            log = log.bind(tenant=envelope.tenant)
        instances, schedule = self._tables.instances, schedule_table(self._schema)
        this_instance = (
            instances.c.process == self._name,
            instances.c.tenant == tenant,
            instances.c.key == key,
        )
        context = envelope.context().child()
        async with self._database.transaction() as session:
            if self._postgres:
                lock = key_lock_id(self._schema, f"cqrskit.process:{self._name}:{tenant}:{key}")
                await session.execute(sa.select(sa.func.pg_advisory_xact_lock(lock)))
            row = (await session.execute(sa.select(instances).where(*this_instance))).first()
            if row is None or row.status != ProcessStatus.RUNNING:
                log.warning("process_dead_letter_ignored", reason_ignored="no running instance")
                return
            # What the instance sent after the failed command and is still waiting in the schedule
            # never runs; its compensation is left out with the failed command's.
            unsent = await session.execute(
                sa.delete(schedule)
                .where(
                    schedule.c.ordering_key == envelope.key,
                    schedule.c.tenant == tenant,
                    schedule.c.dead_at.is_(None),
                )
                .returning(schedule.c.message_id)
            )
            skipped = {envelope.message_id, *unsent.scalars()}
            compensations = [c for c in json.loads(row.compensations) if c.get("for") not in skipped]
            for deadline_type in self._deadline_types:
                await self._scheduler.cancel(self._deadline_key(key, deadline_type), context=context)
            await self._forget_deadlines(key, tenant, self._deadline_types)
            sent = await self._compensate(compensations, envelope.key, context)
            now = time.time()
            status = ProcessStatus.COMPENSATED
            changed = await session.execute(
                sa.update(instances)
                .where(*this_instance, instances.c.version == row.version)
                .values(status=str(status), version=row.version + 1, compensations="[]", updated_at=now)
            )
            if not getattr(changed, "rowcount", 1):
                raise ConflictError(f"process {self._name!r} instance {key!r} moved on meanwhile")
            await self._record(
                session, key, tenant, row.version + 1, f"dead letter {envelope.name}", status, sent, now
            )
            log.warning("process_compensating_dead_letter", version=row.version + 1, sent=sent)

    async def _record(  # noqa: PLR0917 - one history row's columns
        self,
        session: Any,
        key: str,
        tenant: str,
        version: int,
        message: str,
        status: ProcessStatus,
        sent: list[str],
        at: float,
    ) -> None:
        """Add the history row of the instance's step `version`: what moved it, its status, what it sent."""
        await session.execute(
            sa.insert(self._tables.history).values(
                process=self._name,
                key=key,
                tenant=tenant,
                version=version,
                message=message,
                status=str(status),
                sent=json.dumps(sent),
                at=at,
            )
        )

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
