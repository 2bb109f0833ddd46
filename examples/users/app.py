"""The HTTP API: the seed template's user endpoints, each one message on a bus.

Build it with `create_app` (uvicorn: ``examples.users.app:create_app --factory``). The lifespan creates
the tables (cqrskit's outbox and inbox too, with a broker), seeds the demo accounts and builds the
buses, so a wiring mistake stops start-up.
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations at runtime, and
# some name aliases local to add_routes.

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import Depends, FastAPI
from sqlalchemy.exc import IntegrityError
from starlette.responses import JSONResponse, Response

from cqrskit import CommandBus, ConflictError, Context, QueryBus
from cqrskit.events import create_event_tables
from cqrskit.fastapi import (
    OPERATION_ID_HEADER,
    context_dependency,
    from_container,
    install,
    payload,
    result_response,
)
from examples.users.auth import current_principal
from examples.users.container import Container
from examples.users.events import UserCreated
from examples.users.logs import configure_logging
from examples.users.messages import (
    BatchCreateUsers,
    CreateUser,
    DeleteUser,
    FindUsers,
    GetUser,
    GetUserStats,
    UpdateUser,
    UserRole,
)
from examples.users.models import UserRow, create_tables
from examples.users.passwords import PasswordHasher
from examples.users.settings import Settings

Commands = Annotated[CommandBus, Depends(from_container("command_bus"))]
Queries = Annotated[QueryBus, Depends(from_container("query_bus"))]
RequestContext = Annotated[Context, Depends(context_dependency(from_request=current_principal))]


async def prepare_database(container: Container) -> None:
    """Create the service's tables and, when events go through the outbox, cqrskit's event tables.

    The API processes and the worker all call it at start-up; they take turns (see `create_tables`).
    """
    settings: Settings = container.settings()
    database = container.database()

    async def event_tables() -> None:
        if settings.event_delivery == "outbox":
            await create_event_tables(database, settings.events_schema)

    await create_tables(database.engine, then=event_tables)


async def seed_demo_users(container: Container) -> None:
    """Create the users the demo tokens stand for, when they do not exist yet (demo only).

    Each one is announced with `UserCreated` like any other user, so the read model counts it.
    """
    settings: Settings = container.settings()
    database = container.database()
    hasher: PasswordHasher = container.hasher()
    events = container.events()
    for account in settings.tokens.values():
        now = datetime.now(UTC)
        role = UserRole.ADMIN if account.is_admin else UserRole.MEMBER
        try:
            async with database.transaction() as session:
                if await session.get(UserRow, account.user_id) is not None:
                    continue
                session.add(
                    UserRow(
                        id=account.user_id,
                        email=f"{account.username}@example.com",
                        username=account.username,
                        full_name=account.username.title(),
                        password_hash=await hasher.hash(f"demo-{account.username}"),
                        role=role.value,
                        is_active=True,
                        created_at=now,
                        updated_at=now,
                    )
                )
                await session.flush()  # a duplicate fails here, before the event is published
                await events.publish(UserCreated(account.user_id, role))  # delivered only if this commits
        except (IntegrityError, ConflictError):
            continue  # another worker seeded it first


def create_app(container: Container | None = None) -> FastAPI:
    """Return the FastAPI app serving `container` (a new `Container` from the environment by default)."""
    the_container = container if container is not None else Container()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = the_container.settings()
        if settings.configure_logging:
            configure_logging(settings)
        try:
            # Build the buses first: a wiring mistake stops start-up before anything touches the database.
            the_container.command_bus()
            the_container.query_bus()
            await prepare_database(the_container)
            if settings.seed_demo_users:
                await seed_demo_users(the_container)
            app.state.container = the_container
            yield
        finally:
            await the_container.cache().close()
            await the_container.database().dispose()

    app = install(FastAPI(title="Users", lifespan=lifespan))
    app.state.container = the_container
    max_bytes = the_container.settings().max_body_bytes
    add_routes(app, max_bytes)
    return app


def add_routes(app: FastAPI, max_bytes: int) -> None:
    """Declare the endpoints: one message per endpoint, the Result rendered by `result_response`."""
    create_body = Annotated[CreateUser, Depends(payload(CreateUser, max_bytes=max_bytes))]
    update_body = Annotated[
        UpdateUser, Depends(payload(UpdateUser, path_params=["user_id"], max_bytes=max_bytes))
    ]
    batch_body = Annotated[BatchCreateUsers, Depends(payload(BatchCreateUsers, max_bytes=max_bytes))]

    @app.post("/users", status_code=201)
    async def create_user(command: create_body, bus: Commands, context: RequestContext) -> Response:
        result = await bus.execute(command, context)
        if result.is_failure:
            return result_response(result)
        return result_response(
            result, created=True, body={"id": str(result.data)}, headers={"Location": f"/users/{result.data}"}
        )

    @app.post("/users/batch", status_code=201)
    async def batch_create_users(command: batch_body, bus: Commands, context: RequestContext) -> Response:
        result = await bus.execute(command, context)
        body = {"ids": [str(user_id) for user_id in result.data]} if result.is_success else None
        return result_response(result, created=True, body=body)

    @app.get("/users/stats")
    async def user_stats(bus: Queries, context: RequestContext) -> Response:
        return result_response(await bus.execute(GetUserStats(), context))

    @app.get("/users/{user_id}")
    async def get_user(
        user_id: UUID, bus: Queries, context: RequestContext, include_inactive: bool = False
    ) -> Response:
        return result_response(await bus.execute(GetUser(user_id, include_inactive), context))

    @app.get("/users")
    async def find_users(
        bus: Queries,
        context: RequestContext,
        email_contains: str | None = None,
        role: UserRole | None = None,
        is_active: bool | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> Response:
        query = FindUsers(email_contains, role, is_active, page, page_size)
        return result_response(await bus.execute(query, context))

    @app.patch("/users/{user_id}")
    async def update_user(command: update_body, bus: Commands, context: RequestContext) -> Response:
        result = await bus.execute(command, context)
        body = {"id": str(command.user_id), "updated": list(command.changed_fields())}
        return result_response(result, body=body if result.is_success else None)

    @app.delete("/users/{user_id}", status_code=204)
    async def delete_user(user_id: UUID, bus: Commands, context: RequestContext) -> Response:
        result = await bus.execute(DeleteUser(user_id), context)
        if result.is_failure:
            return result_response(result)
        return Response(status_code=204, headers={OPERATION_ID_HEADER: result.operation_id or ""})

    @app.get("/healthz", include_in_schema=False)
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})
