"""Every exception cqrskit raises or understands.

Two families: errors a handler raises to report an expected outcome (`DomainError` and its subclasses,
each of which becomes a `Result` status), and wiring mistakes (`HandlerNotFoundError`,
`ConfigurationError`), which always raise and never become a Result.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

from cqrskit._names import qualified_name
from cqrskit._status import OperationStatus

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "CqrsKitError",
    "DomainError",
    "HandlerNotFoundError",
    "MissingExtraError",
    "NotAuthenticatedError",
    "NotFoundError",
    "PermissionDeniedError",
    "StaleOverrideError",
    "UnavailableError",
    "ValidationFailedError",
]

DETAIL = "detail"
"""The `Result.errors` key for an error that belongs to no single field."""


class CqrsKitError(Exception):
    """Base class of every cqrskit exception."""


class DomainError(CqrsKitError):
    """An expected failure a handler raises; the bus turns it into a failed `Result`.

    Its message is meant for the caller and ends up in ``Result.errors["detail"]``.
    """

    status: ClassVar[OperationStatus] = OperationStatus.FAILED

    @property
    def errors(self) -> Mapping[str, str]:
        """What the failed `Result` carries in `errors`."""
        return {DETAIL: str(self)} if self.args else {}


class NotFoundError(DomainError, LookupError):
    """What was asked for does not exist: status NOT_FOUND."""

    status = OperationStatus.NOT_FOUND


class ConflictError(DomainError):
    """The change clashes with the current state (a duplicate, a stale version): status CONFLICT."""

    status = OperationStatus.CONFLICT


class NotAuthenticatedError(DomainError, PermissionError):
    """The caller is not who they claim, or not signed in (a failed login): status UNAUTHENTICATED.

    HTTP answers it with 401; `PermissionDeniedError` is for a caller known but not allowed (403).
    """

    status = OperationStatus.UNAUTHENTICATED


class PermissionDeniedError(DomainError, PermissionError):
    """The caller may not do this: status UNAUTHORIZED."""

    status = OperationStatus.UNAUTHORIZED


class ValidationFailedError(DomainError, ValueError):
    """Fields are invalid: status VALIDATION_ERROR with one message per field.

    >>> ValidationFailedError({"email": "is already taken"}).errors["email"]
    'is already taken'
    """

    status = OperationStatus.VALIDATION_ERROR

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__(dict(errors))
        self._errors = MappingProxyType(dict(errors))

    @property
    def errors(self) -> Mapping[str, str]:
        """Field name to error message."""
        return self._errors


class UnavailableError(DomainError):
    """A dependency the operation needs is down or unreachable: status UNAVAILABLE (HTTP 503).

    `cqrskit.sqlalchemy` raises it, with the driver's error as ``__cause__``, when the database cannot
    be reached or the connection drops; raise it yourself for another dependency. Its message is shown
    to the caller, so keep hosts and internals out of it. `Retry` retries it when its cause is
    transient.
    """

    status = OperationStatus.UNAVAILABLE


class HandlerNotFoundError(CqrsKitError, LookupError):
    """No route for this message type on this bus; `message_type` is the type dispatched."""

    def __init__(self, message_type: type) -> None:
        super().__init__(
            f"no handler for {qualified_name(message_type)} on this bus; "
            "add it to the bus's handlers mapping in your container"
        )
        self.message_type = message_type


class ConfigurationError(CqrsKitError, ValueError):
    """A bus, behaviour or route was configured in a way that cannot work; raised when it is built."""


class StaleOverrideError(ConfigurationError):
    """A provider a bus was built from was overridden after the build, so the bus would not see it.

    Raised at the next dispatch of a watched bus (see `cqrskit.testing.watch_overrides`) instead of
    running with what the bus captured. `bus` names the bus, `provider` the provider overridden.
    """

    def __init__(self, bus: str, provider: str) -> None:
        super().__init__(
            f"{provider} was overridden (or an override of it removed) after {bus} was built, and {bus} "
            "still holds what it was built with. Override before the bus is built, use "
            f"cqrskit.testing.override_providers (it rebuilds the bus), or reset the bus after "
            f"overriding ({bus}.reset())"
        )
        self.bus = bus
        self.provider = provider


class MissingExtraError(CqrsKitError, ImportError):
    """A feature needs an optional dependency that is not installed; `extra` names the extra to add.

    >>> str(MissingExtraError("Tracing", "otel", "opentelemetry-api"))
    'Tracing needs opentelemetry-api, which is not installed: pip install cqrskit[otel]'
    """

    def __init__(self, feature: str, extra: str, package: str) -> None:
        super().__init__(f"{feature} needs {package}, which is not installed: pip install cqrskit[{extra}]")
        self.feature = feature
        self.extra = extra
        self.package = package
