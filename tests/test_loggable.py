"""`cqrskit._loggable`: a database error is logged without its text; any other exception as it is."""

from __future__ import annotations

from cqrskit._loggable import database_error_summary, loggable_exception


class FakeDriverError(Exception):
    """Shaped like asyncpg's errors: an SQLSTATE and the names of what it is about."""

    sqlstate = "23514"
    table_name = "users"
    constraint_name = "users_age_check"
    schema_name = "public"


class FakeStatementError(Exception):
    """Shaped like SQLAlchemy's: the statement, its parameters and the driver's error."""

    def __init__(self, orig: BaseException) -> None:
        super().__init__(f"INSERT failed [parameters: ({ROW_VALUES!r},)]")
        self.statement = "INSERT INTO users VALUES ($1)"
        self.params = (ROW_VALUES,)
        self.orig = orig


# Built here so that no source line a traceback shows holds the values the tests look for.
ROW_VALUES = "".join(["scrypt$", "sec", "ret"])
EMAIL = "@".join(["a", "b.c"])


def raised() -> BaseException:
    try:
        try:
            raise FakeDriverError(f"Failing row contains ({ROW_VALUES})")
        except FakeDriverError as driver:
            raise FakeStatementError(driver) from driver
    except FakeStatementError as exc:
        return exc


def test_a_database_error_is_reduced_to_what_is_safe() -> None:
    fields = loggable_exception(raised())
    assert "exc_info" not in fields
    assert fields["database_error"] == {
        "sqlstate": "23514",
        "schema": "public",
        "table": "users",
        "constraint": "users_age_check",
    }
    assert ROW_VALUES not in fields["exception"]
    assert "FakeDriverError" in fields["exception"]
    assert "FakeStatementError" in fields["exception"]
    assert "def raised" not in fields["exception"]
    assert "in raised" in fields["exception"]


def test_a_wrapper_of_a_database_error_is_reduced_too() -> None:
    try:
        try:
            raise FakeDriverError(f"Key (email)=({EMAIL}) already exists")
        except FakeDriverError as driver:
            raise RuntimeError(f"could not save: {driver}") from driver
    except RuntimeError as exc:
        fields = loggable_exception(exc)
    assert EMAIL not in fields["exception"]


def test_any_other_exception_is_logged_as_it_is() -> None:
    error = ValueError("a useful message")
    assert loggable_exception(error) == {"exc_info": error}
    assert database_error_summary(error) is None
