"""JSON Schemas for the OpenAPI document, made from the same attrs classes and types the converters use.

A request body's schema says what `structure` accepts (every key it knows, the required ones, no other
key); a response's schema says what `to_json` writes (every field, always present). Named schemas (attrs
classes, enums, pages) go into the document's components and are referred to by ``$ref``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import operator
import re
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any, Literal

import attrs

from cqrskit._messages import Message
from cqrskit._offset_page import OffsetPage
from cqrskit._results import Page, Pagination
from cqrskit.fastapi._naming import wire_name

__all__ = [
    "NO_DEFAULT",
    "SCHEMA_METADATA",
    "JsonSchemas",
    "composed_validators",
    "json_default",
    "result_type",
]

SCHEMA_METADATA = "json_schema"
"""The attrs field metadata key whose dict is merged into that field's JSON Schema.

``email: str = attrs.field(metadata={"json_schema": {"format": "email", "maxLength": 254}})``
"""

Direction = Literal["request", "response"]

_SCALARS: Mapping[Any, Mapping[str, Any]] = {
    str: {"type": "string"},
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    uuid.UUID: {"type": "string", "format": "uuid"},
    dt.datetime: {"type": "string", "format": "date-time"},
    dt.date: {"type": "string", "format": "date"},
    type(None): {"type": "null"},
}
_DECIMAL_TEXT = r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
_BOUNDS: dict[Any, str] = {
    operator.ge: "minimum",
    operator.gt: "exclusiveMinimum",
    operator.le: "maximum",
    operator.lt: "exclusiveMaximum",
}


def result_type(message_type: type) -> Any:
    """Return what a handler of `message_type` returns: the ``R`` of its ``Command[R]`` or ``Query[R]``."""
    for klass in message_type.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Message):
                (argument,) = typing.get_args(base)
                return Any if isinstance(argument, typing.TypeVar) else argument
    return Any


_AND_VALIDATOR: type = type(attrs.validators.and_())


def composed_validators(validator: object) -> tuple[object, ...]:
    """Return the validators an ``attrs.validators.and_`` (or a list given as ``validator=``) composes.

    attrs has no public way to list them: its composing class is itself an attrs class whose one field
    holds them, read here through `attrs.fields` (attrs's public introspection) rather than by its
    private name. This is the only place that relies on that; a test checks it on every attrs version
    we run, and if attrs changes the class this raises instead of dropping the bounds silently.
    Any other validator composes nothing: ``()``.
    """
    if not isinstance(validator, _AND_VALIDATOR):
        return ()
    (held,) = attrs.fields(_AND_VALIDATOR)
    return tuple(getattr(validator, held.name))


def _validator_bounds(validator: object) -> dict[str, Any]:
    """Read bounds from attrs's own validators: max_len, min_len, ge, gt, le, lt, matches_re."""
    schema: dict[str, Any] = {}
    for inner in composed_validators(validator):
        schema.update(_validator_bounds(inner))
    if isinstance(getattr(validator, "max_length", None), int):
        schema["maxLength"] = validator.max_length  # type: ignore[attr-defined]
    if isinstance(getattr(validator, "min_length", None), int):
        schema["minLength"] = validator.min_length  # type: ignore[attr-defined]
    bound_key = _BOUNDS.get(getattr(validator, "compare_func", None))
    if bound_key is not None:
        schema[bound_key] = validator.bound  # type: ignore[attr-defined]
    pattern = getattr(validator, "pattern", None)
    if isinstance(pattern, re.Pattern):
        schema["pattern"] = pattern.pattern
    return schema


class JsonSchemas:
    """Collects the named schemas of one OpenAPI document while it is being made.

    `naming` turns an attribute name into its name on the wire (see `camel_case`); a field's own
    ``alias`` metadata wins over it.
    """

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}
        self._names: dict[tuple[Any, ...], str] = {}

    def _name_for(self, key: tuple[Any, ...], base: str) -> tuple[str, bool]:
        """Return the component name for `key` and whether it still has to be made."""
        known = self._names.get(key)
        if known is not None:
            return known, False
        name, count = base, 1
        while name in self.components:
            count += 1
            name = f"{base}{count}"
        self._names[key] = name
        self.components[name] = {}  # reserved now, so that a recursive class refers to itself
        return name, True

    def schema(  # noqa: PLR0911, PLR0912 - one branch per kind of type
        self,
        type_: Any,
        direction: Direction,
        *,
        naming: Callable[[str], str] | None = None,
        exclude: Set[str] = frozenset(),
    ) -> dict[str, Any]:
        """Return the schema of `type_` (a ``$ref`` for a named one); `exclude` drops top-level fields."""
        if type_ is Any or type_ is object:
            return {}
        scalar = _SCALARS.get(type_)
        if scalar is not None:
            return dict(scalar)
        if isinstance(type_, type) and issubclass(type_, enum.Enum):
            return self._enum(type_)
        if type_ is decimal.Decimal:
            if direction == "response":
                return {"type": "string", "pattern": _DECIMAL_TEXT}
            return {"anyOf": [{"type": "number"}, {"type": "string", "pattern": _DECIMAL_TEXT}]}
        origin = typing.get_origin(type_)
        arguments = typing.get_args(type_)
        if origin is typing.Annotated:
            return self.schema(arguments[0], direction, naming=naming, exclude=exclude)
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self.schema(argument, direction, naming=naming) for argument in arguments]}
        if origin is Literal:
            return {"enum": list(arguments)}
        if isinstance(origin, type) and issubclass(origin, (Page, OffsetPage)):
            return self._page(arguments[0] if arguments else Any, naming)
        if isinstance(origin, type) and issubclass(origin, Mapping):
            values = arguments[-1] if arguments else Any
            return {"type": "object", "additionalProperties": self.schema(values, direction, naming=naming)}
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:
            items = [self.schema(argument, direction, naming=naming) for argument in arguments]
            return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
        if isinstance(origin, type) and issubclass(origin, (Sequence, Set)) and origin is not str:
            item = self.schema(arguments[0] if arguments else Any, direction, naming=naming)
            array: dict[str, Any] = {"type": "array", "items": item}
            if issubclass(origin, Set) and direction == "response":
                array["uniqueItems"] = True
            return array
        if isinstance(type_, type) and attrs.has(type_):
            return self._attrs_class(type_, direction, naming, exclude)
        if isinstance(type_, type):
            for base, scalar in _SCALARS.items():
                if base is not type(None) and issubclass(type_, base):
                    return dict(scalar)
        return {}

    def field_schema(
        self,
        field: attrs.Attribute[Any],
        type_: Any,
        direction: Direction,
        *,
        naming: Callable[[str], str] | None = None,
    ) -> dict[str, Any]:
        """Return the schema of an attrs `field` of type `type_`, with its bounds and its metadata's."""
        schema = self.schema(type_, direction, naming=naming)
        extra: dict[str, Any] = {}
        if field.validator is not None:
            extra.update(_validator_bounds(field.validator))
        extra.update(field.metadata.get(SCHEMA_METADATA, {}))
        if not extra:
            return schema
        return {"allOf": [schema], **extra} if "$ref" in schema else {**schema, **extra}

    def _enum(self, enum_type: type[enum.Enum]) -> dict[str, Any]:
        name, new = self._name_for(("enum", enum_type), enum_type.__name__)
        if new:
            values = [member.value for member in enum_type]
            schema: dict[str, Any] = {"title": enum_type.__name__, "enum": values}
            if all(isinstance(value, str) for value in values):
                schema["type"] = "string"
            elif all(isinstance(value, int) and not isinstance(value, bool) for value in values):
                schema["type"] = "integer"
            self.components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def _page(self, item_type: Any, naming: Callable[[str], str] | None) -> dict[str, Any]:
        item = self.schema(item_type, "response", naming=naming)
        label = getattr(item_type, "__name__", "Item")
        name, new = self._name_for(("page", item_type, naming), f"{label}Page")
        if new:
            self.components[name] = {
                "title": name,
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": item},
                    "pagination": self.schema(Pagination, "response", naming=naming),
                },
                "required": ["items", "pagination"],
            }
        return {"$ref": f"#/components/schemas/{name}"}

    def _attrs_class(
        self, cls: type, direction: Direction, naming: Callable[[str], str] | None, exclude: Set[str]
    ) -> dict[str, Any]:
        key = ("class", cls, direction, naming, frozenset(exclude))
        # One name per class when it is used one way; "Input" marks the request side of a class that
        # is used both ways (its required fields differ).
        taken = any(known[1] is cls and known[2] != direction for known in self._names if known[0] == "class")
        base = cls.__name__ + ("Input" if taken and direction == "request" else "")
        if exclude and direction == "request":
            base = f"{cls.__name__}Body"
        name, new = self._name_for(key, base)
        if not new:
            return {"$ref": f"#/components/schemas/{name}"}
        hints = typing.get_type_hints(cls, include_extras=True)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            if field.name in exclude or not field.init:
                continue
            wire = wire_name(field, naming)
            schema = self.field_schema(field, hints.get(field.name, field.type), direction, naming=naming)
            if field.default is attrs.NOTHING or direction == "response":
                required.append(wire)
            elif not isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                default = json_default(field.default)
                if default is not NO_DEFAULT:
                    schema = {**schema, "default": default}
            properties[wire] = schema
        component: dict[str, Any] = {"title": name, "type": "object", "properties": properties}
        if required:
            component["required"] = required
        if direction == "request":
            component["additionalProperties"] = False
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        if doc:
            component["description"] = " ".join(doc.split())
        self.components[name] = component
        return {"$ref": f"#/components/schemas/{name}"}


NO_DEFAULT = object()


def json_default(value: object) -> object:
    """Return the JSON form of a field's default, or `NO_DEFAULT` when it has none worth showing."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list, frozenset, set)) and not value:
        return []
    if isinstance(value, uuid.UUID | dt.date | decimal.Decimal):
        return str(value) if not isinstance(value, dt.date) else value.isoformat()
    return NO_DEFAULT
