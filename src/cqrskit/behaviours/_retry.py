"""`Retry` and `RetryPolicy`: run a dispatch again after a transient failure, with full-jitter backoff."""

from __future__ import annotations

import asyncio
import math
import random as _random
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from cqrskit._context import Context
from cqrskit._contracts import CallNext
from cqrskit._errors import ConfigurationError
from cqrskit._logs import library_logger
from cqrskit._names import qualified_name, short_name
from cqrskit._results import Result
from cqrskit._stages import Stage
from cqrskit.behaviours._database_failures import CommitOutcomeUnknownError, is_transient
from cqrskit.scope import current_transaction

__all__ = ["Retry", "RetryPolicy", "is_transient"]

Classifier = Callable[[BaseException], bool]
_CHAIN_LIMIT = 16


def _non_negative(name: str) -> Callable[[Any, attrs.Attribute[float], float], None]:
    def check(_instance: Any, _attribute: attrs.Attribute[float], value: float) -> None:
        if not (math.isfinite(value) and value >= 0):
            raise ConfigurationError(f"RetryPolicy.{name} must be a finite number >= 0, got {value!r}")

    return check


def _check_max_attempts(_instance: Any, _attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"RetryPolicy.max_attempts counts the first attempt and must be an int >= 1, got {value!r}"
        )


def _check_backoff(_instance: Any, _attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value >= 1):
        raise ConfigurationError(f"RetryPolicy.backoff must be a finite number >= 1, got {value!r}")


def _check_retry_on(
    _instance: Any, _attribute: attrs.Attribute[tuple[type[Exception], ...]], value: tuple[object, ...]
) -> None:
    for item in value:
        if not (isinstance(item, type) and issubclass(item, Exception)):
            raise ConfigurationError(
                f"RetryPolicy.retry_on takes Exception subclasses, got {item!r} "
                "(cancellation and other BaseExceptions are never retried)"
            )


def _float(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"expected a number of seconds, got {value!r}")
    return float(value)


@attrs.frozen
class RetryPolicy:
    """How `Retry` retries one message type.

    `max_attempts` counts the first attempt (3 means at most two retries). Before retry number ``n``
    (0 for the first) it sleeps ``min(max_delay, delay * backoff**n)`` seconds, or, with `jitter` (full
    jitter), a uniformly random fraction of that. `retry_on` adds exception types to those the
    classifier calls transient::

        RetryPolicy(max_attempts=5, delay=0.02, retry_on=(TimeoutError,))

    Invalid values raise `ConfigurationError`.
    """

    max_attempts: int = attrs.field(default=3, validator=_check_max_attempts)
    delay: float = attrs.field(default=0.05, converter=_float, validator=_non_negative("delay"))
    backoff: float = attrs.field(default=2.0, converter=_float, validator=_check_backoff)
    max_delay: float = attrs.field(default=2.0, converter=_float, validator=_non_negative("max_delay"))
    jitter: bool = True
    retry_on: tuple[type[Exception], ...] = attrs.field(
        default=(), converter=tuple, validator=_check_retry_on
    )

    def ceiling(self, retry: int) -> float:
        """Return the longest pause before retry number `retry` (0 for the first retry)."""
        try:
            grown = self.delay * self.backoff**retry
        except OverflowError:
            grown = math.inf
        return min(self.max_delay, grown)

    def describe(self) -> dict[str, object]:
        """Return the policy as plain data, for the route inspector."""
        return {
            "max_attempts": self.max_attempts,
            "delay": self.delay,
            "backoff": self.backoff,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
            "retry_on": [qualified_name(t) for t in self.retry_on],
        }


_DEFAULT_POLICY = RetryPolicy()
_NO_OVERRIDES: Mapping[type, RetryPolicy] = MappingProxyType({})


def _commit_outcome_unknown(exc: BaseException) -> bool:
    """Say whether the chain of `exc` holds a `CommitOutcomeUnknownError`."""
    current: BaseException | None = exc
    for _ in range(_CHAIN_LIMIT):
        if current is None:
            return False
        if isinstance(current, CommitOutcomeUnknownError):
            return True
        current = current.__cause__ or current.__context__
    return False


