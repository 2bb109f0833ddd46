"""Turning a message into loggable fields, with every sensitive field's value replaced.

A field is sensitive when its attrs (or dataclass) metadata says so::

    @attrs.frozen
    class Register(Command[str]):
        email: str
        password: str = attrs.field(metadata={"sensitive": True}, repr=False)

This module is the one place that decides what Logging, Audit and Tracing may show of a message. What
each type's fields are, and which of them are sensitive, is worked out once per type and kept.
Values that are themselves attrs or dataclass instances (and lists, tuples, sets and dicts of them) are
redacted the same way, so a sensitive field nested in a value object does not leak through its repr.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import uuid
from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = ["REDACTED", "FieldPlan", "field_plan", "redacted_fields", "sensitive_fields"]

REDACTED: Final = "***"
"""What a sensitive field's value is replaced with."""

_MAX_DEPTH = 8
# Values of these types are shown as they are, without looking for fields in them.
_PLAIN: frozenset[type] = frozenset(
    {
        str,
        int,
        float,
        bool,
        bytes,
        type(None),
        uuid.UUID,
        decimal.Decimal,
        dt.datetime,
        dt.date,
        dt.time,
        dt.timedelta,
    }
)


@attrs.frozen
class FieldPlan:
    """One type's fields, in declaration order, each with whether it is sensitive."""

    fields: tuple[tuple[str, bool], ...]

    @property
    def sensitive(self) -> tuple[str, ...]:
        """The names of the sensitive fields."""
        return tuple(name for name, hidden in self.fields if hidden)


_NO_PLAN = FieldPlan(())
# Per type: its plan, or None when the type is no attrs class or dataclass. Types live as long as the
# program, so a plain dict (faster to look up than a WeakKeyDictionary) is the right store.
_plans: dict[type, FieldPlan | None] = {}


def _is_sensitive(metadata: Mapping[Any, Any]) -> bool:
    return bool(metadata.get("sensitive", False))


def _build_plan(cls: type) -> FieldPlan | None:
    if attrs.has(cls):
        return FieldPlan(tuple((f.name, _is_sensitive(f.metadata)) for f in attrs.fields(cls)))
    if dataclasses.is_dataclass(cls):
        return FieldPlan(tuple((f.name, _is_sensitive(f.metadata)) for f in dataclasses.fields(cls)))
    return None


def _plan_or_none(cls: type) -> FieldPlan | None:
    try:
        return _plans[cls]
    except KeyError:
        plan = _plans[cls] = _build_plan(cls)
        return plan


def field_plan(message_type: type) -> FieldPlan:
    """Return `message_type`'s fields and which are sensitive (empty for a type without fields)."""
    plan = _plan_or_none(message_type)
    return _NO_PLAN if plan is None else plan


def sensitive_fields(message_type: type) -> tuple[str, ...]:
    """Return the names of `message_type`'s sensitive fields."""
    return field_plan(message_type).sensitive


def redacted_fields(message: object) -> dict[str, Any]:
    """Return `message`'s fields as a dict, each sensitive one's value replaced by ``"***"``.

    A message that is neither an attrs class nor a dataclass gives an empty dict: without declared
    fields nothing says which of its attributes are safe to show.
    """
    plan = _plan_or_none(type(message))
    if plan is None:
        return {}
    return _fields_of(message, plan, 0)


def _fields_of(value: object, plan: FieldPlan, depth: int) -> dict[str, Any]:
    return {
        name: REDACTED if hidden else _redact(getattr(value, name, None), depth + 1)
        for name, hidden in plan.fields
    }


def _redact(value: Any, depth: int) -> Any:
    cls = type(value)
    if cls in _PLAIN or isinstance(value, enum.Enum):
        return value
    if depth >= _MAX_DEPTH:
        return f"<{cls.__qualname__}>"
    plan = _plan_or_none(cls)
    if plan is not None:
        return _fields_of(value, plan, depth)
    if isinstance(value, Mapping):
        return {key: _redact(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(item, depth + 1) for item in value]
    return value
