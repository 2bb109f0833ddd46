"""One handler per message: plain classes whose dependencies come in through ``__init__``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

from cqrskit import (
    AffectedEntity,
    ConflictError,
    Context,
    NotFoundError,
    Page,
    PermissionDeniedError,
    Result,
)
from cqrskit.events import EventPublisher
from examples.users.events import UserCreated, UserDeleted, UserUpdated
from examples.users.messages import (
    BatchCreateUsers,
    CreateUser,
    DeleteUser,
    ExportUsers,
    FindUsers,
    GetUser,
    GetUserStats,
    NewUser,
    UpdateUser,
    UserDto,
    UserRole,
    UserStats,
)
from examples.users.models import UserRow
from examples.users.passwords import PasswordHasher
from examples.users.repositories import UserReadRepository, UserRepository

USER = "user"
"""The entity kind commands report and cached queries are tagged with."""


async def _new_row(user: NewUser | CreateUser, hasher: PasswordHasher, now: datetime) -> UserRow:
    return UserRow(
        id=uuid4(),
        email=user.email.lower(),
        username=user.username,
        full_name=user.full_name,
        password_hash=await hasher.hash(user.password),
        role=user.role.value,
        is_active=True,
        created_at=now,
        updated_at=now,
    )


def _created(row: UserRow) -> UserCreated:
    return UserCreated(row.id, UserRole(row.role), row.is_active)


class CreateUserHandler:
    """Registers one user, refusing an email or username that is taken; publishes `UserCreated`."""

    def __init__(self, users: UserRepository, hasher: PasswordHasher, events: EventPublisher) -> None:
        self.users = users
        self.hasher = hasher
        self.events = events

    async def handle(self, command: CreateUser, context: Context) -> Result[UUID]:
        """Hash the password off the loop, check for duplicates, insert the row."""
        # Hash before the first statement: the transaction begins (on SQLite, takes the write lock)
        # at the first statement, so the slow hash never runs while other writers wait.
        row = await _new_row(command, self.hasher, datetime.now(UTC))
        taken = await self.users.taken(command.email.lower(), command.username)
        if taken:
            raise ConflictError(f"{' and '.join(taken)} already in use")
        await self.users.add_all([row])
        await self.events.publish(_created(row))
        return Result.success(row.id, affected_entities=[AffectedEntity(USER, str(row.id), "created")])


class UpdateUserHandler:
    """Changes a user's fields (a role or activity only for an admin); publishes `UserUpdated`."""

    def __init__(self, users: UserRepository, events: EventPublisher) -> None:
        self.users = users
        self.events = events

    async def handle(self, command: UpdateUser, context: Context) -> Result[None]:
        """Load the user, check who may change what, apply the changes."""
        row = await self.users.get(command.user_id)
        if row is None:
            raise NotFoundError(f"no user {command.user_id}")
        is_admin = context.principal is not None and context.principal.is_admin
        if (command.role is not None or command.is_active is not None) and not is_admin:
            raise PermissionDeniedError("only an admin may change a role or is_active")
        if command.email is not None:
            email = command.email.lower()
            if await self.users.taken(email, None, except_id=row.id):
                raise ConflictError("email already in use")
            row.email = email
        previous_role, was_active = UserRole(row.role), row.is_active
        if command.full_name is not None:
            row.full_name = command.full_name
        if command.role is not None:
            row.role = command.role.value
        if command.is_active is not None:
            row.is_active = command.is_active
        row.updated_at = datetime.now(UTC)
        await self.users.save()
        await self.events.publish(
            UserUpdated(
                row.id, command.changed_fields(), UserRole(row.role), row.is_active, previous_role, was_active
            )
        )
        changed = AffectedEntity(USER, str(row.id), "updated", command.changed_fields())
        return Result.success(None, affected_entities=[changed])


class DeleteUserHandler:
    """Deletes a user for good; publishes `UserDeleted`."""

    def __init__(self, users: UserRepository, events: EventPublisher) -> None:
        self.users = users
        self.events = events

    async def handle(self, command: DeleteUser, context: Context) -> Result[None]:
        """Delete the row, or report that there was none."""
        deleted = await self.users.delete(command.user_id)
        if deleted is None:
            raise NotFoundError(f"no user {command.user_id}")
        role, was_active = deleted
        await self.events.publish(UserDeleted(command.user_id, role, was_active))
        return Result.success(None, affected_entities=[AffectedEntity(USER, str(command.user_id), "deleted")])


class BatchCreateUsersHandler:
    """Registers many users in one transaction, a chunk at a time; publishes one `UserCreated` each."""

    def __init__(
        self, users: UserRepository, hasher: PasswordHasher, events: EventPublisher, chunk_size: int = 10
    ) -> None:
        self.users = users
        self.hasher = hasher
        self.events = events
        self.chunk_size = chunk_size

    async def handle(self, command: BatchCreateUsers, context: Context) -> Result[tuple[UUID, ...]]:
        """Refuse the batch when any email or username is taken, else insert every user."""
        taken = await self.users.taken_by_any(
            [user.email.lower() for user in command.users], [user.username for user in command.users]
        )
        if taken:
            raise ConflictError(f"already in use: {', '.join(taken)}")
        now = datetime.now(UTC)
        ids: list[UUID] = []
        for start in range(0, len(command.users), self.chunk_size):
            chunk = command.users[start : start + self.chunk_size]
            # Hash a chunk in parallel worker threads, then insert it: a bounded amount of work at once.
            rows = await asyncio.gather(*(_new_row(user, self.hasher, now) for user in chunk))
            await self.users.add_all(rows)
            for row in rows:
                await self.events.publish(_created(row))
            ids.extend(row.id for row in rows)
        return Result.success(
            tuple(ids), affected_entities=[AffectedEntity(USER, str(user_id), "created") for user_id in ids]
        )


class GetUserHandler:
    """Reads one user; an inactive one only when asked for."""

    def __init__(self, users: UserReadRepository) -> None:
        self.users = users

    async def handle(self, query: GetUser, context: Context) -> UserDto:
        """Return the user or raise NotFoundError."""
        user = await self.users.get(query.user_id)
        if user is None or (not user.is_active and not query.include_inactive):
            raise NotFoundError(f"no user {query.user_id}")
        return user


class FindUsersHandler:
    """Lists users one page at a time."""

    def __init__(self, users: UserReadRepository) -> None:
        self.users = users

    async def handle(self, query: FindUsers, context: Context) -> Page[UserDto]:
        """Return the requested page and the total count."""
        items, total = await self.users.find(query)
        return Page(items, total, query.page, query.page_size)


class ExportUsersHandler:
    """Streams every user: the consumer's pace sets the handler's."""

    def __init__(self, users: UserReadRepository) -> None:
        self.users = users

    async def handle(self, query: ExportUsers, context: Context) -> AsyncIterator[UserDto]:
        """Yield each user as the client reads it; stopping early releases the database cursor."""
        async for user in self.users.stream_all():
            yield user


class GetUserStatsHandler:
    """Reads the ``user_stats`` read model, which the `UserStatsProjection` keeps up with the events."""

    def __init__(self, users: UserReadRepository) -> None:
        self.users = users

    async def handle(self, query: GetUserStats, context: Context) -> UserStats:
        """Return the counters as they are now: eventually consistent with the users table."""
        return await self.users.stats()
