"""Turning a JSON body into a message under strict rules, with every bad field named by its path."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from cqrskit.fastapi._converter import FieldError, UnparsedNumber, naming_of, strict_converter
from cqrskit.fastapi._errors import PayloadError, PayloadTooLargeError
from cqrskit.fastapi._naming import wire_name

__all__ = ["DEFAULT_MAX_BODY_BYTES", "WHOLE_BODY", "parse_json", "structure"]

T = TypeVar("T")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""The body size `read_body` accepts unless told otherwise: 1 MiB."""

WHOLE_BODY = "$"
"""The field path that stands for the request body as a whole, as JSONPath writes its root.

A body that is not a JSON object, malformed JSON, or a value the message class itself refuses is
reported under ``"$"``; no field path is ever ``"$"``, so a field called ``body`` keeps its own key.
"""

_DEFAULT_CONVERTER = strict_converter()


def structure(data: object, message_type: type[T], *, converter: cattrs.Converter | None = None) -> T:
    """Build a `message_type` from decoded JSON `data`, or raise `PayloadError` naming every bad field.

    It uses `strict_converter` unless you give your own. A value the message class itself refuses
    (an attrs validator raising ValueError) is reported under ``"$"`` (`WHOLE_BODY`)::

        command = structure({"email": "a@example.com", "age": 30}, CreateUser)
    """
    if not isinstance(data, Mapping):
        raise PayloadError({WHOLE_BODY: "expected a JSON object"})
    used = converter or _DEFAULT_CONVERTER
    try:
        return used.structure(data, message_type)
    except (ClassValidationError, IterableValidationError, FieldError) as exc:
        errors: dict[str, str] = {}
        _collect(exc, "", errors, naming_of(used))
        raise PayloadError(errors) from None
    except ForbiddenExtraKeysError as exc:
        raise PayloadError(dict.fromkeys(sorted(exc.extra_fields), "unknown field")) from None
    except (ValueError, TypeError) as exc:
        # The message's own __init__ refused a value: attrs validators speak to the caller.
        raise PayloadError({WHOLE_BODY: str(exc) or "invalid value"}) from None


def _join(path: str, name: object) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else str(name)


def _wire_step(cls: type, attribute: str, naming: Callable[[str], str] | None) -> str:
    for field in attrs.fields(cls):
        if field.name == attribute:
            return wire_name(field, naming)
    return attribute


def _collect(
    exc: BaseException, path: str, errors: dict[str, str], naming: Callable[[str], str] | None
) -> None:
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        # cattrs notes each sub-error with the attribute (a class) or the index (a list) it came from.
        placed: list[tuple[BaseException, object]]
        if isinstance(exc, ClassValidationError):
            with_notes, without = exc.group_exceptions()
            placed = [(sub, _wire_step(exc.cl, note.name, naming)) for sub, note in with_notes]
        else:
            with_index, without = exc.group_exceptions()
            placed = [(sub, note.index) for sub, note in with_index]
        for sub, step in placed:
            _collect(sub, _join(path, step), errors, naming)
        for sub in without:
            _collect(sub, path, errors, naming)
    elif isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            errors[_join(path, key)] = "unknown field"
    elif isinstance(exc, KeyError):
        errors[path or WHOLE_BODY] = "field required"  # the note already named the missing field
    else:
        errors[path or WHOLE_BODY] = _describe(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FieldError):
        return str(exc)
    if isinstance(exc, (TypeError, AttributeError)):
        # Structuring a nested class from a non-object (a list, a string, a number) ends up here.
        return "expected a JSON object"
    return "invalid value"


def _refuse_constant(name: str) -> float:
    raise PayloadError({WHOLE_BODY: f"{name} is not valid JSON"})


def _parse_int(text: str) -> int | UnparsedNumber:
    try:
        return int(text)
    except ValueError:  # more digits than int() converts: structuring names the field it was in
        return UnparsedNumber(text)


def parse_json(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Any:
    """Decode a JSON body, refusing NaN and infinities, bodies over `max_bytes`, and malformed JSON.

    Raises `PayloadTooLargeError` or `PayloadError` (field ``"$"``, `WHOLE_BODY`). An integer of more
    digits than Python parses (4,300) is kept as an `UnparsedNumber`, which `structure` refuses naming
    its field.
    """
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(max_bytes)
    if not raw:
        raise PayloadError({WHOLE_BODY: "a JSON body is required"})
    try:
        try:
            return json.loads(raw, parse_constant=_refuse_constant)
        except ValueError as exc:
            if isinstance(exc, json.JSONDecodeError):
                raise
            # Python refused to turn a very long integer into an int. Parse again, calling `_parse_int`
            # per integer: only such bodies pay for a Python call per number.
            return json.loads(raw, parse_constant=_refuse_constant, parse_int=_parse_int)
    except UnicodeDecodeError:
        raise PayloadError({WHOLE_BODY: "the body is not UTF-8 text"}) from None
    except json.JSONDecodeError as exc:
        raise PayloadError({WHOLE_BODY: f"malformed JSON at line {exc.lineno} column {exc.colno}"}) from None
    except RecursionError:
        raise PayloadError({WHOLE_BODY: "the JSON is nested too deeply"}) from None
