"""The usual write endpoint: run a command, then answer with what a query reads afterwards."""

from __future__ import annotations

from typing import Any, TypeVar

from cqrskit._bus import CommandBus, QueryBus
from cqrskit._context import Context
from cqrskit._messages import Command, Query
from cqrskit._results import Result

__all__ = ["execute_then_query"]

R = TypeVar("R")


async def execute_then_query(
    commands: CommandBus,
    command: Command[Any],
    queries: QueryBus,
    query: Query[R],
    context: Context,
) -> Result[R]:
    """Execute `command`; when it succeeds, return the Result of `query`, else the command's failure.

    The query runs for the same principal and correlation id, with the command's operation id as its
    causation id, so the logs tie the two together; the query's operation id is the one the response
    carries. Declare the query with
    ``payload(..., answers=GetUser)`` so that the OpenAPI document shows the query's result::

        @app.patch("/users/{user_id}")
        async def update_user(command: Update, commands: Commands, queries: Queries, context: Ctx):
            read = GetUser(command.user_id, include_inactive=True)
            return update.respond(await execute_then_query(commands, command, queries, read, context))
    """
    done = await commands.execute(command, context)
    if done.is_failure:
        return done  # a failure carries no data, so it stands for a Result of any type
    caused = Context(
        principal=context.principal,
        correlation_id=context.correlation_id,
        causation_id=done.operation_id,
        tenant=context.tenant,
    )
    return await queries.execute(query, caused)
