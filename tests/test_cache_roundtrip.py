"""Round trip: Hypothesis-generated attrs DTOs come back from the cache equal and of the same type."""

from __future__ import annotations

import asyncio
import enum
import uuid
from datetime import UTC, date, datetime
from typing import Any

import attrs
from aiocache import SimpleMemoryCache
from aiocache.serializers import JsonSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from cqrskit import Page, Query, QueryBus
from cqrskit.caching import AiocacheBackend, CachePolicy, QueryCache
from cqrskit.testing import InMemoryCache


class Colour(enum.StrEnum):
    RED = "red"
    GREEN = "green"


@attrs.frozen
class Inner:
    number: int
    label: str | None


FIELD_KINDS: dict[str, tuple[Any, st.SearchStrategy[Any]]] = {
    "int": (int, st.integers()),
    "float": (float, st.floats(allow_nan=False)),
    "str": (str, st.text()),
    "bool": (bool, st.booleans()),
    "bytes": (bytes, st.binary(max_size=20)),
    "uuid": (uuid.UUID, st.uuids()),
    "datetime": (datetime, st.datetimes(timezones=st.none() | st.just(UTC))),
    "date": (date, st.dates()),
    "optional": (int | None, st.none() | st.integers()),
    "tuple": (tuple[str, ...], st.lists(st.text(max_size=5), max_size=4).map(tuple)),
    "list": (list[int], st.lists(st.integers(), max_size=4)),
    "dict": (dict[str, int], st.dictionaries(st.text(max_size=5), st.integers(), max_size=4)),
    "frozenset": (frozenset[str], st.frozensets(st.text(max_size=5), max_size=4)),
    "enum": (Colour, st.sampled_from(Colour)),
    "nested": (Inner, st.builds(Inner, st.integers(), st.none() | st.text(max_size=5))),
}


@st.composite
def dto_cases(draw: st.DrawFn) -> tuple[type, Any]:
    """A freshly made attrs DTO class with drawn field types, and an instance of it."""
    kinds = draw(st.lists(st.sampled_from(sorted(FIELD_KINDS)), min_size=1, max_size=6))
    fields = {f"f{i}_{kind}": attrs.field(type=FIELD_KINDS[kind][0]) for i, kind in enumerate(kinds)}
    dto = attrs.make_class("GeneratedDto", fields, frozen=True)
    values = {name: draw(FIELD_KINDS[kind][1]) for name, kind in zip(fields, kinds, strict=True)}
    return dto, dto(**values)


def query_for(result_type: Any) -> type:
    return attrs.make_class(
        "GetGenerated", {"id": attrs.field(type=int)}, bases=(Query[result_type],), frozen=True
    )


class ReturnValue:
    def __init__(self, value: Any) -> None:
        self.value = value

    async def handle(self, query: Any, context: Any) -> Any:
        return self.value


BACKENDS: dict[str, Any] = {
    "dict": InMemoryCache,
    "json text": lambda: InMemoryCache(json_round_trip=True),
    "aiocache json serializer": lambda: AiocacheBackend(
        SimpleMemoryCache(serializer=JsonSerializer(), timeout=None)
    ),
}


async def round_trip(cache: object, result_type: Any, value: Any) -> Any:
    """Cache `value` as the answer of a fresh query type returning `result_type`; return the hit."""
    query_type = query_for(result_type)
    bus = QueryBus({query_type: ReturnValue(value)}, [QueryCache(cache, {query_type: CachePolicy(ttl=60)})])
    first = await bus.execute(query_type(1))
    second = await bus.execute(query_type(1))
    assert first.cache_info is not None
    assert second.cache_info is not None
    assert (first.cache_info.hit, second.cache_info.hit) == (False, True)
    return second.data


class TestRoundTrip:
    """Whatever the fields, a cached DTO comes back equal to what the handler returned."""

    @settings(max_examples=60, deadline=None)
    @given(case=dto_cases(), backend=st.sampled_from(sorted(BACKENDS)))
    def test_generated_dtos_survive_the_cache(self, case: tuple[type, Any], backend: str) -> None:
        """A generated DTO read back from the cache is equal and of the same class."""
        dto, value = case
        cached = asyncio.run(round_trip(BACKENDS[backend](), dto, value))
        assert type(cached) is dto
        assert cached == value

    @settings(max_examples=30, deadline=None)
    @given(case=dto_cases(), size=st.integers(0, 3), backend=st.sampled_from(sorted(BACKENDS)))
    def test_pages_of_generated_dtos_survive_the_cache(
        self, case: tuple[type, Any], size: int, backend: str
    ) -> None:
        """A Page of generated DTOs read back from the cache is equal, items of the same class."""
        dto, value = case
        page = Page([value] * size, total_count=size + 5, page=2, page_size=3)
        cached = asyncio.run(round_trip(BACKENDS[backend](), Page[dto], page))  # type: ignore[valid-type]
        assert cached == page
        assert all(type(item) is dto for item in cached.items)
