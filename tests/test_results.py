from __future__ import annotations

import attrs
import pytest

from cqrskit import (
    AffectedEntity,
    CacheInfo,
    Context,
    OffsetPage,
    OperationStatus,
    Page,
    Pagination,
    Query,
    QueryBus,
    Result,
    ResultError,
)


class TestOperationStatus:
    def test_members(self) -> None:
        """The statuses are the eight of the design and UNAVAILABLE (amendments), as lower-case strings."""
        assert [s.name for s in OperationStatus] == [
            "SUCCESS",
            "VALIDATION_ERROR",
            "UNAUTHENTICATED",
            "UNAUTHORIZED",
            "NOT_FOUND",
            "CONFLICT",
            "TIMEOUT",
            "UNAVAILABLE",
            "FAILED",
        ]
        assert OperationStatus.NOT_FOUND.value == "not_found"


class TestResult:
    def test_success(self) -> None:
        """success() carries the data, no errors and the extras given."""
        entity = AffectedEntity("user", "1", "created")
        info = CacheInfo(hit=False, key="k", ttl=10)
        result = Result.success(42, affected_entities=[entity], cache_info=info)
        assert result.status is OperationStatus.SUCCESS
        assert result.data == 42
        assert dict(result.errors) == {}
        assert result.affected_entities == (entity,)
        assert result.cache_info is info
        assert result.pagination is None
        assert result.operation_id is None
        assert result.is_success
        assert not result.is_failure

    def test_failure(self) -> None:
        """failure() carries the status and a copy of the errors and no data."""
        errors = {"email": "taken"}
        result = Result.failure(OperationStatus.CONFLICT, errors)
        errors["email"] = "changed"
        assert result.status is OperationStatus.CONFLICT
        assert result.data is None
        assert dict(result.errors) == {"email": "taken"}
        assert result.is_failure
        assert not result.is_success

    def test_failure_without_errors(self) -> None:
        """failure() with no errors has an empty errors mapping."""
        assert dict(Result.failure(OperationStatus.NOT_FOUND).errors) == {}

    def test_failure_refuses_success(self) -> None:
        """failure() with the SUCCESS status is a mistake and raises."""
        with pytest.raises(ValueError, match="failure status"):
            Result.failure(OperationStatus.SUCCESS)

    def test_errors_cannot_be_mutated(self) -> None:
        """The errors mapping of a result is read-only."""
        result = Result.failure(OperationStatus.VALIDATION_ERROR, {"a": "b"})
        with pytest.raises(TypeError):
            result.errors["a"] = "c"  # type: ignore[index]

    def test_unwrap_success(self) -> None:
        """unwrap() returns the data of a successful result."""
        assert Result.success("x").unwrap() == "x"

    def test_unwrap_failure_raises_result_error(self) -> None:
        """unwrap() on a failure raises ResultError carrying that result."""
        result = Result.failure(OperationStatus.NOT_FOUND, {"detail": "no such user"})
        with pytest.raises(ResultError) as caught:
            result.unwrap()
        assert caught.value.result is result
        assert "not_found" in str(caught.value)

    def test_evolve_replaces_given_fields_only(self) -> None:
        """evolve() replaces the fields given and keeps the rest."""
        entity = AffectedEntity("user", "1", "updated")
        result = Result.success(1, cache_info=CacheInfo(True, "k", None))
        evolved = result.evolve(affected_entities=[entity], operation_id="op")
        assert evolved.affected_entities == (entity,)
        assert evolved.operation_id == "op"
        assert evolved.cache_info == result.cache_info
        assert evolved.data == 1
        assert result.operation_id is None
        info = CacheInfo(False, "k2", 5)
        assert evolved.evolve(cache_info=info).cache_info is info

    @pytest.mark.parametrize(
        "field",
        ["status", "data", "errors", "affected_entities", "pagination", "cache_info", "operation_id"],
    )
    def test_assigning_a_field_raises(self, field: str) -> None:
        """Every public field of a result is read-only."""
        result = Result.success(1)
        with pytest.raises(AttributeError):
            setattr(result, field, None)

    def test_no_new_attributes(self) -> None:
        """A result is slotted, so no attribute can be added to it."""
        with pytest.raises(AttributeError):
            Result.success(1).extra = 1  # type: ignore[attr-defined]

    def test_equality(self) -> None:
        """Results with equal fields are equal."""
        assert Result.success(1) == Result.success(1)
        assert Result.success(1) != Result.success(2)

    def test_a_page_fills_in_pagination(self) -> None:
        """success() with a Page derives the pagination from it."""
        page = Page(items=[1, 2], total_count=5, page=2, page_size=2)
        result = Result.success(page)
        assert result.data is page
        assert result.pagination == page.pagination
        assert result.pagination == Pagination(2, 2, 5, 3, True, True)

    def test_repr(self) -> None:
        """The repr shows the status and the data."""
        text = repr(Result.success(7))
        assert "status=success" in text
        assert "data=7" in text


