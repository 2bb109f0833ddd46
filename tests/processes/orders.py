"""An order process for the dead-letter tests: reserve, charge, ship, each with the command that undoes it.

`OrderPlaced.fail` names the step whose command fails, and how (`OperationStatus` value): ``failed``
is retried until the runner or consumer gives up, ``validation_error`` is given up at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import sqlalchemy as sa

from cqrskit import Command, Context, OperationStatus, Result
from cqrskit.events import Event
from cqrskit.processes import Deadline, Reaction, Send, Step, deadline, starts
from cqrskit.sqlalchemy import Database


def effects_table(schema: str | None = None) -> sa.Table:
    """The table each applied command writes a row to, in `schema`."""
    return sa.Table(
        "order_effects",
        sa.MetaData(schema=schema),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("label", sa.String, nullable=False),
    )


EFFECTS = effects_table()


@attrs.frozen
class OrderPlaced(Event):
    order: str
    fail: str | None = None  # "Reserve", "Charge" or "Ship"
    how: str = "validation_error"


@attrs.frozen
class OrderStep(Command[None]):
    order: str
    fail: str | None = None  # an OperationStatus value: this command fails with it


@attrs.frozen
class Reserve(OrderStep):
    pass


@attrs.frozen
class Charge(OrderStep):
    pass


@attrs.frozen
class Ship(OrderStep):
    pass


@attrs.frozen
class Release(OrderStep):
    pass


@attrs.frozen
class Refund(OrderStep):
    pass


@attrs.frozen
class Unship(OrderStep):
    pass


@attrs.frozen
class OrderTimeout(Command[None]):
    order: str


COMMANDS: dict[str, type] = {t.__name__: t for t in (Reserve, Charge, Ship, Release, Refund, Unship)}


@attrs.frozen
class OrderState:
    order: str


OrderCommand = Reserve | Charge | Ship | Release | Refund | Unship


class Orders:
    """Sends the three steps at once, in order; gives the order an hour before it times out."""

    def reactions(self) -> Sequence[Reaction[OrderState, OrderCommand]]:
        return (
            starts(OrderPlaced, lambda e: e.order, self.placed),
            deadline(OrderTimeout, lambda c: c.order, self.timed_out),
        )

    async def placed(self, event: OrderPlaced) -> Step[OrderState, OrderCommand]:
        def how(step: str) -> str | None:
            return event.how if event.fail == step else None

        return Step(
            OrderState(event.order),
            send=[
                Send(Reserve(event.order, how("Reserve")), compensation=Release(event.order)),
                Send(Charge(event.order, how("Charge")), compensation=Refund(event.order)),
                Send(Ship(event.order, how("Ship")), compensation=Unship(event.order)),
            ],
            deadlines=[Deadline(OrderTimeout(event.order), after=3600)],
        )

    async def timed_out(self, command: OrderTimeout, state: OrderState) -> Step[OrderState, OrderCommand]:
        return Step(state, compensate=True)


class EffectHandler:
    """Writes ``"<Command> <order>"`` for each command applied; fails when the command says so."""

    def __init__(self, database: Database, table: sa.Table = EFFECTS) -> None:
        self._database = database
        self._table = table

    async def handle(self, command: OrderStep, context: Context) -> Result[None]:
        if command.fail is not None:
            return Result.failure(OperationStatus(command.fail))
        await self._database.session.execute(
            sa.insert(self._table).values(label=f"{type(command).__name__} {command.order}")
        )
        return Result.success(None)
