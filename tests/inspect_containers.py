"""Containers the route inspector tests load by name (``tests.inspect_containers:GoodContainer``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from dependency_injector import containers, providers

from cqrskit import CallNext, Command, CommandBus, Context, Query, QueryBus, Result, Stage
from cqrskit.behaviours import Authenticated, Authorization, RequirePermissions, Retry
from cqrskit.events import Event, EventBus
from cqrskit.sqlalchemy import Database, Transaction


@attrs.frozen
class PlaceOrder(Command[str]):
    item: str


@attrs.frozen
class CancelOrder(Command[None]):
    order_id: str


@attrs.frozen
class GetOrder(Query[str]):
    order_id: str


@attrs.frozen
class ForgottenQuery(Query[None]):
    pass


class PlaceOrderHandler:
    async def handle(self, command: PlaceOrder, context: Context) -> str:
        return command.item


class CancelOrderHandler:
    async def handle(self, command: CancelOrder, context: Context) -> None:
        return None


class GetOrderHandler:
    async def handle(self, query: GetOrder, context: Context) -> str:
        return query.order_id


class Timing:
    """A behaviour that applies to commands only and says so."""

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        return await call_next(message, context)

    def bind(self, message_type: type) -> Timing | None:
        return None if message_type is GetOrder else self

    def describe(self, message_type: type) -> Mapping[str, object]:
        return {"timeout": 2.5}


class Outer:
    stage = Stage.LOGGING

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        return await call_next(message, context)


class Inner:
    stage = Stage.RETRY

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        return await call_next(message, context)


class GoodContainer(containers.DeclarativeContainer):
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                PlaceOrder: providers.Factory(PlaceOrderHandler),
                CancelOrder: providers.Factory(CancelOrderHandler).provider,
            }
        ),
        behaviours=providers.List(
            providers.Singleton(
                Authorization,
                rules={PlaceOrder: RequirePermissions("order:place"), CancelOrder: Authenticated()},
            ),
            providers.Singleton(Timing),
        ),
    )
    query_bus = providers.Singleton(
        QueryBus, handlers=providers.Dict({GetOrder: providers.Factory(GetOrderHandler)})
    )


class NoAuthorizationContainer(containers.DeclarativeContainer):
    command_bus = providers.Singleton(
        CommandBus, handlers=providers.Dict({PlaceOrder: providers.Factory(PlaceOrderHandler)})
    )


class MissingRuleContainer(containers.DeclarativeContainer):
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                PlaceOrder: providers.Factory(PlaceOrderHandler),
                CancelOrder: providers.Factory(CancelOrderHandler),
            }
        ),
        behaviours=providers.List(
            providers.Singleton(Authorization, rules={PlaceOrder: RequirePermissions("order:place")})
        ),
    )


class WrongOrderContainer(containers.DeclarativeContainer):
    """Inner's stage is inside Outer's; listing it first is refused when the bus is built."""

    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict({PlaceOrder: providers.Factory(PlaceOrderHandler)}),
        behaviours=providers.List(providers.Singleton(Inner), providers.Singleton(Outer)),
    )


class NoBusContainer(containers.DeclarativeContainer):
    value = providers.Object(1)


class RetryInsideTransactionContainer(containers.DeclarativeContainer):
    """Retry must sit outside Transaction; the bus refuses this order when it is built."""

    database = providers.Singleton(Database)
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict({PlaceOrder: providers.Factory(PlaceOrderHandler)}),
        behaviours=providers.List(
            providers.Singleton(Authorization, rules={PlaceOrder: RequirePermissions("order:place")}),
            providers.Singleton(Transaction, database=database),
            providers.Singleton(Retry),
        ),
    )


@attrs.frozen
class OrderPlaced(Event):
    order_id: str


class EmailCustomer:
    async def handle(self, event: OrderPlaced, context: Context) -> None:
        return None


class UpdateStock:
    async def handle(self, event: OrderPlaced, context: Context) -> None:
        return None


class EventContainer(containers.DeclarativeContainer):
    event_bus = providers.Singleton(
        EventBus,
        handlers=providers.Dict(
            {OrderPlaced: providers.List(providers.Factory(EmailCustomer), providers.Factory(UpdateStock))}
        ),
    )
