"""The tables: the service owns them (cqrskit creates none of its own here)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import Boolean, DateTime, String, Uuid, text
from sqlalchemy.ext.asyncio import AsyncEngine
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


_CREATE_TABLES_LOCK = 0x75736572  # any constant: the advisory lock several workers starting at once share


async def create_tables(engine: AsyncEngine) -> None:
    """Create the tables that do not exist yet (a real service would run migrations instead).

    Several workers may start at once: on PostgreSQL they take turns under an advisory lock, so that
    two of them never both decide a table is missing.
    """
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_TABLES_LOCK})
        await connection.run_sync(Base.metadata.create_all, checkfirst=True)
