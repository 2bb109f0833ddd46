"""The tables: the service owns them (cqrskit's outbox and inbox come from `cqrskit.events`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

from sqlalchemy import Boolean, DateTime, Integer, String, Uuid, func, insert, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The declarative base of the service's tables."""


class UserRow(Base):
    """One user. Emails are stored lower-case, so the unique index is case-insensitive."""

    __tablename__ = "users"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    username: Mapped[str] = mapped_column(String(50), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(400))
    role: Mapped[str] = mapped_column(String(20), index=True)
    is_active: Mapped[bool] = mapped_column(Boolean, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UserStatsRow(Base):
    """One counter of the ``user_stats`` read model: ``active``, ``inactive``, ``role:<role>``.

    Only the `UserStatsProjection` writes it, from the user events; `GetUserStats` reads it. It is
    denormalised on purpose: a read is a handful of rows, whatever the number of users.
    """

    __tablename__ = "user_stats"

    counter: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


_CREATE_TABLES_LOCK = 0x75736572  # any constant: the advisory lock several processes starting at once share


async def create_tables(engine: AsyncEngine, *, then: Callable[[], Awaitable[None]] | None = None) -> None:
    """Create the tables that do not exist yet (a real service would run migrations instead).

    Several processes may start at once (uvicorn workers, the events worker): on PostgreSQL they take
    turns under an advisory lock, so that two of them never both decide a table is missing. `then`
    runs under the same lock (the service passes the creation of cqrskit's event tables). A
    ``user_stats`` table created here, next to users that already exist (a database from before the
    read model), is filled from them once.
    """
    postgres = engine.dialect.name == "postgresql"
    async with engine.connect() as guard:
        if postgres:
            await guard.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _CREATE_TABLES_LOCK})
            await guard.commit()  # the lock is the session's: it outlives this transaction
        try:
            async with engine.begin() as connection:
                had_stats = await connection.run_sync(
                    lambda sync: inspect(sync).has_table(UserStatsRow.__tablename__)
                )
                await connection.run_sync(Base.metadata.create_all, checkfirst=True)
                if not had_stats:
                    await _fill_user_stats(connection)
            if then is not None:
                await then()
        finally:
            if postgres:
                await guard.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _CREATE_TABLES_LOCK})
                await guard.commit()


async def _fill_user_stats(connection: AsyncConnection) -> None:
    counts = await connection.execute(
        select(UserRow.role, UserRow.is_active, func.count()).group_by(UserRow.role, UserRow.is_active)
    )
    counters: dict[str, int] = {}
    for role, is_active, count in counts:
        activity = "active" if is_active else "inactive"
        counters[activity] = counters.get(activity, 0) + count
        counters[f"role:{role}"] = counters.get(f"role:{role}", 0) + count
    if counters:
        await connection.execute(
            insert(UserStatsRow),
            [{"counter": name, "value": value} for name, value in sorted(counters.items())],
        )
