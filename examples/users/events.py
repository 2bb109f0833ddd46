"""The service's domain events: what happened to a user, announced by the command handlers.

Each event carries what the ``user_stats`` projection needs to move its counters without reading the
``users`` table (the role and activity before and after), and no personal data: events are kept in
the outbox and travel through the broker. All three are ordered per user (`ordering_key`).
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

import attrs

from cqrskit.events import Event
from examples.users.messages import UserRole


@attrs.frozen
class UserCreated(Event):
    """A user was registered (by `CreateUser`, `BatchCreateUsers`, or the demo's seeding)."""

    user_id: UUID
    role: UserRole
    is_active: bool = True

    def ordering_key(self) -> str:
        """Events of one user stay in commit order."""
        return f"user:{self.user_id}"


@attrs.frozen
class UserUpdated(Event):
    """A user's fields changed: `fields` names them; role and activity are given before and after."""

    user_id: UUID
    fields: tuple[str, ...]
    role: UserRole
    is_active: bool
    previous_role: UserRole
    was_active: bool

    def ordering_key(self) -> str:
        """Events of one user stay in commit order."""
        return f"user:{self.user_id}"


@attrs.frozen
class UserDeleted(Event):
    """A user was deleted; `role` and `was_active` are what the user was at that moment."""

    user_id: UUID
    role: UserRole
    was_active: bool

    def ordering_key(self) -> str:
        """Events of one user stay in commit order."""
        return f"user:{self.user_id}"


UserEvent = UserCreated | UserUpdated | UserDeleted
"""Any of the service's user events."""

EVENT_TYPES: Mapping[str, type[Event]] = {
    "UserCreated": UserCreated,
    "UserUpdated": UserUpdated,
    "UserDeleted": UserDeleted,
}
"""The names events travel under on the broker, and their classes: the worker's `Consumer` mapping."""
