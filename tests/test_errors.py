from __future__ import annotations

import pytest

from cqrskit import (
    ConfigurationError,
    ConflictError,
    CqrsKitError,
    DomainError,
    HandlerNotFoundError,
    NotFoundError,
    OperationStatus,
    PermissionDeniedError,
    Result,
    ResultError,
    ValidationFailedError,
)


class Orphan:
    pass


class TestDomainErrors:
    @pytest.mark.parametrize(
        ("error_type", "status", "builtin"),
        [
            (DomainError, OperationStatus.FAILED, Exception),
            (NotFoundError, OperationStatus.NOT_FOUND, LookupError),
            (ConflictError, OperationStatus.CONFLICT, Exception),
            (PermissionDeniedError, OperationStatus.UNAUTHORIZED, PermissionError),
        ],
    )
    def test_status_and_family(
        self, error_type: type[DomainError], status: OperationStatus, builtin: type
    ) -> None:
        """Each domain error names its status and subclasses CqrsKitError and its builtin category."""
        error = error_type("nope")
        assert error.status is status
        assert isinstance(error, CqrsKitError)
        assert isinstance(error, builtin)
        assert dict(error.errors) == {"detail": "nope"}

    def test_no_message_no_errors(self) -> None:
        """A domain error raised without a message carries no errors."""
        assert dict(NotFoundError().errors) == {}

    def test_validation_failed_error(self) -> None:
        """ValidationFailedError carries a read-only copy of the field errors and VALIDATION_ERROR."""
        given = {"email": "taken"}
        error = ValidationFailedError(given)
        given["email"] = "changed"
        assert error.status is OperationStatus.VALIDATION_ERROR
        assert dict(error.errors) == {"email": "taken"}
        assert isinstance(error, ValueError)
        with pytest.raises(TypeError):
            error.errors["x"] = "y"  # type: ignore[index]


class TestResultError:
    def test_carries_the_result(self) -> None:
        """ResultError keeps the result it was raised for and names its status."""
        result = Result.failure(OperationStatus.CONFLICT, {"detail": "dup"})
        error = ResultError(result)
        assert error.result is result
        assert isinstance(error, CqrsKitError)
        assert "conflict" in str(error)


class TestHandlerNotFoundError:
    def test_carries_the_type(self) -> None:
        """HandlerNotFoundError keeps the message type and names it in its text."""
        error = HandlerNotFoundError(Orphan)
        assert error.message_type is Orphan
        assert "Orphan" in str(error)
        assert isinstance(error, LookupError)
        assert isinstance(error, CqrsKitError)


class TestConfigurationError:
    def test_family(self) -> None:
        """ConfigurationError is a CqrsKitError and a ValueError."""
        assert issubclass(ConfigurationError, CqrsKitError)
        assert issubclass(ConfigurationError, ValueError)
