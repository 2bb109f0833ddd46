"""Turning a JSON body into a message under strict rules, with every bad field named by its path."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    is_any_set,
    is_sequence,
    list_structure_factory,
)
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn

from cqrskit.errors import PayloadError, PayloadTooLargeError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "parse_json", "strict_converter", "structure"]

T = TypeVar("T")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""The body size `read_body` accepts unless told otherwise: 1 MiB."""

BODY = "body"
"""The field path that stands for the whole body."""


class _FieldError(ValueError):
    """A value of the wrong kind; its text is meant for the caller."""


def _structure_str(value: object, _: type) -> str:
    if type(value) is not str:
        raise _FieldError("expected a string")
    return value


def _structure_int(value: object, _: type) -> int:
    if type(value) is not int:
        raise _FieldError("expected an integer")
    return value


def _structure_float(value: object, _: type) -> float:
    if type(value) not in (int, float):
        raise _FieldError("expected a number")
    number = float(value)  # type: ignore[arg-type]  # checked just above
    if not math.isfinite(number):
        raise _FieldError("expected a finite number")
    return number


def _structure_bool(value: object, _: type) -> bool:
    if type(value) is not bool:
        raise _FieldError("expected true or false")
    return value


def _structure_uuid(value: object, _: type) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if type(value) is not str:
        raise _FieldError("expected a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _FieldError("expected a UUID such as 123e4567-e89b-12d3-a456-426614174000") from None


def _structure_datetime(value: object, _: type) -> dt.datetime:
    if type(value) is not str:
        raise _FieldError("expected an ISO 8601 date-time string")
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise _FieldError("expected an ISO 8601 date-time such as 2024-05-01T12:00:00+00:00") from None


def _structure_date(value: object, _: type) -> dt.date:
    if type(value) is not str:
        raise _FieldError("expected an ISO 8601 date string")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _FieldError("expected an ISO 8601 date such as 2024-05-01") from None


def _structure_decimal(value: object, _: type) -> decimal.Decimal:
    if type(value) not in (str, int, float):
        raise _FieldError("expected a decimal number")
    try:
        number = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        raise _FieldError("expected a decimal number") from None
    if not number.is_finite():
        raise _FieldError("expected a finite decimal number")
    return number


def _enum_hook(enum_type: type[enum.Enum]) -> Callable[[object, type], enum.Enum]:
    allowed = {member.value: member for member in enum_type}
    names = ", ".join(repr(value) for value in allowed)

    def structure_enum(value: object, _: type) -> enum.Enum:
        if type(value) in (str, int):
            member = allowed.get(value)
            if member is not None:
                return member
        raise _FieldError(f"expected one of {names}")

    return structure_enum


def _collection_hook(converter: cattrs.Converter) -> Callable[[Any], Callable[[object, type], Any]]:
    """Make lists, tuples and sets from JSON arrays only (never from a string or an object)."""

    def factory(collection_type: Any) -> Callable[[object, type], Any]:
        origin = typing.get_origin(collection_type) or collection_type
        args = typing.get_args(collection_type)
        item = args[0] if args else Any
        inner: Callable[[Any, Any], Any]
        if origin is tuple and args[1:] == (Ellipsis,):
            inner = homogenous_tuple_structure_factory(collection_type, converter)
        elif origin is tuple and args:
            inner = _fixed_tuple(converter, args)
        else:
            inner = list_structure_factory(list[item], converter)  # type: ignore[valid-type]
        wrap: Callable[[Any], Any] | None = None
        if is_any_set(collection_type):
            wrap = frozenset if origin is frozenset else set
        elif origin is tuple:
            wrap = tuple

        def structure_collection(value: object, target: type) -> Any:
            if type(value) is not list:
                raise _FieldError("expected a list")
            structured = inner(value, target)
            return structured if wrap is None else wrap(structured)

        return structure_collection

    return factory


def _fixed_tuple(converter: cattrs.Converter, args: tuple[Any, ...]) -> Callable[[Any, Any], Any]:
    def structure_fixed(value: list[Any], _: Any) -> tuple[Any, ...]:
        if len(value) != len(args):
            raise _FieldError(f"expected a list of {len(args)} items")
        return tuple(converter.structure(item, arg) for item, arg in zip(value, args, strict=True))

    return structure_fixed


def _object_hook(converter: cattrs.Converter) -> Callable[[Any], Callable[[object, type], Any]]:
    """Make attrs classes from JSON objects only (a string would otherwise read as a set of keys)."""

    def factory(cls: Any) -> Callable[[object, type], Any]:
        inner = make_dict_structure_fn(
            cls, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
        )

        def structure_object(value: object, target: type) -> Any:
            if not isinstance(value, Mapping):
                raise _FieldError("expected a JSON object")
            return inner(value, target)

        return structure_object

    return factory


def _is_collection(type_: Any) -> bool:
    return is_sequence(type_) or is_any_set(type_)


def strict_converter() -> cattrs.Converter:
    """Return a new cattrs Converter that structures JSON into messages without guessing.

    Strings stay strings and numbers stay numbers (no ``5`` to ``"5"``, no ``3.9`` to ``3``, booleans
    are not integers), unknown keys are refused, NaN and infinities are refused, UUIDs, dates,
    date-times and decimals are parsed from strings, enums accept their values only, and lists come
    from JSON arrays only. Every error is collected, not just the first. Register your own hooks on the
    converter you get back and pass it to `structure`.
    """
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    scalars: dict[type, Callable[[object, type], Any]] = {
        str: _structure_str,
        int: _structure_int,
        float: _structure_float,
        bool: _structure_bool,
        uuid.UUID: _structure_uuid,
        dt.datetime: _structure_datetime,
        dt.date: _structure_date,
        decimal.Decimal: _structure_decimal,
    }
    enums: dict[type, Callable[[object, type], Any]] = {}

    def structure_scalar(value: object, target: type) -> Any:
        # cattrs dispatches by subclass, so a StrEnum arrives here as a str and a bool as an int.
        hook = scalars.get(target)
        if hook is None:
            if issubclass(target, enum.Enum):
                hook = enums.get(target)
                if hook is None:
                    hook = enums[target] = _enum_hook(target)
            else:
                hook = next(h for base, h in scalars.items() if issubclass(target, base))
        return hook(value, target)

    for scalar in (*scalars, enum.Enum):
        converter.register_structure_hook(scalar, structure_scalar)
    converter.register_structure_hook_factory(_is_collection, _collection_hook(converter))
    converter.register_structure_hook_factory(attrs.has, _object_hook(converter))
    return converter


_DEFAULT_CONVERTER = strict_converter()


def structure(data: object, message_type: type[T], *, converter: cattrs.Converter | None = None) -> T:
    """Build a `message_type` from decoded JSON `data`, or raise `PayloadError` naming every bad field.

    It uses `strict_converter` unless you give your own. A value the message class itself refuses
    (an attrs validator raising ValueError) is reported under ``"body"``::

        command = structure({"email": "a@example.com", "age": 30}, CreateUser)
    """
    if not isinstance(data, Mapping):
        raise PayloadError({BODY: "expected a JSON object"})
    try:
        return (converter or _DEFAULT_CONVERTER).structure(data, message_type)
    except (ClassValidationError, IterableValidationError, _FieldError) as exc:
        errors: dict[str, str] = {}
        _collect(exc, "", errors)
        raise PayloadError(errors) from None
    except ForbiddenExtraKeysError as exc:
        raise PayloadError(dict.fromkeys(sorted(exc.extra_fields), "unknown field")) from None
    except (ValueError, TypeError) as exc:
        # The message's own __init__ refused a value: attrs validators speak to the caller.
        raise PayloadError({BODY: str(exc) or "invalid value"}) from None


def _join(path: str, name: object) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else str(name)


def _collect(exc: BaseException, path: str, errors: dict[str, str]) -> None:
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            _collect(sub, _join(path, note.name), errors)
        for sub in without:
            _collect(sub, path, errors)
    elif isinstance(exc, IterableValidationError):
        with_index, without = exc.group_exceptions()
        for sub, index_note in with_index:
            _collect(sub, _join(path, index_note.index), errors)
        for sub in without:
            _collect(sub, path, errors)
    elif isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            errors[_join(path, key)] = "unknown field"
    elif isinstance(exc, KeyError):
        errors[path or BODY] = "field required"  # the note already named the missing field
    else:
        errors[path or BODY] = _describe(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _FieldError):
        return str(exc)
    if isinstance(exc, (TypeError, AttributeError)):
        # Structuring a nested class from a non-object (a list, a string, a number) ends up here.
        return "expected a JSON object"
    return "invalid value"


def _refuse_constant(name: str) -> float:
    raise PayloadError({BODY: f"{name} is not valid JSON"})


def parse_json(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Any:
    """Decode a JSON body, refusing NaN and infinities, bodies over `max_bytes`, and malformed JSON.

    Raises `PayloadTooLargeError` or `PayloadError` (field ``"body"``).
    """
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(max_bytes)
    if not raw:
        raise PayloadError({BODY: "a JSON body is required"})
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise PayloadError({BODY: "the body is not UTF-8 text"}) from None
    except json.JSONDecodeError as exc:
        raise PayloadError({BODY: f"malformed JSON at line {exc.lineno} column {exc.colno}"}) from None
    except RecursionError:
        raise PayloadError({BODY: "the JSON is nested too deeply"}) from None
