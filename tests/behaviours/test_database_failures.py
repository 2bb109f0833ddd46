"""Unit tests of cqrskit.behaviours._database_failures: what a database failure means.

`is_transient`, the public classifier, is tested through `Retry` in test_retry.py and against real
databases in tests/integration/test_transient_errors.py; this file covers the classifications the
SQLAlchemy `Transaction` uses (unique violation, connection lost) and the data error, on fakes that
carry the drivers' attributes and on the errors real SQLite and PostgreSQL drivers raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from cqrskit.behaviours import is_transient
from cqrskit.behaviours._database_failures import (
    causes,
    is_connection_lost,
    is_data_error,
    is_unique_violation,
)
from cqrskit.sqlalchemy import Database


class _Sqlstate(Exception):
    def __init__(self, code: str, attribute: str = "sqlstate") -> None:
        super().__init__(code)
        setattr(self, attribute, code)


class _SqliteError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.sqlite_errorcode = code


class DataError(Exception):
    """Named like PEP 249's (and asyncpg's) error for a value the database cannot take."""


def _wrapped(inner: BaseException) -> Exception:
    """An error that wraps `inner` the way SQLAlchemy's DBAPIError does, in ``orig``."""
    wrapper = Exception("wrapped")
    wrapper.orig = inner  # type: ignore[attr-defined]
    return wrapper


class TestCauses:
    """The one walk along an exception's chain."""

    def test_orig_cause_and_context_each_once(self) -> None:
        """The exception, its orig, its cause and its context, each yielded once, orig first."""
        orig, cause, context = ValueError("orig"), ValueError("cause"), ValueError("context")
        outer = _wrapped(orig)
        outer.__cause__, outer.__context__ = cause, context
        cause.__context__ = orig
        assert list(causes(outer)) == [outer, orig, cause, context]

    def test_a_cycle_or_a_long_chain_ends(self) -> None:
        """A cyclic chain ends, and at most 16 exceptions are looked at."""
        first, second = ValueError("a"), ValueError("b")
        first.__context__, second.__context__ = second, first
        assert list(causes(first)) == [first, second]
        head = current = ValueError("0")
        for n in range(100):
            current.__cause__ = current = ValueError(str(n))
        assert len(list(causes(head))) == 16


class TestUniqueViolation:
    """Unique and primary-key violations, through SQLAlchemy's wrapping."""

    def test_found_through_orig_and_cause(self) -> None:
        """SQLSTATE 23505 or SQLite's unique/primary-key codes, wherever they sit in the chain."""
        assert is_unique_violation(_wrapped(_Sqlstate("23505")))
        assert is_unique_violation(_wrapped(_Sqlstate("23505", "pgcode")))
        outer = RuntimeError("outer")
        outer.__cause__ = _SqliteError(2067)
        assert is_unique_violation(outer)
        assert is_unique_violation(_SqliteError(1555))

    def test_other_constraints_are_not(self) -> None:
        """A foreign key or a generic SQLite constraint failure is not a duplicate."""
        assert not is_unique_violation(_Sqlstate("23503"))
        assert not is_unique_violation(_SqliteError(787))
        assert not is_unique_violation(ValueError("23505"))


class TestConnectionLost:
    """A connection that broke, or a reply that never came, as Transaction asks of a failed COMMIT."""

    @pytest.mark.parametrize(
        "exc",
        [
            _Sqlstate("08006"),
            _Sqlstate("57P01"),
            _Sqlstate("08003", "pgcode"),
            ConnectionResetError(),
            TimeoutError(),
            _wrapped(ConnectionRefusedError()),
        ],
        ids=repr,
    )
    def test_lost(self, exc: BaseException) -> None:
        """Each of these says the connection is gone."""
        assert is_connection_lost(exc)

    def test_an_invalidated_connection_is_lost(self) -> None:
        """SQLAlchemy's ``connection_invalidated`` flag counts."""
        invalidated = Exception()
        invalidated.connection_invalidated = True  # type: ignore[attr-defined]
        assert is_connection_lost(invalidated)

    def test_a_refusal_is_not_lost(self) -> None:
        """A serialization failure or a busy SQLite database is the server answering."""
        assert not is_connection_lost(_Sqlstate("40001"))
        assert not is_connection_lost(_SqliteError(5))

    def test_a_timeout_is_lost_at_commit_but_not_transient(self) -> None:
        """At COMMIT a timeout leaves the outcome unknown; Retry does not re-run on one."""
        assert is_connection_lost(TimeoutError())
        assert not is_transient(TimeoutError())
        assert is_transient(_Sqlstate("08006"))
        assert is_connection_lost(_Sqlstate("08006"))


