"""The strict cattrs converter: JSON values become message fields only when they are of the right kind."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import math
import re
import typing
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    is_any_set,
    is_sequence,
    list_structure_factory,
)
from cattrs.gen import make_dict_structure_fn, override

from cqrskit.fastapi._naming import wire_name

__all__ = [
    "ALLOW_BIG_INTEGERS",
    "ALLOW_CONTROL_CHARACTERS",
    "INT64_MAX",
    "INT64_MIN",
    "FieldError",
    "UnparsedNumber",
    "naming_of",
    "strict_converter",
]

T = TypeVar("T")


class _StrictConverter(cattrs.Converter):
    """A converter that remembers its naming rule, so that error paths use the keys the caller sent."""

    def __init__(self, naming: Callable[[str], str] | None) -> None:
        super().__init__(forbid_extra_keys=True, detailed_validation=True)
        self.naming = naming


def naming_of(converter: cattrs.Converter) -> Callable[[str], str] | None:
    """Return the naming rule `converter` was made with by `strict_converter` (None for none or another)."""
    return converter.naming if isinstance(converter, _StrictConverter) else None


class FieldError(ValueError):
    """A value of the wrong kind; its text is meant for the caller."""


ALLOW_CONTROL_CHARACTERS = "allow_control_characters"
"""Field metadata key: ``attrs.field(metadata={"allow_control_characters": True})`` lets NUL and the
other control characters into that field's strings (lone surrogates stay refused)."""

ALLOW_BIG_INTEGERS = "allow_big_integers"
"""Field metadata key: ``attrs.field(metadata={"allow_big_integers": True})`` lets that field's integers
go beyond the signed 64-bit range."""

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Lone surrogates cannot be encoded as UTF-8 at all: no field may hold one.
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 controls but tab, newline and carriage return; DEL; the C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@attrs.frozen
class _Relaxed:
    """What the field being structured allows beyond the defaults (set by a field's metadata)."""

    control_characters: bool = False
    big_integers: bool = False


_STRICT = _Relaxed()
_relaxed: ContextVar[_Relaxed] = ContextVar("cqrskit_relaxed_field", default=_STRICT)