class TestPage:
    @pytest.mark.parametrize(
        ("total", "page", "size", "expected"),
        [
            (0, 1, 10, (0, False, False)),
            (1, 1, 10, (1, False, False)),
            (10, 1, 10, (1, False, False)),
            (11, 1, 10, (2, True, False)),
            (11, 2, 10, (2, False, True)),
            (30, 2, 10, (3, True, True)),
            (30, 5, 10, (3, False, True)),
        ],
    )
    def test_pagination_maths(
        self, total: int, page: int, size: int, expected: tuple[int, bool, bool]
    ) -> None:
        """Total pages round up and next/previous follow from the page's position."""
        pagination = Page(items=(), total_count=total, page=page, page_size=size).pagination
        assert (pagination.total_pages, pagination.has_next, pagination.has_previous) == expected
        assert (pagination.page, pagination.page_size, pagination.total_count) == (page, size, total)

    def test_items_become_a_tuple(self) -> None:
        """Items given as a list are stored as a tuple."""
        assert Page(items=[1, 2], total_count=2, page=1, page_size=2).items == (1, 2)

    @pytest.mark.parametrize(
        ("total", "page", "size", "text"),
        [(1, 0, 10, "page counts from 1"), (1, 1, 0, "page_size"), (-1, 1, 10, "total_count")],
    )
    def test_bad_input(self, total: int, page: int, size: int, text: str) -> None:
        """A page number below 1, a non-positive size or a negative total raises ValueError."""
        with pytest.raises(ValueError, match=text):
            Page(items=(), total_count=total, page=page, page_size=size)

    def test_immutable(self) -> None:
        """Assigning a field of a page raises."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            Page(items=(), total_count=0, page=1, page_size=1).page = 2  # type: ignore[misc]


class TestPagination:
    def test_fields(self) -> None:
        """A pagination is a frozen value with six fields."""
        pagination = Pagination(1, 10, 0, 0, False, False)
        assert attrs.fields_dict(Pagination).keys() == {
            "page",
            "page_size",
            "total_count",
            "total_pages",
            "has_next",
            "has_previous",
            "offset",
            "limit",
        }
        assert (pagination.offset, pagination.limit) == (0, 10)  # derived from page and page_size
        assert Pagination(3, 10, 50, 5, True, True).offset == 20
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            pagination.page = 2  # type: ignore[misc]


class TestOffsetPage:
    def test_pagination(self) -> None:
        """An OffsetPage's pagination keeps its offset and limit and derives the page around them."""
        middle = OffsetPage(["c", "d"], total_count=5, offset=2, limit=2)
        assert middle.items == ("c", "d")
        assert middle.pagination == Pagination(2, 2, 5, 3, True, True, offset=2, limit=2)
        first = OffsetPage(["a"], total_count=1, offset=0, limit=10).pagination
        assert (first.page, first.has_previous, first.has_next, first.total_pages) == (1, False, False, 1)
        unaligned = OffsetPage(["d", "e"], total_count=5, offset=3, limit=2).pagination
        assert (unaligned.page, unaligned.offset, unaligned.has_next) == (2, 3, False)
        empty = OffsetPage([], total_count=0, offset=0, limit=5).pagination
        assert (empty.total_pages, empty.has_next) == (0, False)

    @pytest.mark.parametrize(("offset", "limit", "total"), [(-1, 5, 0), (0, 0, 0), (0, 5, -1)])
    def test_refuses_impossible_values(self, offset: int, limit: int, total: int) -> None:
        """A negative offset or total, or a limit below 1, is refused."""
        with pytest.raises(ValueError, match=r"offset|limit|total_count"):
            OffsetPage([], total_count=total, offset=offset, limit=limit)

    async def test_fills_the_result(self) -> None:
        """Returned by a handler or given to Result.success, it fills Result.pagination like a Page."""

        class Window(Query[OffsetPage[int]]):
            pass

        class WindowHandler:
            async def handle(self, query: Window, context: Context) -> OffsetPage[int]:
                return OffsetPage([3, 4], total_count=10, offset=2, limit=2)

        result = await QueryBus(handlers={Window: WindowHandler()}).execute(Window())
        assert result.pagination == OffsetPage([3, 4], total_count=10, offset=2, limit=2).pagination
        assert result.data.items == (3, 4)
        assert Result.success(OffsetPage([], 0, 0, 1)).pagination is not None


class TestCacheInfo:
    def test_fields(self) -> None:
        """A cache info holds hit, key and ttl and is frozen."""
        info = CacheInfo(hit=True, key="users:1", ttl=30.0)
        assert (info.hit, info.key, info.ttl) == (True, "users:1", 30.0)
        assert CacheInfo(False, "k", None).ttl is None
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            info.hit = False  # type: ignore[misc]


class TestAffectedEntity:
    def test_fields(self) -> None:
        """An affected entity holds kind, id, change and the fields, stored as a tuple."""
        entity = AffectedEntity("user", "42", "updated", ["email"])
        assert (entity.kind, entity.id, entity.change, entity.fields) == ("user", "42", "updated", ("email",))
        assert AffectedEntity("user", "1", "created").fields == ()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            entity.kind = "order"  # type: ignore[misc]
