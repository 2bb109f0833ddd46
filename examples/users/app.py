"""The HTTP API: the seed template's user endpoints, each one message on a bus.

Build it with `create_app` (uvicorn: ``examples.users.app:create_app --factory``). The lifespan creates
the tables (cqrskit's outbox and inbox too, with a broker), seeds the demo accounts and builds the
buses, so a wiring mistake stops start-up.
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations at runtime, and
# some name aliases local to add_routes.

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from sqlalchemy.exc import IntegrityError
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles

from cqrskit import CommandBus, ConflictError, Context, QueryBus
from cqrskit.events import create_event_tables
from cqrskit.fastapi import (
    context_dependency,
    execute_then_query,
    from_container,
    from_url,
    install,
    payload,
    stream_response,
)
from examples.users.auth import current_principal
from examples.users.container import Container
from examples.users.events import UserCreated
from examples.users.logs import configure_logging
from examples.users.messages import (
    BatchCreateUsers,
    CreateUser,
    DeleteUser,
    ExportUsers,
    FindUsers,
    GetUser,
    GetUserStats,
    UpdateUser,
    UserRole,
)
from examples.users.models import UserRow, create_tables
from examples.users.passwords import PasswordHasher
from examples.users.settings import Settings
from examples.users.telemetry import configure_tracing, metrics_text

command_bus = from_container("command_bus")
query_bus = from_container("query_bus")
request_context = context_dependency(from_request=current_principal)
Commands = Annotated[CommandBus, Depends(command_bus)]
Queries = Annotated[QueryBus, Depends(query_bus)]
RequestContext = Annotated[Context, Depends(request_context)]


async def prepare_database(container: Container) -> None:
    """Create the service's tables, cqrskit's event tables and its cache invalidation journal.

    The API processes and the worker all call it at start-up; they take turns (see `create_tables`).
    """
    settings: Settings = container.settings()
    database = container.database()

    async def event_tables() -> None:
        await create_event_tables(database, settings.events_schema)
        await container.journal().create_tables()

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


@asynccontextmanager
async def background_tasks(container: Container) -> AsyncIterator[None]:
    """Run what every API process runs beside its requests, until the block ends.

    - `CacheInvalidation.run`: applies the cache invalidations the cache could not take at once.
    - Embedded (no broker): the `Consumer` on the `LocalTransport`, which delivers the events the
      commands wrote to the outbox, right after each commit, to the ``user_stats`` projection.
    """
    invalidation = container.invalidation()
    tasks = [asyncio.create_task(invalidation.run(), name="invalidations")]
    consumer = container.consumer() if container.settings().event_delivery == "embedded" else None
    if consumer is not None:
        tasks.append(asyncio.create_task(consumer.run(), name="events"))
        await consumer.started()
    try:
        yield
    finally:
        invalidation.stop()
        if consumer is not None:
            await consumer.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


def create_app(container: Container | None = None) -> FastAPI:
    """Return the FastAPI app serving `container` (a new `Container` from the environment by default)."""
    the_container = container if container is not None else Container()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = the_container.settings()
        if settings.configure_logging:
            configure_logging(settings)
        configure_tracing()
        try:
            # Build the buses first: a wiring mistake stops start-up before anything touches the database.
            the_container.command_bus()
            the_container.query_bus()
            await prepare_database(the_container)
            if settings.seed_demo_users:
                await seed_demo_users(the_container)
            app.state.container = the_container
            async with background_tasks(the_container):
                yield
        finally:
            await the_container.cache().close()
            await the_container.database().dispose()

    app = install(
        FastAPI(title="Users", lifespan=lifespan, docs_url=None),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
    )
    add_swagger_ui(app)
    app.state.container = the_container
    max_bytes = the_container.settings().max_body_bytes
    add_routes(app, max_bytes)
    return app


def add_swagger_ui(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs``, with its script and styles from this server when it can.

    They come from the ``fastapi-offline`` package (Swagger UI 5, which reads OpenAPI 3.1) when it is
    installed, so the page works without reaching a CDN; else from FastAPI's default CDN.
    """
    assets: dict[str, str] = {}
    try:
        static = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        static = None
    if static is not None and static.joinpath("swagger-ui-bundle.js").is_file():
        app.mount("/static/swagger-ui", StaticFiles(directory=str(static)), name="swagger-ui")
        assets = {
            "swagger_js_url": "/static/swagger-ui/swagger-ui-bundle.js",
            "swagger_css_url": "/static/swagger-ui/swagger-ui.css",
        }

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Users: Swagger UI", **assets)


