"""The service's commands, queries and the values they return."""

from __future__ import annotations

import enum
import re
from datetime import datetime
from uuid import UUID

import attrs

from cqrskit import Command, Page, Query, StreamQuery

MAX_BATCH = 100
MAX_PAGE = 100_000  # deeper than anyone pages by hand; keeps the row offset far inside 64 bits
MAX_PAGE_SIZE = 100
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,50}")

# What the HTTP API's OpenAPI document says about each field ("json_schema" metadata, read by
# cqrskit.fastapi). The checks themselves are in validate(), which the Validation behaviour runs.
EMAIL = {"json_schema": {"format": "email", "maxLength": 254}}
USERNAME = {"json_schema": {"pattern": f"^{_USERNAME.pattern}$"}}
PASSWORD = {"sensitive": True, "json_schema": {"minLength": 8, "maxLength": 128, "writeOnly": True}}
FULL_NAME = {"json_schema": {"maxLength": 200, "pattern": r"\S"}}


class UserRole(enum.StrEnum):
    """What a user is in the service (not what the caller may do: that is the principal's business)."""

    ADMIN = "admin"
    MEMBER = "member"
    GUEST = "guest"


def _email_error(email: str) -> str | None:
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        return "must be an email address"
    return None


def _full_name_error(full_name: str) -> str | None:
    if not full_name.strip():
        return "must not be blank"
    if len(full_name) > 200:
        return "must be at most 200 characters"
    return None


def _new_user_errors(email: str, username: str, password: str, full_name: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    if (error := _email_error(email)) is not None:
        errors["email"] = error
    if not _USERNAME.fullmatch(username):
        errors["username"] = "must be 3 to 50 letters, digits, '.', '_' or '-'"
    if not 8 <= len(password) <= 128:
        errors["password"] = "must be 8 to 128 characters"
    if (error := _full_name_error(full_name)) is not None:
        errors["full_name"] = error
    return errors


@attrs.frozen
class NewUser:
    """One user of a `BatchCreateUsers` command."""

    email: str = attrs.field(metadata=EMAIL)
    username: str = attrs.field(metadata=USERNAME)
    password: str = attrs.field(repr=False, metadata=PASSWORD)
    full_name: str = attrs.field(metadata=FULL_NAME)
    role: UserRole = UserRole.MEMBER


@attrs.frozen
class CreateUser(Command[UUID]):
    """Register a user; returns the new user's id."""

    email: str = attrs.field(metadata=EMAIL)
    username: str = attrs.field(metadata=USERNAME)
    password: str = attrs.field(repr=False, metadata=PASSWORD)
    full_name: str = attrs.field(metadata=FULL_NAME)
    role: UserRole = UserRole.MEMBER

    def validate(self) -> dict[str, str]:
        """Check the address, the username, the password length and the name."""
        return _new_user_errors(self.email, self.username, self.password, self.full_name)


@attrs.frozen
class UpdateUser(Command[None]):
    """Change some of a user's fields; a field left at None keeps its value."""

    user_id: UUID
    email: str | None = attrs.field(default=None, metadata=EMAIL)
    full_name: str | None = attrs.field(default=None, metadata=FULL_NAME)
    role: UserRole | None = None
    is_active: bool | None = None

    def validate(self) -> dict[str, str]:
        """Check the fields that are given, and that at least one is."""
        errors: dict[str, str] = {}
        if self.email is not None and (error := _email_error(self.email)) is not None:
            errors["email"] = error
        if self.full_name is not None and (error := _full_name_error(self.full_name)) is not None:
            errors["full_name"] = error
        if all(value is None for value in (self.email, self.full_name, self.role, self.is_active)):
            errors["detail"] = "give at least one of email, full_name, role, is_active"
        return errors

    def changed_fields(self) -> tuple[str, ...]:
        """The names of the fields this command changes."""
        return tuple(
            name for name in ("email", "full_name", "role", "is_active") if getattr(self, name) is not None
        )


@attrs.frozen
class DeleteUser(Command[None]):
    """Delete a user for good."""

    user_id: UUID


@attrs.frozen
class BatchCreateUsers(Command[tuple[UUID, ...]]):
    """Register up to 100 users at once, all or none; returns their ids in order."""

    users: tuple[NewUser, ...] = attrs.field(metadata={"json_schema": {"minItems": 1, "maxItems": MAX_BATCH}})

    def validate(self) -> dict[str, str]:
        """Check the batch size and every user, naming each bad field by its position."""
        if not self.users:
            return {"users": "give at least one user"}
        if len(self.users) > MAX_BATCH:
            return {"users": f"at most {MAX_BATCH} users per batch"}
        errors: dict[str, str] = {}
        for index, user in enumerate(self.users):
            for field, error in _new_user_errors(
                user.email, user.username, user.password, user.full_name
            ).items():
                errors[f"users[{index}].{field}"] = error
        emails = [user.email.lower() for user in self.users]
        if len(set(emails)) != len(emails):
            errors.setdefault("users", "two users share an email address")
        return errors


@attrs.frozen
class UserDto:
    """A user as readers see it: never the password or its hash."""

    id: UUID
    email: str
    username: str
    full_name: str
    role: UserRole
    is_active: bool
    created_at: datetime
    updated_at: datetime


@attrs.frozen
class GetUser(Query[UserDto]):
    """One user by id; an inactive one only with `include_inactive`."""

    user_id: UUID
    include_inactive: bool = False


@attrs.frozen
class FindUsers(Query[Page[UserDto]]):
    """Users matching every filter given, by username, one page at a time."""

    email_contains: str | None = attrs.field(default=None, metadata={"json_schema": {"maxLength": 254}})
    role: UserRole | None = None
    is_active: bool | None = None
    page: int = attrs.field(default=1, metadata={"json_schema": {"minimum": 1, "maximum": MAX_PAGE}})
    page_size: int = attrs.field(
        default=20, metadata={"json_schema": {"minimum": 1, "maximum": MAX_PAGE_SIZE}}
    )

    def validate(self) -> dict[str, str]:
        """Check the page, the page size and the search text (which must hold no NUL)."""
        errors: dict[str, str] = {}
        if not 1 <= self.page <= MAX_PAGE:
            errors["page"] = f"must be between 1 and {MAX_PAGE}"
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            errors["page_size"] = f"must be between 1 and {MAX_PAGE_SIZE}"
        if self.email_contains is not None:
            if len(self.email_contains) > 254:
                errors["email_contains"] = "must be at most 254 characters"
            elif "\x00" in self.email_contains:
                errors["email_contains"] = "must not contain NUL"
        return errors


@attrs.frozen
class UserStats:
    """Counts over every user."""

    total: int
    active: int
    inactive: int
    by_role: dict[str, int]


@attrs.frozen
class ExportUsers(StreamQuery[UserDto]):
    """Every user, by username, streamed one at a time (NDJSON, or Server-Sent Events); admins only."""


@attrs.frozen
class GetUserStats(Query[UserStats]):
    """How many users there are, active and by role."""


@attrs.frozen
class ApplyUserStatsChange(Command[None]):
    """Move the ``user_stats`` counters by the amounts given, ``(counter, delta)`` pairs.

    Internal: the `UserStatsProjection` sends it on the stats bus for each user event; no endpoint does.
    Counters are ``"active"``, ``"inactive"`` and ``"role:<role>"``.
    """

    changes: tuple[tuple[str, int], ...]
