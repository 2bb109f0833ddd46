"""What a dispatch returns: `Result` and the values it carries."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Never, TypeVar

import attrs

from cqrskit._errors import CqrsKitError
from cqrskit._status import OperationStatus

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "WRAPPED_TYPES",
    "AffectedEntity",
    "CacheInfo",
    "OperationStatus",
    "Page",
    "Pagination",
    "Result",
    "ResultError",
    "failed_result",
    "handler_result",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


def _as_tuple(values: Iterable[T]) -> tuple[T, ...]:
    # A typed converter: with the bare `tuple` builtin, type checkers refuse a list of items.
    return values if type(values) is tuple else tuple(values)


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return values if type(values) is tuple else tuple(values)


@attrs.frozen
class AffectedEntity:
    """One entity a command touched, for example ``AffectedEntity("user", "42", "updated", ("email",))``.

    Cache invalidation and events match on `kind` and `id`.
    """

    kind: str
    id: str
    change: str
    fields: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)


def _page_offset(pagination: Pagination) -> int:
    return (pagination.page - 1) * pagination.page_size


def _page_limit(pagination: Pagination) -> int:
    return pagination.page_size


@attrs.frozen
class Pagination:
    """Where a page sits in its result set; derived from a `Page` or an `OffsetPage`.

    `offset` (how many items come before this page) and `limit` (the page's size) are derived from
    `page` and `page_size` unless given.
    """

    page: int
    page_size: int
    total_count: int
    total_pages: int
    has_next: bool
    has_previous: bool
    offset: int = attrs.field(default=attrs.Factory(_page_offset, takes_self=True))
    limit: int = attrs.field(default=attrs.Factory(_page_limit, takes_self=True))


@attrs.frozen(init=False)
class Page(Generic[T_co]):
    """One page of items; a paginated query is a ``Query[Page[ItemDto]]``. `page` counts from 1."""

    items: tuple[T_co, ...]
    total_count: int
    page: int
    page_size: int

    # Written out (not an attrs converter) so that type checkers infer `T_co` from any iterable of items,
    # for subclasses too.
    def __init__(self, items: Iterable[T_co], total_count: int, page: int, page_size: int) -> None:
        self.__attrs_init__(_as_tuple(items), total_count, page, page_size)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        WRAPPED_TYPES.add(cls)

    def __attrs_post_init__(self) -> None:
        if self.page < 1:
            raise ValueError(f"page counts from 1, got {self.page}")
        if self.page_size < 1:
            raise ValueError(f"page_size must be positive, got {self.page_size}")
        if self.total_count < 0:
            raise ValueError(f"total_count cannot be negative, got {self.total_count}")

    @property
    def pagination(self) -> Pagination:
        """This page's position: total pages and whether there is a next or a previous one."""
        total_pages = math.ceil(self.total_count / self.page_size)
        return Pagination(
            page=self.page,
            page_size=self.page_size,
            total_count=self.total_count,
            total_pages=total_pages,
            has_next=self.page < total_pages,
            has_previous=self.page > 1,
        )


@attrs.frozen
class CacheInfo:
    """Whether a query was answered from the cache, under which key and for how many seconds."""

    hit: bool
    key: str
    ttl: float | None


_NO_ERRORS: Mapping[str, str] = MappingProxyType({})

WRAPPED_TYPES: set[type] = set()
"""`Result`, the page types (`Page`, `OffsetPage`) and their subclasses: what the bus does not pass on
as plain data. Every one of them but `Result` has a ``pagination`` property.

A set, so that the bus tells a handler's plain value from these with one hash lookup of its type
instead of an `isinstance` check; both classes add their subclasses to it as they are defined.
"""


# Built once per dispatch: see the note on Context for why the fields are read-only properties.
@attrs.define(repr=False, eq=False)
class Result(Generic[T_co]):
    """The outcome of one dispatch. Immutable.

    Build one with `Result.success` or `Result.failure`; the bus fills in `operation_id`.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        WRAPPED_TYPES.add(cls)

    _status: OperationStatus = attrs.field(alias="status")
    _data: T_co = attrs.field(alias="data")
    _errors: Mapping[str, str] = attrs.field(default=_NO_ERRORS, alias="errors")
    _affected_entities: tuple[AffectedEntity, ...] = attrs.field(default=(), alias="affected_entities")
    _pagination: Pagination | None = attrs.field(default=None, alias="pagination")
    _cache_info: CacheInfo | None = attrs.field(default=None, alias="cache_info")
    _operation_id: str | None = attrs.field(default=None, alias="operation_id")

    @classmethod
    def success(
        cls,
        data: T,
        *,
        affected_entities: Iterable[AffectedEntity] = (),
        pagination: Pagination | None = None,
        cache_info: CacheInfo | None = None,
    ) -> Result[T]:
        """Return a SUCCESS result carrying `data`; a `Page` or `OffsetPage` fills in `pagination`."""
        if pagination is None and type(data) in WRAPPED_TYPES and not isinstance(data, Result):
            pagination = data.pagination  # type: ignore[attr-defined]  # every other wrapped type is a page
        return Result(
            OperationStatus.SUCCESS, data, _NO_ERRORS, tuple(affected_entities), pagination, cache_info
        )

    @classmethod
    def failure(cls, status: OperationStatus, errors: Mapping[str, str] | None = None) -> Result[Never]:
        """Return a failed result with `status` and field-to-message `errors`."""
        if status is OperationStatus.SUCCESS:
            raise ValueError("Result.failure needs a failure status, not SUCCESS")
        frozen_errors = MappingProxyType(dict(errors)) if errors else _NO_ERRORS
        return Result(status, None, frozen_errors)  # type: ignore[arg-type]  # no data on failure

    @property
    def status(self) -> OperationStatus:
        """How the dispatch ended."""
        return self._status

    @property
    def data(self) -> T_co:
        """What the handler returned (None on failure)."""
        return self._data

    @property
    def errors(self) -> Mapping[str, str]:
        """Field name to error message; ``"detail"`` holds an error that belongs to no field."""
        return self._errors

    @property
    def affected_entities(self) -> tuple[AffectedEntity, ...]:
        """The entities a command touched."""
        return self._affected_entities

    @property
    def pagination(self) -> Pagination | None:
        """Set when `data` is a `Page`."""
        return self._pagination

    @property
    def cache_info(self) -> CacheInfo | None:
        """Set by `QueryCache` on a cached query."""
        return self._cache_info

    @property
    def operation_id(self) -> str | None:
        """The id of the dispatch that produced this result."""
        return self._operation_id

    @property
    def is_success(self) -> bool:
        """True when the status is SUCCESS."""
        return self._status is OperationStatus.SUCCESS

    @property
    def is_failure(self) -> bool:
        """True for every status but SUCCESS."""
        return self._status is not OperationStatus.SUCCESS

    def unwrap(self) -> T_co:
        """Return `data` on success; raise `ResultError` carrying this result otherwise."""
        if self._status is OperationStatus.SUCCESS:
            return self._data
        raise ResultError(self) from self._failure_cause()

    def _failure_cause(self) -> BaseException | None:
        # The exception behind a FAILED result, kept in this process only (never shown, never
        # compared): `unwrap` chains it, so an outer Retry can see that a nested command failed on
        # something transient and run the whole transaction again.
        return None

    def evolve(
        self,
        *,
        affected_entities: Sequence[AffectedEntity] | None = None,
        cache_info: CacheInfo | None = None,
        operation_id: str | None = None,
    ) -> Self:
        """Return a copy with the given fields replaced (those left at None are kept)."""
        return type(self)(
            self._status,
            self._data,
            self._errors,
            self._affected_entities if affected_entities is None else tuple(affected_entities),
            self._pagination,
            self._cache_info if cache_info is None else cache_info,
            self._operation_id if operation_id is None else operation_id,
        )

    def _fields(self) -> tuple[object, ...]:
        return (
            self._status,
            self._data,
            self._errors,
            self._affected_entities,
            self._pagination,
            self._cache_info,
            self._operation_id,
        )

    # Written out rather than attrs' eq, which also compares classes: a failed Result the bus made
    # (a private subclass that keeps its cause) equals a Result with the same fields.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # like any value carrying arbitrary data

    def __repr__(self) -> str:
        return (
            f"Result(status={self._status!s}, data={self._data!r}, errors={dict(self._errors)!r}, "
            f"affected_entities={self._affected_entities!r}, pagination={self._pagination!r}, "
            f"cache_info={self._cache_info!r}, operation_id={self._operation_id!r})"
        )


class ResultError(CqrsKitError):
    """Raised by `Result.unwrap()` on a failed result; `result` is that result.

    Raised inside a handler (say, after a nested command failed), it becomes the outer dispatch's
    result with the same status and errors.
    """

    def __init__(self, result: Result[Any]) -> None:
        super().__init__(f"{result.status}: {dict(result.errors)}")
        self.result = result


@attrs.define(repr=False, eq=False)
class _FailedResult(Result[Any]):
    """A failed Result that remembers, inside this process, the exception behind it.

    `Result.unwrap` chains that exception to the `ResultError` it raises, so when a nested command
    fails on a serialization failure or a deadlock and the outer handler unwraps its Result, the
    outer `Retry` sees the transient cause and runs the whole transaction again. The cause takes no
    part in equality or the repr, and never leaves the process.
    """

    _cause: BaseException | None = attrs.field(default=None, alias="cause")

    def _failure_cause(self) -> BaseException | None:
        return self._cause


def failed_result(
    status: OperationStatus, errors: Mapping[str, str], operation_id: str | None, cause: BaseException
) -> Result[Any]:
    """Return the failed Result of a dispatch that `cause` ended (see `cqrskit._outcome`)."""
    return _FailedResult(status, None, errors, (), None, None, operation_id, cause)


_SUCCESS = OperationStatus.SUCCESS


def handler_result(value: Any, operation_id: str | None) -> Result[Any]:
    """Return the dispatch's Result for what a handler returned: the one place this is decided.

    A plain value becomes a SUCCESS Result carrying it; a page fills in `pagination` too; a handler's
    own `Result` is kept, with the dispatch's operation id.
    """
    if type(value) not in WRAPPED_TYPES:  # the common case first: one set lookup
        return Result(_SUCCESS, value, _NO_ERRORS, (), None, None, operation_id)
    if isinstance(value, Result):
        return value if value._operation_id is operation_id else value.evolve(operation_id=operation_id)
    pagination: Pagination = value.pagination  # a Page or an OffsetPage
    return Result(_SUCCESS, value, _NO_ERRORS, (), pagination, None, operation_id)


WRAPPED_TYPES.update((Result, Page))