class TestDataError:
    """A value the database (or its driver) refuses."""

    @pytest.mark.parametrize(
        "exc",
        [
            _Sqlstate("22001"),  # string_data_right_truncation
            _Sqlstate("22P02", "pgcode"),  # invalid_text_representation
            _wrapped(_Sqlstate("22003")),  # numeric_value_out_of_range
            DataError("invalid input for query argument $1"),
        ],
        ids=repr,
    )
    def test_data_errors(self, exc: BaseException) -> None:
        """SQLSTATE class 22 and a PEP 249 DataError, wherever they sit in the chain."""
        assert is_data_error(exc)

    @pytest.mark.parametrize(
        "exc",
        [
            _Sqlstate("23505"),
            _Sqlstate("40001"),
            _SqliteError(5),
            ValueError("bad"),
            OverflowError("Python int too large to convert to SQLite INTEGER"),
            UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        ],
        ids=repr,
    )
    def test_not_data_errors(self, exc: BaseException) -> None:
        """Other failures, and an overflow or encoding error never raised inside a driver, are not."""
        assert not is_data_error(exc)

    def test_your_own_overflow_is_not_a_data_error(self) -> None:
        """An OverflowError your own code raises is a bug, not a value the database refused."""
        with pytest.raises(OverflowError) as caught:
            float(10**400)
        assert not is_data_error(caught.value)

    @pytest.mark.parametrize(
        ("value", "raised"),
        [(2**70, OverflowError), ("\ud800", UnicodeEncodeError)],
        ids=["int-too-large", "lone-surrogate"],
    )
    async def test_sqlite_refusing_a_parameter(self, value: object, raised: type[Exception]) -> None:
        """SQLite's driver cannot bind a huge int or a lone surrogate: a data error, not transient."""
        database = Database()
        try:
            async with database.engine.connect() as connection:
                await connection.execute(text("CREATE TABLE t (v)"))
                with pytest.raises(raised) as caught:
                    await connection.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})
        finally:
            await database.dispose()
        assert is_data_error(caught.value)
        assert not is_transient(caught.value)
        assert not is_unique_violation(caught.value)


@pytest.fixture
async def postgres(postgres_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection with a temporary table t (an int and a varchar(3)), gone when it closes."""
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("CREATE TEMPORARY TABLE t (i int, s varchar(3))"))
            yield connection
    finally:
        await engine.dispose()


@pytest.mark.postgres
class TestPostgreSQLDataErrors:
    """The data errors a real PostgreSQL (through asyncpg and SQLAlchemy) raises."""

    @pytest.mark.parametrize(
        ("statement", "parameters"),
        [
            ("INSERT INTO t (s) VALUES (:v)", {"v": "too long"}),  # 22001, from the server
            ("INSERT INTO t (s) VALUES (:v)", {"v": "a\x00"}),  # 22021, from the server
            ("SELECT 1 / :v", {"v": 0}),  # 22012, from the server
            ("INSERT INTO t (i) VALUES (:v)", {"v": 2**40}),  # asyncpg's DataError, on the client
            ("INSERT INTO t (s) VALUES (:v)", {"v": "\ud800"}),  # asyncpg cannot encode it
        ],
        ids=["too-long", "null-byte", "division-by-zero", "int-out-of-range", "lone-surrogate"],
    )
    async def test_refused_values(
        self, postgres: AsyncConnection, statement: str, parameters: dict[str, object]
    ) -> None:
        """Each refusal is a data error, and neither transient nor a unique violation."""
        with pytest.raises(DBAPIError) as caught:
            await asyncio.wait_for(postgres.execute(text(statement), parameters), timeout=10)
        await postgres.rollback()
        assert is_data_error(caught.value)
        assert not is_transient(caught.value)
        assert not is_unique_violation(caught.value)
        assert not is_connection_lost(caught.value)

    async def test_a_missing_table_is_not_a_data_error(self, postgres: AsyncConnection) -> None:
        """A statement the server refuses (42P01) is not a value it refused."""
        with pytest.raises(DBAPIError) as caught:
            await postgres.execute(text("SELECT * FROM no_such_table"))
        await postgres.rollback()
        assert not is_data_error(caught.value)