def add_routes(app: FastAPI, max_bytes: int) -> None:
    """Declare the endpoints: one message per endpoint, read by `payload` or `from_url`.

    Those readers are also what `install` documents: each endpoint's body, parameters and responses
    in ``/openapi.json`` come from the message's fields and its handler's result type.
    """
    # Each reader knows its bus and how to build the request's Context, so `execute` dispatches without
    # FastAPI resolving two more dependencies per request (see docs/benchmarks/http.md).
    commands = {"bus": command_bus, "context": request_context}
    queries = {"bus": query_bus, "context": request_context}
    create = payload(CreateUser, response_envelope="id", max_bytes=max_bytes, **commands)
    batch = payload(BatchCreateUsers, response_envelope="ids", max_bytes=max_bytes, **commands)
    update = payload(UpdateUser, path_params=["user_id"], answers=GetUser, max_bytes=max_bytes)
    stats, read, find = (
        from_url(GetUserStats, **queries),
        from_url(GetUser, **queries),
        from_url(FindUsers, **queries),
    )
    delete = from_url(DeleteUser, **commands)

    @app.post("/users", status_code=201)
    async def create_user(command: Annotated[CreateUser, Depends(create)], request: Request) -> Response:
        result = await create.execute(command, request)
        location = {"Location": f"/users/{result.data}"} if result.is_success else None
        return create.respond(result, status=201, headers=location)

    @app.post("/users/batch", status_code=201)
    async def batch_create_users(
        command: Annotated[BatchCreateUsers, Depends(batch)], request: Request
    ) -> Response:
        return batch.respond(await batch.execute(command, request), status=201)

    @app.get("/users/stats")
    async def user_stats(query: Annotated[GetUserStats, Depends(stats)], request: Request) -> Response:
        return stats.respond(await stats.execute(query, request))

    export = from_url(ExportUsers)

    @app.get("/users/export")
    async def export_users(
        query: Annotated[ExportUsers, Depends(export)],
        bus: Queries,
        context: RequestContext,
        request: Request,
    ) -> Response:
        result = await bus.stream(query, context)
        return stream_response(result, accept=request.headers.get("accept"))

    @app.get("/users/{user_id}")
    async def get_user(query: Annotated[GetUser, Depends(read)], request: Request) -> Response:
        return read.respond(await read.execute(query, request))

    @app.get("/users")
    async def find_users(query: Annotated[FindUsers, Depends(find)], request: Request) -> Response:
        return find.respond(await find.execute(query, request))

    @app.patch("/users/{user_id}")
    async def update_user(
        command: Annotated[UpdateUser, Depends(update)],
        commands: Commands,
        queries: Queries,
        context: RequestContext,
    ) -> Response:
        # Answer with the user as it now is: the command, then GetUser (inactive users included).
        changed = GetUser(command.user_id, include_inactive=True)
        return update.respond(await execute_then_query(commands, command, queries, changed, context))

    @app.delete("/users/{user_id}", status_code=204)
    async def delete_user(command: Annotated[DeleteUser, Depends(delete)], request: Request) -> Response:
        return delete.respond(await delete.execute(command, request), status=204)

    @app.get("/healthz", include_in_schema=False)
    async def health() -> JSONResponse:
        # Liveness: the process answers. It checks nothing else, so a database outage never gets
        # every replica restarted at once; /readyz is where dependencies are checked.
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def ready(request: Request) -> JSONResponse:
        # Readiness: 503 naming what is down ("database", "cache"), never why (that is logged).
        report = await request.app.state.container.readiness().check()
        return JSONResponse(report.as_json(), status_code=200 if report.ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = metrics_text()
        return Response(body, media_type=content_type)
