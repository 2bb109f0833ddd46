"""Checked statically by mypy --strict and pyright (never run): the buses keep the types messages promise."""

from __future__ import annotations

from typing import assert_type
from uuid import UUID, uuid4

import attrs

from cqrskit import (
    AffectedEntity,
    Command,
    CommandBus,
    Context,
    Handler,
    OperationStatus,
    Page,
    Pagination,
    Principal,
    Query,
    QueryBus,
    Result,
    merge_routes,
)
from cqrskit.behaviours import (
    Authenticated,
    Authorization,
    AuthorizationRule,
    RequirePermissions,
    Retry,
    RetryPolicy,
    Timeout,
)
from cqrskit.sqlalchemy import Database, Transaction


@attrs.frozen
class CreateUser(Command[UUID]):
    email: str


@attrs.frozen
class GetUser(Query[str]):
    user_id: UUID


@attrs.frozen
class ListUsers(Query[Page[str]]):
    page: int


class CreateUserHandler:
    async def handle(self, command: CreateUser, context: Context) -> UUID:
        return uuid4()


class GetUserHandler:
    async def handle(self, query: GetUser, context: Context) -> str:
        return "ada"


class ReportingHandler:
    async def handle(self, command: CreateUser, context: Context) -> Result[UUID]:
        return Result.success(uuid4())


class WrongHandler:
    async def handle(self, command: CreateUser, context: Context) -> str:
        return "not a UUID"


good: Handler[CreateUser, UUID] = CreateUserHandler()
reporting: Handler[CreateUser, UUID] = ReportingHandler()
query_handler: Handler[GetUser, str] = GetUserHandler()
wrong: Handler[CreateUser, UUID] = WrongHandler()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]


async def dispatch(commands: CommandBus, queries: QueryBus) -> None:
    assert_type(await commands.execute(CreateUser("a@example.com")), Result[UUID])
    assert_type(await commands.execute(CreateUser("a@example.com"), Context()), Result[UUID])
    assert_type(await queries.execute(GetUser(uuid4())), Result[str])
    assert_type(await queries.execute(ListUsers(1)), Result[Page[str]])

    result = await commands.execute(CreateUser("a@example.com"))
    assert_type(result.unwrap(), UUID)
    assert_type(result.data, UUID)
    assert_type(result.is_success, bool)
    assert_type(result.operation_id, str | None)
    page = await queries.execute(ListUsers(1))
    assert_type(page.pagination, Pagination | None)
    assert_type(page.unwrap().items, tuple[str, ...])


def failure_is_assignable() -> Result[UUID]:
    failed: Result[UUID] = Result.failure(OperationStatus.NOT_FOUND, {"detail": "no such user"})
    return failed


def success_is_typed() -> None:
    assert_type(Result.success(uuid4()), Result[UUID])


async def wrong_bus_kind(commands: CommandBus, queries: QueryBus) -> None:
    await commands.execute(GetUser(uuid4()))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await queries.execute(CreateUser("a@example.com"))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def values_take_any_iterable() -> None:
    assert_type(Page(items=["a", "b"], total_count=2, page=1, page_size=2), Page[str])
    assert_type(AffectedEntity("user", "42", "updated", ["email"]).fields, tuple[str, ...])
    assert_type(Principal("u1", permissions={"user:create"}).permissions, frozenset[str])


def maps_kept_in_variables() -> None:
    """A dict literal in a variable is dict[type[CreateUser], ...]: accepted without a cast."""
    command_routes = {CreateUser: CreateUserHandler()}
    query_routes = {GetUser: GetUserHandler()}
    command_rules = {CreateUser: RequirePermissions("user:create")}
    # Rules of several classes have no common class but object to mypy: name the protocol once.
    rules: dict[type, AuthorizationRule] = {
        CreateUser: RequirePermissions("user:create"),
        GetUser: Authenticated(),
    }
    deadlines = {CreateUser: 5.0}
    policies = {CreateUser: RetryPolicy(max_attempts=5)}
    levels = {CreateUser: "SERIALIZABLE"}

    assert_type(
        CommandBus(
            merge_routes(command_routes),
            [Authorization(command_rules), Timeout(per_message=deadlines), Retry(per_message=policies)],
        ),
        CommandBus,
    )
    assert_type(QueryBus(query_routes, [Authorization(rules)]), QueryBus)
    assert_type(Transaction(Database("sqlite+aiosqlite://"), isolation=levels), Transaction)
