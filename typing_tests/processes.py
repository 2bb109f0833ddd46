"""Type checks for process managers: run by mypy --strict and pyright, never executed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_type

import attrs

from cqrskit import Command
from cqrskit.events import CommandScheduler, Event
from cqrskit.processes import (
    ProcessInstance,
    ProcessManager,
    Reaction,
    Send,
    Step,
    continues,
    deadline,
    starts,
)
from cqrskit.sqlalchemy import Database


@attrs.frozen
class OrderPlaced(Event):
    order_id: str


@attrs.frozen
class Paid(Event):
    order_id: str


@attrs.frozen
class Reserve(Command[None]):
    order_id: str


@attrs.frozen
class Release(Command[None]):
    order_id: str


@attrs.frozen
class Unrelated(Command[None]):
    pass


@attrs.frozen
class PaymentDue(Command[None]):
    order_id: str


@attrs.frozen
class OrderState:
    order_id: str
    paid: bool = False


@attrs.frozen
class OtherState:
    name: str


OrderCommand = Reserve | Release


class Ordering:
    def reactions(self) -> Sequence[Reaction[OrderState, OrderCommand]]:
        return (
            starts(OrderPlaced, lambda e: e.order_id, self.placed),
            continues(Paid, lambda e: e.order_id, self.paid),
            deadline(PaymentDue, lambda c: c.order_id, self.expired),
        )

    async def placed(self, event: OrderPlaced) -> Step[OrderState, OrderCommand]:
        return Step(OrderState(event.order_id), send=[Send(Reserve(event.order_id), Release(event.order_id))])

    async def paid(self, event: Paid, state: OrderState) -> Step[OrderState, OrderCommand]:
        return Step(attrs.evolve(state, paid=True), complete=True)

    async def expired(self, command: PaymentDue, state: OrderState) -> Step[OrderState, OrderCommand]:
        return Step(state, compensate=True)


class WrongCommand:
    async def placed(self, event: OrderPlaced) -> Step[OrderState, OrderCommand]:
        # A command the process does not declare.
        return Step(OrderState(event.order_id), send=[Unrelated()])  # type: ignore[list-item]  # pyright: ignore[reportReturnType]


class WrongField:
    async def paid(self, event: Paid, state: OrderState) -> Step[OrderState, OrderCommand]:
        if state.customer:  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
            pass
        return Step(state)


class WrongReturn:
    async def placed(self, event: OrderPlaced) -> Step[OrderState, Unrelated]:
        return Step(OrderState(event.order_id), send=[Unrelated()])

    def reactions(self) -> Sequence[Reaction[OrderState, OrderCommand]]:
        # The handler says it sends a command type this process does not.
        return (starts(OrderPlaced, lambda e: e.order_id, self.placed),)  # type: ignore[arg-type]  # pyright: ignore[reportReturnType]


class WrongState:
    async def paid(self, event: Paid, state: OtherState) -> Step[OtherState, OrderCommand]:
        return Step(state)

    def reactions(self) -> Sequence[Reaction[OrderState, OrderCommand]]:
        return (continues(Paid, lambda e: e.order_id, self.paid),)  # type: ignore[arg-type]  # pyright: ignore[reportReturnType]


class WrongMessage:
    async def paid(self, event: Paid, state: OrderState) -> Step[OrderState, OrderCommand]:
        return Step(state)

    def reactions(self) -> Sequence[Reaction[OrderState, OrderCommand]]:
        return (continues(OrderPlaced, lambda e: e.order_id, self.paid),)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def use(database: Database) -> None:
    scheduler = CommandScheduler(database)
    manager = ProcessManager(Ordering(), name="ordering", state=OrderState, scheduler=scheduler)
    assert_type(manager, ProcessManager[OrderState, Reserve | Release])
    instance = await manager.instance("o1")
    assert_type(instance, ProcessInstance[OrderState] | None)
    if instance is not None:
        assert_type(instance.state.paid, bool)
    assert_type(await scheduler.schedule(Reserve("o1"), after=5.0, key="k"), str)
    assert_type(await scheduler.cancel("k"), bool)