class Retry:
    """Runs the rest of the pipeline again when it raises a transient error.

    Its place is `Stage.RETRY`: outside `Transaction` (a serialization failure surfaces at COMMIT, so
    the whole transaction must run again; the bus refuses a `Transaction` listed before it) and inside
    Authorization and Validation, whose outcomes are Results and are never retried. It retries an
    exception the `classifier` (default `is_transient`) calls transient, or one of the policy's
    `retry_on` types, up to `max_attempts`, sleeping with full-jitter exponential backoff in between
    and logging a warning each time; the last exception propagates and the bus makes it FAILED. It
    never retries a cancellation, a failure Result, or a `CommitOutcomeUnknownError`. Inside a
    transaction a nested command joined (`cqrskit.scope.current_transaction()` is set) it makes one
    attempt: only the outermost Retry may run the transaction again::

        Retry(RetryPolicy(max_attempts=5), per_message={ImportUsers: RetryPolicy(max_attempts=1)})

    `sleep` and `random` are injectable so tests need not wait.
    """

    stage = Stage.RETRY

    def __init__(
        self,
        default: RetryPolicy = _DEFAULT_POLICY,
        per_message: Mapping[type[Any], RetryPolicy] = _NO_OVERRIDES,
        classifier: Classifier | None = None,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        logger: Any = None,
    ) -> None:
        if not isinstance(default, RetryPolicy):
            raise ConfigurationError(f"Retry's default must be a RetryPolicy, got {default!r}")
        for message_type, policy in per_message.items():
            if not isinstance(message_type, type):
                raise ConfigurationError(f"Retry's per_message keys are message types, got {message_type!r}")
            if not isinstance(policy, RetryPolicy):
                raise ConfigurationError(
                    f"Retry's policy for {message_type.__qualname__} must be a RetryPolicy, got {policy!r}"
                )
        if classifier is not None and not callable(classifier):
            raise ConfigurationError(f"Retry's classifier must be callable, got {classifier!r}")
        self._default = default
        self._policies: Mapping[type, RetryPolicy] = MappingProxyType(dict(per_message))
        self._classifier: Classifier = is_transient if classifier is None else classifier
        self._sleep = sleep
        self._random = random
        self._logger = logger if logger is not None else library_logger("cqrskit")

    @property
    def configured_types(self) -> frozenset[type]:
        """The message types with a setting of their own here (the route inspector checks they are routed)."""
        return frozenset(self._policies)

    def policy_for(self, message_type: type) -> RetryPolicy:
        """Return the policy that applies to `message_type`: its own, or the default."""
        return self._policies.get(message_type, self._default)

    def bind(self, message_type: type) -> Retry | None:
        """Leave the pipeline (None) of a type whose policy allows a single attempt: nothing to do."""
        return self if self.policy_for(message_type).max_attempts > 1 else None

    def bind_stream(self, message_type: type) -> None:
        """Stay out of streaming queries' pipelines: items already given cannot be given again."""

    def describe(self, message_type: type) -> Mapping[str, object]:
        """Return the retry policy for `message_type` and the classifier in use."""
        described = self.policy_for(message_type).describe()
        classifier = self._classifier
        described["classifier"] = short_name(classifier)
        return described

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Run the rest of the pipeline, again after each transient failure, up to the policy's limit."""
        attempt = 1
        while True:
            try:
                return await call_next(message, context)
            except Exception as exc:
                policy = self._policies.get(type(message), self._default)
                if not self._should_retry(exc, policy, attempt):
                    raise
                error_type = type(exc).__qualname__
            # Sleep outside the except block, so a later attempt's exception does not carry this one
            # as its __context__ (the classifier reads that chain).
            pause = policy.ceiling(attempt - 1)
            if policy.jitter:
                pause *= self._random()
            self._logger.warning(
                "dispatch_retrying",
                message_type=type(message).__qualname__,
                operation_id=context.operation_id,
                attempt=attempt,
                max_attempts=policy.max_attempts,
                error_type=error_type,
                delay=pause,
            )
            await self._sleep(pause)
            attempt += 1

    def _should_retry(self, exc: Exception, policy: RetryPolicy, attempt: int) -> bool:
        if attempt >= policy.max_attempts or current_transaction() is not None:
            return False
        if _commit_outcome_unknown(exc):
            return False
        return isinstance(exc, policy.retry_on) or self._classifier(exc)

    def __repr__(self) -> str:
        overrides = ", ".join(f"{t.__qualname__}: {p!r}" for t, p in self._policies.items())
        return f"Retry(default={self._default!r}, per_message={{{overrides}}})"
