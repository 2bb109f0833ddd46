"""The onboarding example's commands and events."""

from __future__ import annotations

import attrs

from cqrskit import Command
from cqrskit.events import Event


@attrs.frozen
class CreateUser(Command[None]):
    user_id: str
    email: str


@attrs.frozen
class ActivateUser(Command[None]):
    user_id: str


@attrs.frozen
class DisableAccount(Command[None]):
    user_id: str


@attrs.frozen
class CreateWelcomeTask(Command[None]):
    task_id: str
    user_id: str


@attrs.frozen
class CancelWelcomeTask(Command[None]):
    task_id: str


@attrs.frozen
class ActivationDeadline(Command[None]):
    """Sent by the onboarding process to itself: the user had the whole delay to activate."""

    user_id: str


@attrs.frozen
class UserCreated(Event):
    user_id: str

    def ordering_key(self) -> str:
        return f"user:{self.user_id}"


@attrs.frozen
class UserActivated(Event):
    user_id: str

    def ordering_key(self) -> str:
        return f"user:{self.user_id}"
