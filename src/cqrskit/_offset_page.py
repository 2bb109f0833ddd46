"""`OffsetPage`: a page of items addressed by offset and limit instead of page number and size."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

import attrs

from cqrskit._results import WRAPPED_TYPES, Pagination

__all__ = ["OffsetPage"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


def _as_tuple(values: Iterable[T]) -> tuple[T, ...]:
    return values if type(values) is tuple else tuple(values)


@attrs.frozen(init=False)
class OffsetPage(Generic[T_co]):
    """Items from `offset` on, at most `limit` of them: for APIs that page with ``?offset=&limit=``.

    A paginated query is then a ``Query[OffsetPage[ItemDto]]`` (`Page` pages by number and size).

    A handler returns one like a `Page`, and the bus fills ``Result.pagination`` from it the same way:
    its `offset` and `limit`, and the page number that offset falls on (``offset // limit + 1``).
    """

    items: tuple[T_co, ...]
    total_count: int
    offset: int
    limit: int

    # Written out, as for Page, so that type checkers infer `T_co` from any iterable of items.
    def __init__(self, items: Iterable[T_co], total_count: int, offset: int, limit: int) -> None:
        self.__attrs_init__(_as_tuple(items), total_count, offset, limit)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        WRAPPED_TYPES.add(cls)

    def __attrs_post_init__(self) -> None:
        if self.offset < 0:
            raise ValueError(f"offset cannot be negative, got {self.offset}")
        if self.limit < 1:
            raise ValueError(f"limit must be positive, got {self.limit}")
        if self.total_count < 0:
            raise ValueError(f"total_count cannot be negative, got {self.total_count}")

    @property
    def pagination(self) -> Pagination:
        """This page's position: its offset and limit, and the page number and count they make."""
        return Pagination(
            page=self.offset // self.limit + 1,
            page_size=self.limit,
            total_count=self.total_count,
            total_pages=math.ceil(self.total_count / self.limit),
            has_next=self.offset + self.limit < self.total_count,
            has_previous=self.offset > 0,
            offset=self.offset,
            limit=self.limit,
        )


WRAPPED_TYPES.add(OffsetPage)
