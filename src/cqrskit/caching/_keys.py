"""Cache keys, tag keys, the value converter and a query's result type: all decided once per type.

Keys are stable across processes and runs: they are built from the query type's module-qualified name,
the policy version and a JSON rendering (sorted keys, sorted sets) of the cattrs-unstructured fields,
never from `hash()`. A long rendering is replaced by its blake2b digest.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import sys
import typing
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.preconf.json import make_converter

from cqrskit._errors import ConfigurationError
from cqrskit._messages import Message, Query
from cqrskit._names import qualified_name
from cqrskit._offset_page import OffsetPage
from cqrskit._results import Page

if TYPE_CHECKING:
    from cqrskit.caching._policy import CachePolicy

__all__ = [
    "CachePlan",
    "KeyFunction",
    "dependency_tag_keys",
    "entity_tag_keys",
    "key_function",
    "make_cache_converter",
    "query_result_type",
    "tenant_scope",
]

KeyFunction = Callable[[Any], str]

# Longer field renderings are hashed, so keys stay short whatever the query holds.
_MAX_PAYLOAD = 64
# One encoder, built once: json.dumps with non-default options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_NOT_FOUND: Any = object()


def _is_set_type(type_: Any) -> bool:
    origin = get_origin(type_) or type_
    return isinstance(origin, type) and issubclass(origin, (set, frozenset))


def make_cache_converter() -> cattrs.Converter:
    """Return a cattrs converter whose unstructured values are JSON-compatible and deterministic.

    It is cattrs' JSON converter with UUIDs as strings and sets unstructured to sorted lists (the
    iteration order of a set of strings changes from one process to the next).
    """
    converter = make_converter()
    converter.register_unstructure_hook(uuid.UUID, str)
    converter.register_structure_hook(uuid.UUID, lambda value, _: uuid.UUID(value))

    def sorted_set_hook(type_: Any) -> Callable[[Any], list[Any]]:
        args = get_args(type_)
        element = converter.get_unstructure_hook(args[0]) if args else converter.unstructure

        def unstructure_set(value: Any) -> list[Any]:
            return sorted((element(item) for item in value), key=_ENCODER.encode)

        return unstructure_set

    converter.register_unstructure_hook_factory(_is_set_type, sorted_set_hook)
    return converter


def _substitute(type_: Any, mapping: dict[Any, Any]) -> Any:
    if isinstance(type_, TypeVar):
        return mapping.get(type_, type_)
    parameters = getattr(type_, "__parameters__", ())
    if mapping and parameters:
        return type_[tuple(mapping.get(p, p) for p in parameters)]
    return type_


def _find_result_type(cls: type, mapping: dict[Any, Any]) -> Any:
    for base in cls.__dict__.get("__orig_bases__", cls.__bases__):
        origin = get_origin(base) or base
        if not (isinstance(origin, type) and issubclass(origin, Message)):
            continue
        args = tuple(_substitute(arg, mapping) for arg in get_args(base))
        if origin is Query or origin is Message:
            return args[0] if args else _NOT_FOUND
        parameters = getattr(origin, "__parameters__", ())
        found = _find_result_type(origin, dict(zip(parameters, args, strict=False)))
        if found is not _NOT_FOUND:
            return found
    return _NOT_FOUND


def query_result_type(query_type: type) -> Any:
    """Return `R` of a ``Query[R]`` subclass, through generic intermediate bases and string forms.

    Raises `ConfigurationError` when the class does not say what it returns.
    """
    found = _find_result_type(query_type, {})
    name = qualified_name(query_type)
    if found is _NOT_FOUND or isinstance(found, TypeVar) or getattr(found, "__parameters__", None):
        raise ConfigurationError(
            f"cannot tell what {name} returns: give it a concrete type argument, "
            f"for example 'class {query_type.__name__}(Query[UserDto])', to cache it"
        )

    def probe() -> None: ...

    probe.__annotations__ = {"return": found}
    module = sys.modules.get(query_type.__module__)
    try:
        return typing.get_type_hints(probe, globalns=vars(module) if module else None, include_extras=True)[
            "return"
        ]
    except NameError as exc:
        raise ConfigurationError(f"cannot resolve the result type of {name}: {exc}") from None


def _with_payload(prefix: str, payload: str) -> str:
    if len(payload) <= _MAX_PAYLOAD:
        return prefix + payload
    return prefix + "#" + hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def _field_types(query_type: type) -> dict[str, Any] | None:
    """Field name to annotation (Any where it cannot be resolved); None for a class without fields."""
    if attrs.has(query_type):
        try:
            attrs.resolve_types(query_type)
        except NameError:
            return {field.name: Any for field in attrs.fields(query_type)}
        return {field.name: field.type or Any for field in attrs.fields(query_type)}
    if dataclasses.is_dataclass(query_type):
        try:
            hints = typing.get_type_hints(query_type)
        except NameError:
            hints = {}
        return {field.name: hints.get(field.name, Any) for field in dataclasses.fields(query_type)}
    return None


def key_function(
    query_type: type,
    *,
    version: int,
    vary_by: tuple[str, ...] | None,
    key: Callable[[Any], object] | None,
    converter: cattrs.Converter,
) -> KeyFunction:
    """Build, once, the function that turns a query of `query_type` into its cache key."""
    prefix = f"{qualified_name(query_type)}:v{version}:"
    if key is not None:
        custom = key

        def custom_key(query: Any) -> str:
            return _with_payload(prefix, str(custom(query)))

        return custom_key

    types = _field_types(query_type)
    name = qualified_name(query_type)
    if vary_by is None:
        if types is None:
            raise ConfigurationError(
                f"{name} is neither an attrs class nor a dataclass: give its CachePolicy "
                "vary_by=(field names) or key=callable"
            )
        whole = converter.get_unstructure_hook(query_type)

        def all_fields_key(query: Any) -> str:
            return _with_payload(prefix, _ENCODER.encode(whole(query)))

        return all_fields_key

    if types is not None:
        unknown = sorted(set(vary_by) - set(types))
        if unknown:
            raise ConfigurationError(
                f"the CachePolicy of {name} varies by {unknown}, which {name} does not have; "
                f"its fields are {sorted(types)}"
            )
    hooks = tuple(
        (field, converter.get_unstructure_hook(types[field]) if types else converter.unstructure)
        for field in sorted(set(vary_by))
    )

    def some_fields_key(query: Any) -> str:
        values = {field: hook(getattr(query, field)) for field, hook in hooks}
        return _with_payload(prefix, _ENCODER.encode(values))

    return some_fields_key


@functools.lru_cache(maxsize=4096)
def tenant_scope(tenant: str) -> str:
    """Return the text every cache key and tag key of `tenant` starts with (made once per tenant).

    ``"tenant:<tenant>:"``, the tenant percent-encoded so that it holds no ``:`` and no tenant's
    scope is the start of another's. A key without a tenant never starts with ``"tenant:"`` (entry
    keys start with a module-qualified name, which has a dot; tag keys with ``"tag:"``; lock keys
    with ``"lock:"``), so a service without tenants keeps its keys as they were.
    """
    return f"tenant:{urllib.parse.quote(tenant, safe='')}:"


def entity_tag_keys(kind: str, entity_id: str, scope: str = "") -> tuple[str, str]:
    """Return the two tag version keys a change of entity ``(kind, entity_id)`` bumps.

    A change of one entity bumps its own key and the kind's wildcard key (lists of that kind); a change
    of ``(kind, "*")``, every entity of the kind, bumps the wildcard key and the kind's epoch key, on
    which every single-entity entry of that kind also depends. `scope` (a `tenant_scope`, or empty)
    starts both keys.
    """
    if entity_id == "*":
        return (f"{scope}tag:{kind}:*", f"{scope}tag:{kind}")
    return (f"{scope}tag:{kind}:{entity_id}", f"{scope}tag:{kind}:*")


def dependency_tag_keys(tags: Iterable[tuple[str, object]], scope: str = "") -> list[str]:
    """Return the tag version keys an entry tagged with `tags` depends on, without repeats, in order.

    `scope` (a `tenant_scope`, or empty) starts every key.
    """
    keys: dict[str, None] = {}
    for kind, entity_id in tags:
        text = str(entity_id)
        if text == "*":
            keys[f"{scope}tag:{kind}:*"] = None
        else:
            keys[f"{scope}tag:{kind}:{text}"] = None
            keys[f"{scope}tag:{kind}"] = None
    return list(keys)


class CachePlan:
    """Everything `QueryCache` needs about one query type, decided when the behaviour is built."""

    __slots__ = (
        "key",
        "null_ok",
        "page",
        "policy",
        "result_tags",
        "result_type",
        "structure",
        "tags",
        "ttl",
        "ttl_of",
        "unstructure",
    )

    def __init__(self, query_type: type, policy: CachePolicy[Any], converter: cattrs.Converter) -> None:
        self.policy = policy
        self.key = key_function(
            query_type,
            version=policy.version,
            vary_by=policy.vary_by,
            key=policy.key,
            converter=converter,
        )
        self.result_type = query_result_type(query_type)
        try:
            self.structure = converter.get_structure_hook(self.result_type)
            self.unstructure = converter.get_unstructure_hook(self.result_type)
        except Exception as exc:
            raise ConfigurationError(
                f"cannot cache {query_type.__qualname__}: cattrs cannot convert its result type "
                f"{self.result_type!r} ({exc}); register hooks on the converter you give QueryCache"
            ) from exc
        self.ttl_of = policy.ttl if callable(policy.ttl) else None
        self.ttl: float = 0.0 if callable(policy.ttl) else float(policy.ttl)
        self.tags = policy.tags
        self.result_tags = policy.result_tags
        self.null_ok = policy.cache_null_results
        origin = getattr(self.result_type, "__origin__", self.result_type)
        self.page = isinstance(origin, type) and issubclass(origin, (Page, OffsetPage))