class UnparsedNumber:
    """A JSON number Python will not parse (an integer of more than 4,300 digits), kept as its text.

    `parse_json` puts one where such a number was, so that structuring names the field it was sent in.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"UnparsedNumber(<{len(self.text)} characters>)"


_TOO_LONG = "a number with too many digits"


def _structure_str(value: object, _: type) -> str:
    if type(value) is not str:
        raise FieldError("expected a string")
    # Fast path: one scan each for the characters no storage takes; most strings have neither.
    if _SURROGATE.search(value) is not None:
        raise FieldError("not valid Unicode text (a lone surrogate)")
    control = _CONTROL.search(value)
    if control is not None and not _relaxed.get().control_characters:
        raise FieldError(f"control character U+{ord(control.group()):04X} not allowed")
    return value


def _structure_int(value: object, _: type) -> int:
    if type(value) is not int:
        raise FieldError("expected an integer")
    if not INT64_MIN <= value <= INT64_MAX and not _relaxed.get().big_integers:
        raise FieldError("an integer out of range (signed 64-bit)")
    return value


def _structure_float(value: object, _: type) -> float:
    if type(value) not in (int, float):
        raise FieldError("expected a number")
    try:
        number = float(value)  # type: ignore[arg-type]  # checked just above
    except OverflowError:  # an integer too large for a float
        raise FieldError("expected a finite number") from None
    if not math.isfinite(number):
        raise FieldError("expected a finite number")
    return number


def _structure_bool(value: object, _: type) -> bool:
    if type(value) is not bool:
        raise FieldError("expected true or false")
    return value


def _structure_uuid(value: object, _: type) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if type(value) is not str:
        raise FieldError("expected a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise FieldError("expected a UUID such as 123e4567-e89b-12d3-a456-426614174000") from None


def _iso_hook(parse: Callable[[str], T], what: str, example: str) -> Callable[[object, type], T]:
    """Make a hook parsing an ISO 8601 string with `parse`; `what` and `example` word its errors."""

    def structure_iso(value: object, _: type) -> T:
        if type(value) is not str:
            raise FieldError(f"expected an ISO 8601 {what} string")
        try:
            return parse(value)
        except ValueError:
            raise FieldError(f"expected an ISO 8601 {what} such as {example}") from None

    return structure_iso


_structure_datetime = _iso_hook(dt.datetime.fromisoformat, "date-time", "2024-05-01T12:00:00+00:00")
_structure_date = _iso_hook(dt.date.fromisoformat, "date", "2024-05-01")


def _structure_decimal(value: object, _: type) -> decimal.Decimal:
    if isinstance(value, UnparsedNumber):
        value = value.text  # a decimal takes any number of digits
    if type(value) not in (str, int, float):
        raise FieldError("expected a decimal number")
    try:
        number = decimal.Decimal(value if type(value) is str else repr(value))
    except decimal.InvalidOperation:
        raise FieldError("expected a decimal number") from None
    if not number.is_finite():
        raise FieldError("expected a finite decimal number")
    return number


def _enum_hook(enum_type: type[enum.Enum]) -> Callable[[object, type], enum.Enum]:
    allowed = {member.value: member for member in enum_type}
    names = ", ".join(repr(value) for value in allowed)

    def structure_enum(value: object, _: type) -> enum.Enum:
        if type(value) in (str, int):
            member = allowed.get(value)
            if member is not None:
                return member
        raise FieldError(f"expected one of {names}")

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
                raise FieldError("expected a list")
            structured = inner(value, target)
            return structured if wrap is None else wrap(structured)

        return structure_collection

    return factory


def _fixed_tuple(converter: cattrs.Converter, args: tuple[Any, ...]) -> Callable[[Any, Any], Any]:
    def structure_fixed(value: list[Any], _: Any) -> tuple[Any, ...]:
        if len(value) != len(args):
            raise FieldError(f"expected a list of {len(args)} items")
        return tuple(converter.structure(item, arg) for item, arg in zip(value, args, strict=True))

    return structure_fixed


def _object_hook(
    converter: cattrs.Converter, naming: Callable[[str], str] | None
) -> Callable[[Any], Callable[[object, type], Any]]:
    """Make attrs classes from JSON objects only (a string would otherwise read as a set of keys)."""

    def factory(cls: Any) -> Callable[[object, type], Any]:
        renamed: dict[str, Any] = {
            field.name: override(rename=wire)
            for field in attrs.fields(cls)
            if (wire := wire_name(field, naming)) != field.name
        }
        hints: dict[str, Any] | None = None
        for field in attrs.fields(cls):
            relaxed = _Relaxed(
                control_characters=field.metadata.get(ALLOW_CONTROL_CHARACTERS) is True,
                big_integers=field.metadata.get(ALLOW_BIG_INTEGERS) is True,
            )
            if relaxed != _STRICT:
                hints = typing.get_type_hints(cls) if hints is None else hints
                renamed[field.name] = override(
                    rename=wire_name(field, naming),
                    struct_hook=_relaxing(converter, hints[field.name], relaxed),
                )
        inner = make_dict_structure_fn(
            cls, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True, **renamed
        )

        def structure_object(value: object, target: type) -> Any:
            if not isinstance(value, Mapping):
                raise FieldError("expected a JSON object")
            return inner(value, target)

        return structure_object

    return factory


def _relaxing(converter: cattrs.Converter, type_: Any, relaxed: _Relaxed) -> Callable[[object, Any], Any]:
    """Structure one opted-in field's value with its relaxed rules (and the converter's own hooks)."""

    def structure_relaxed(value: object, _: Any) -> Any:
        token = _relaxed.set(relaxed)
        try:
            return converter.structure(value, type_)
        finally:
            _relaxed.reset(token)

    return structure_relaxed


def _is_collection(type_: Any) -> bool:
    return is_sequence(type_) or is_any_set(type_)


def strict_converter(*, naming: Callable[[str], str] | None = None) -> cattrs.Converter:
    r"""Return a new cattrs Converter that structures JSON into messages without guessing.

    Strings stay strings and numbers stay numbers (no ``5`` to ``"5"``, no ``3.9`` to ``3``, booleans
    are not integers), unknown keys are refused, NaN and infinities are refused, UUIDs, dates,
    date-times and decimals are parsed from strings, enums accept their values only, and lists come
    from JSON arrays only. Every error is collected, not just the first. Register your own hooks on the
    converter you get back and pass it to `structure`.

    Values no database stores are refused too, each naming its field: strings holding a lone surrogate
    (``"\ud800"``, not Unicode text), strings holding NUL or another control character (tab, newline and
    carriage return are allowed) unless the field says
    ``attrs.field(metadata={"allow_control_characters": True})``, integers outside the signed 64-bit
    range unless the field says ``attrs.field(metadata={"allow_big_integers": True})``, and numbers of
    more than 4,300 digits, which Python does not parse (a `decimal.Decimal` field takes them).

    With `naming` (for example `camel_case`), each field is read from the key ``naming(attribute)``
    instead of its attribute name; a field's ``wire_name`` metadata wins over the rule.
    """
    converter = _StrictConverter(naming)
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
        if type(value) is UnparsedNumber and hook is not _structure_decimal:
            raise FieldError(_TOO_LONG)
        return hook(value, target)

    for scalar in (*scalars, enum.Enum):
        converter.register_structure_hook(scalar, structure_scalar)
    converter.register_structure_hook_factory(_is_collection, _collection_hook(converter))
    converter.register_structure_hook_factory(attrs.has, _object_hook(converter, naming))
    return converter
