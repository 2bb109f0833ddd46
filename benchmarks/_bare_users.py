"""The user service's two benchmarked endpoints written by hand, without cqrskit.

The same work as the example app does for ``GET /users/{id}`` (cached) and ``POST /users``: the same
bearer-token check and authorization rule, the same validation, a structlog event per request, the same
memory cache (aiocache) with a per-user entry and tag versions bumped on writes, the same scrypt hashing
in a worker thread, and the same SQLAlchemy reads and writes, the ``user_stats`` read model's update
after the commit included. Serve it with
``uvicorn benchmarks._bare_users:create_app --factory``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import structlog
from aiocache import SimpleMemoryCache
from examples.users.logs import configure_logging
from examples.users.messages import _new_user_errors
from examples.users.models import UserRow, UserStatsRow
from examples.users.passwords import PasswordHasher
from examples.users.repositories import to_dto
from examples.users.settings import Settings
from fastapi import FastAPI, Request
from sqlalchemy import select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from starlette.responses import JSONResponse, Response

_FIELDS = {"email", "username", "password", "full_name", "role"}
_ROLES = {"admin", "member", "guest"}


def _problem(status: int, detail: str, errors: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def create_app() -> FastAPI:  # noqa: PLR0915 - the whole hand-written app, on purpose in one place
    """Return the hand-written app, configured from the same ``USERS_*`` environment variables."""
    settings = Settings.from_environment()
    engine = create_async_engine(settings.database_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    cache = SimpleMemoryCache(namespace="bare:")
    hasher = PasswordHasher(settings.scrypt_cost)
    logger = structlog.get_logger("bare")
    write_lock = asyncio.Lock()  # SQLite takes one writer at a time; cqrskit's Database uses BEGIN IMMEDIATE

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.configure_logging:
            configure_logging(settings)
        from examples.users.app import prepare_database, seed_demo_users
        from examples.users.container import Container

        # The demo users are seeded through the example's own container, which records a UserCreated
        # for each in its outbox: the same tables as the example, so both apps start from one state.
        container = Container()
        try:
            await prepare_database(container)
            await seed_demo_users(container)
        finally:
            await container.database().dispose()
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    def principal(request: Request) -> tuple[str, bool] | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        account = settings.tokens.get(token) if scheme.lower() == "bearer" else None
        return None if account is None else (str(account.user_id), account.is_admin)

    @app.get("/users/{user_id}")
    async def get_user(user_id: UUID, request: Request) -> Response:
        caller = principal(request)
        if caller is None:
            return _problem(401, "unauthenticated")
        if not (caller[1] or caller[0] == str(user_id)):
            return _problem(403, "forbidden")
        operation_id = secrets.token_hex(8)
        version = await cache.get("tag:user:" + str(user_id)) or 0
        key = f"GetUser:{user_id}:False:{version}"
        cached = await cache.get(key)
        if cached is not None:
            logger.info("dispatch_succeeded", message_type="GetUser", operation_id=operation_id, cache="hit")
            return Response(cached, media_type="application/json", headers={"X-Cache": "hit"})
        async with sessions() as session:
            row = await session.get(UserRow, user_id)
            dto = None if row is None or not row.is_active else to_dto(row)
        if dto is None:
            return _problem(404, f"no user {user_id}")
        body = json.dumps(
            {
                "id": str(dto.id),
                "email": dto.email,
                "username": dto.username,
                "full_name": dto.full_name,
                "role": dto.role.value,
                "is_active": dto.is_active,
                "created_at": dto.created_at.isoformat(),
                "updated_at": dto.updated_at.isoformat(),
            }
        )
        await cache.set(key, body, ttl=300)
        logger.info("dispatch_succeeded", message_type="GetUser", operation_id=operation_id, cache="miss")
        return Response(body, media_type="application/json", headers={"X-Cache": "miss"})

    @app.post("/users", status_code=201)
    async def create_user(request: Request) -> Response:  # noqa: PLR0911 - one return per outcome
        caller = principal(request)
        if caller is None:
            return _problem(401, "unauthenticated")
        if not caller[1]:
            return _problem(403, "forbidden")
        try:
            data = json.loads(await request.body())
        except ValueError:
            return _problem(422, "malformed JSON", {"body": "malformed JSON"})
        if not isinstance(data, dict):
            return _problem(422, "invalid", {"body": "expected a JSON object"})
        errors = {key: "unknown field" for key in data if key not in _FIELDS}
        for key in ("email", "username", "password", "full_name"):
            if not isinstance(data.get(key), str):
                errors[key] = "expected a string"
        if data.get("role", "member") not in _ROLES:
            errors["role"] = "invalid role"
        if not errors:
            errors = _new_user_errors(data["email"], data["username"], data["password"], data["full_name"])
        if errors:
            return _problem(422, "some fields are invalid", errors)
        operation_id = secrets.token_hex(8)
        # Hash first, off the write lock, as the example's handler does (its transaction begins, and on
        # SQLite takes the write lock, at the first statement, after the hash).
        password_hash = await hasher.hash(data["password"])
        async with write_lock, sessions() as session, session.begin():
            taken = await session.execute(
                select(UserRow.id).where(
                    (UserRow.email == data["email"].lower()) | (UserRow.username == data["username"])
                )
            )
            if taken.first() is not None:
                return _problem(409, "already in use")
            now = datetime.now(UTC)
            row = UserRow(
                id=uuid4(),
                email=data["email"].lower(),
                username=data["username"],
                full_name=data["full_name"],
                password_hash=password_hash,
                role=data.get("role", "member"),
                is_active=True,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
        # The same read-model work as the example's in-process projection: after the commit, a second
        # transaction moves the user_stats counters, then the stats' cache tag is bumped.
        async with write_lock, sessions() as session, session.begin():
            counters = insert(UserStatsRow).values(
                [{"counter": "active", "value": 1}, {"counter": f"role:{row.role}", "value": 1}]
            )
            await session.execute(
                counters.on_conflict_do_update(
                    index_elements=[UserStatsRow.counter],
                    set_={"value": UserStatsRow.value + counters.excluded.value},
                )
            )
        # The same invalidation as CacheInvalidation: bump the versions of the tags the commands touched.
        for tag in (f"tag:user:{row.id}", "tag:user:*", "tag:user_stats:*"):
            await cache.set(tag, (await cache.get(tag) or 0) + 1)
        logger.info("dispatch_succeeded", message_type="CreateUser", operation_id=operation_id)
        return JSONResponse({"id": str(row.id)}, status_code=201, headers={"Location": f"/users/{row.id}"})

    @app.get("/healthz")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app
