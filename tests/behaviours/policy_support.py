"""Messages, handlers and helpers the policy-behaviour tests share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from cqrskit import Command, Context, OperationStatus, Query, Result


@attrs.frozen
class Register(Command[str]):
    """A sample command whose validate() checks three fields."""

    email: str
    password: str = attrs.field(metadata={"sensitive": True})
    age: int

    def validate(self) -> Mapping[str, str]:
        errors: dict[str, str] = {}
        if "@" not in self.email:
            errors["email"] = "must contain @"
        if len(self.password) < 8:
            errors["password"] = "must be at least 8 characters"  # noqa: S105 - an error text
        if self.age < 0:
            errors["age"] = "cannot be negative"
        return errors


@attrs.frozen
class Rename(Command[str]):
    """A command about one user, for resource-scoped permissions."""

    user_id: int
    name: str


@attrs.frozen
class Ping(Command[str]):
    """A command with no validation of its own."""

    text: str = "ping"


@attrs.frozen
class Sleep(Command[str]):
    """A command whose handler waits `seconds`, forever when None."""

    seconds: float | None = None


@attrs.frozen
class GetName(Query[str]):
    """A query about one user."""

    user_id: int


class EchoHandler:
    """Returns the message's repr and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, message: Any, context: Context) -> str:
        self.calls += 1
        return repr(message)


class FlakyHandler:
    """Raises each exception of `errors` in turn, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def handle(self, message: Any, context: Context) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def ok(data: object = "ok") -> Result[Any]:
    """A SUCCESS Result."""
    return Result.success(data)


class CallNextStub:
    """A fake call_next: runs `action` on each call and counts the calls."""

    def __init__(self, action: Callable[[], Awaitable[Result[Any]]] | None = None) -> None:
        self.calls = 0
        self.action = action

    async def __call__(self, message: Any, context: Context) -> Result[Any]:
        self.calls += 1
        if self.action is None:
            return ok()
        return await self.action()


CONTEXT = Context(operation_id="op-test")

__all__ = [
    "CONTEXT",
    "CallNextStub",
    "EchoHandler",
    "FlakyHandler",
    "GetName",
    "OperationStatus",
    "Ping",
    "Register",
    "Rename",
    "Sleep",
    "ok",
]
