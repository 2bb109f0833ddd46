"""`CachePolicy`: how one query type is cached, as plain data."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import attrs

__all__ = ["CachePolicy"]

Q = TypeVar("Q")


def _vary_by(value: Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"vary_by takes a sequence of field names, not the string {value!r}")
    return tuple(value)


def _check_ttl(
    _instance: object, _attribute: attrs.Attribute[Any], value: float | Callable[[Any], float]
) -> None:
    if callable(value):
        return
    number: object = value  # checked at run time: the annotation is what a type checker enforces
    if isinstance(number, bool) or not isinstance(number, int | float) or number <= 0:
        raise ValueError(f"ttl must be a positive number of seconds or a callable, got {value!r}")


@attrs.frozen
class CachePolicy(Generic[Q]):
    """How `QueryCache` caches one query type: one entry per query in `QueryCache`'s policies table.

    - `ttl`: seconds an entry lives, or a callable of the query returning them (0 or less: do not
      cache this one).
    - `vary_by`: the fields the key is built from; None means every field.
    - `cache_null_results`: cache a None result too.
    - `tags`: a callable of the query returning ``(kind, id)`` pairs its result depends on, matched
      against commands' `AffectedEntity` by `CacheInvalidation`; ``(kind, "*")`` depends on every
      entity of the kind.
    - `result_tags`: a callable of the query and the handler's result returning more ``(kind, id)``
      pairs, for what only the result names (an article's author): applied when the entry is stored,
      and checked on every hit like `tags`.
    - `key`: a callable of the query returning the key text, instead of the fields.
    - `version`: bump it when the result type changes shape, so old entries are never read.
    """

    ttl: float | Callable[[Q], float] = attrs.field(validator=_check_ttl)
    vary_by: tuple[str, ...] | None = attrs.field(default=None, converter=_vary_by)
    cache_null_results: bool = False
    tags: Callable[[Q], Iterable[tuple[str, object]]] | None = None
    key: Callable[[Q], object] | None = None
    version: int = 1
    result_tags: Callable[[Q, Any], Iterable[tuple[str, object]]] | None = None
