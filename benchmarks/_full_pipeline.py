"""The full in-memory pipeline the benchmarks share: one command, its handler, and the behaviours.

`benchmarks.dispatch` and `benchmarks.policy_behaviours` both time it, built here once so their rows
measure the same thing. Outermost first: Logging (its logger filtered at warning, so a successful
dispatch's info event is dropped, as in production), Timeout, Authorization, Validation, Retry. No
database, so no Transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs
import structlog

from cqrskit import Command, Context, Principal
from cqrskit.behaviours import Authorization, Logging, RequirePermissions, Retry, Timeout, Validation

__all__ = [
    "CONTEXT",
    "MESSAGE",
    "CreateUser",
    "CreateUserHandler",
    "full_pipeline",
    "warning_logger",
]


@attrs.frozen
class CreateUser(Command[str]):
    """A command with two fields to validate and one permission to check."""

    email: str
    name: str

    def validate(self) -> Mapping[str, str]:
        errors = {}
        if "@" not in self.email:
            errors["email"] = "must contain @"
        if not self.name:
            errors["name"] = "is required"
        return errors


class CreateUserHandler:
    """Returns the name: the handler does no work, so the table shows what cqrskit adds."""

    async def handle(self, command: CreateUser, context: Context) -> str:
        return command.name


MESSAGE = CreateUser("ada@example.org", "Ada")
CONTEXT = Context(principal=Principal("1", {"user:create"}))
"""A caller allowed to create users: every dispatch takes the success path."""


def warning_logger() -> Any:
    """A structlog logger filtered at warning, resolved now (not a lazy proxy), printing to stdout."""
    logger = structlog.wrap_logger(
        structlog.PrintLogger(), wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    ).bind()
    if logger.is_enabled_for(logging.INFO) or not logger.is_enabled_for(logging.WARNING):
        raise RuntimeError("the benchmark's logger must drop info and keep warnings")
    return logger


def full_pipeline(*, timeout: bool = True) -> list[object]:
    """Logging at warning, Timeout (unless `timeout` is False), Authorization, Validation, Retry."""
    behaviours: list[object] = [Logging(logger=warning_logger())]
    if timeout:
        behaviours.append(Timeout(30))
    behaviours += [Authorization({CreateUser: RequirePermissions("user:create")}), Validation(), Retry()]
    return behaviours
