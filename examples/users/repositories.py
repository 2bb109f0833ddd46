"""Reading and writing users with SQLAlchemy, through cqrskit's `Database`.

The write side uses ``database.session``: the session of the transaction the `Transaction` behaviour
opened for the current command. The read side opens its own ``database.read_session()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from cqrskit.sqlalchemy import Database
from examples.users.messages import FindUsers, UserDto, UserRole, UserStats
from examples.users.models import UserRow, UserStatsRow


def _aware(moment: datetime) -> datetime:
    # SQLite keeps no time zone; every time this service writes is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def to_dto(row: UserRow) -> UserDto:
    """Return the reader's view of a row: everything but the password hash."""
    return UserDto(
        id=row.id,
        email=row.email,
        username=row.username,
        full_name=row.full_name,
        role=UserRole(row.role),
        is_active=row.is_active,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )


class UserRepository:
    """The write side: used by command handlers, inside the command's transaction."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, user_id: UUID) -> UserRow | None:
        """Return the user with `user_id`, locked until the transaction ends (FOR UPDATE), or None.

        The lock makes concurrent updates of one user take turns, so the role and activity each one
        reports as "before" in its `UserUpdated` event are the ones it really changed.
        """
        return await self.database.session.get(UserRow, user_id, with_for_update=True)

    async def taken(
        self, email: str | None, username: str | None, *, except_id: UUID | None = None
    ) -> list[str]:
        """Return which of `email` and `username` another user already has (one query)."""
        conditions = []
        if email is not None:
            conditions.append(UserRow.email == email)
        if username is not None:
            conditions.append(UserRow.username == username)
        if not conditions:
            return []
        statement = select(UserRow.email, UserRow.username).where(or_(*conditions))
        if except_id is not None:
            statement = statement.where(UserRow.id != except_id)
        taken: set[str] = set()
        for found_email, found_username in await self.database.session.execute(statement.limit(2)):
            if found_email == email:
                taken.add("email")
            if found_username == username:
                taken.add("username")
        return sorted(taken)

    async def taken_by_any(self, emails: Sequence[str], usernames: Sequence[str]) -> list[str]:
        """Return the emails and usernames of `emails` and `usernames` that users already have."""
        session = self.database.session
        found = await session.execute(
            select(UserRow.email, UserRow.username).where(
                UserRow.email.in_(emails) | UserRow.username.in_(usernames)
            )
        )
        wanted = set(emails) | set(usernames)
        return sorted({value for row in found for value in row if value in wanted})

    async def add_all(self, rows: Sequence[UserRow]) -> None:
        """Insert `rows` and send them to the database now (so a duplicate fails here)."""
        session = self.database.session
        session.add_all(rows)
        await session.flush()

    async def save(self) -> None:
        """Send pending changes to the database now."""
        await self.database.session.flush()

    async def delete(self, user_id: UUID) -> tuple[UserRole, bool] | None:
        """Delete the user; return the role and activity it had, or None when there was none."""
        result = await self.database.session.execute(
            delete(UserRow).where(UserRow.id == user_id).returning(UserRow.role, UserRow.is_active)
        )
        row = result.first()
        return None if row is None else (UserRole(row.role), bool(row.is_active))


class UserStatsRepository:
    """The write side of the ``user_stats`` read model: used by the projection's command handler."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def apply(self, changes: Sequence[tuple[str, int]]) -> None:
        """Add each delta to its counter (creating it at 0), in the current transaction.

        One upsert statement, counters in name order: two transactions moving the same counters lock
        them in the same order, so they queue rather than deadlock.
        """
        if not changes:
            return
        dialect: Any = postgresql if self.database.dialect_name == "postgresql" else sqlite
        rows = [{"counter": name, "value": delta} for name, delta in sorted(changes)]
        statement = dialect.insert(UserStatsRow).values(rows)
        statement = statement.on_conflict_do_update(
            index_elements=[UserStatsRow.counter],
            set_={"value": UserStatsRow.value + statement.excluded.value},
        )
        await self.database.session.execute(statement)


class UserReadRepository:
    """The read side: used by query handlers, on the read engine."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, user_id: UUID) -> UserDto | None:
        """Return the user with `user_id`, or None."""
        async with self.database.read_session() as session:
            row = await session.get(UserRow, user_id)
            return None if row is None else to_dto(row)

    async def find(self, query: FindUsers) -> tuple[list[UserDto], int]:
        """Return one page of the users matching `query`, and how many match in all."""
        conditions = []
        if query.email_contains:
            conditions.append(UserRow.email.contains(query.email_contains.lower(), autoescape=True))
        if query.role is not None:
            conditions.append(UserRow.role == query.role.value)
        if query.is_active is not None:
            conditions.append(UserRow.is_active == query.is_active)
        async with self.database.read_session() as session:
            total = await session.scalar(select(func.count()).select_from(UserRow).where(*conditions))
            rows = await session.scalars(
                select(UserRow)
                .where(*conditions)
                .order_by(UserRow.username)
                .offset((query.page - 1) * query.page_size)
                .limit(query.page_size)
            )
            return [to_dto(row) for row in rows], int(total or 0)

    async def stream_all(self, batch: int = 1000) -> AsyncIterator[UserDto]:
        """Yield every user by username, read through a server-side cursor `batch` rows at a time.

        The session (and, on PostgreSQL, its transaction and cursor) lives as long as the generator:
        closing it early, as a client that goes away does, releases both at once.
        """
        async with self.database.read_session() as session:
            rows = await session.stream_scalars(
                select(UserRow).order_by(UserRow.username).execution_options(yield_per=batch)
            )
            async for row in rows:
                yield to_dto(row)

    async def stats(self) -> UserStats:
        """Read the ``user_stats`` read model: the counters the projection keeps, not a count of users."""
        async with self.database.read_session() as session:
            rows = await session.execute(select(UserStatsRow.counter, UserStatsRow.value))
            counters: dict[str, int] = {row.counter: row.value for row in rows}
        active, inactive = counters.pop("active", 0), counters.pop("inactive", 0)
        by_role = {
            name.removeprefix("role:"): value
            for name, value in sorted(counters.items())
            if name.startswith("role:") and value
        }
        return UserStats(total=active + inactive, active=active, inactive=inactive, by_role=by_role)
