"""Typing checks (mypy --strict and pyright, never run): per-type maps built as variables are accepted.

A dict literal assigned to a variable is inferred as ``dict[type[CreateUser], ...]``; the buses and the
behaviours that take per-type settings must accept it without an annotation or a cast.
"""

from __future__ import annotations

from uuid import UUID, uuid4

import attrs

from cqrskit import Command, CommandBus, Context, Query, QueryBus, merge_routes
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


class CreateUserHandler:
    async def handle(self, command: CreateUser, context: Context) -> UUID:
        return uuid4()


class GetUserHandler:
    async def handle(self, query: GetUser, context: Context) -> str:
        return "ada"


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

commands = CommandBus(
    merge_routes(command_routes),
    [Authorization(command_rules), Timeout(per_message=deadlines), Retry(per_message=policies)],
)
queries = QueryBus(query_routes, [Authorization(rules)])
transaction = Transaction(Database("sqlite+aiosqlite://"), isolation=levels)
