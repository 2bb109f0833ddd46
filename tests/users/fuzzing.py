"""The schemathesis run both fuzz tests of the example make: every operation, one generation mode."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings

from tests.users.conftest import ADMIN

Check = Callable[[Any, Any], list[str]]
"""What a run asks of each response: ``check(case, response)`` returns the problems it found."""


def fuzz(
    service_url: str, mode: str, examples: int, check: Check
) -> tuple[collections.Counter[tuple[str, int]], list[str]]:
    """Call every operation of the service's document with `examples` generated cases, as the admin.

    Return how many responses each (operation, status) got, and every problem `check` reported, with
    the operation named (an exception the run raises is reported too, once per operation).
    """
    import schemathesis

    generation = (
        schemathesis.GenerationMode.POSITIVE if mode == "positive" else schemathesis.GenerationMode.NEGATIVE
    )
    schema = schemathesis.openapi.from_url(f"{service_url}/openapi.json")
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()
    failures: list[str] = []
    for found in schema.get_all_operations():
        operation = found.ok()
        if mode == "negative" and operation.label == "GET /users/stats":
            continue  # no parameter, no body: nothing to make invalid

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=generation))
        def call(case: Any) -> None:
            response = case.call(headers=ADMIN)
            statuses[(case.operation.label, response.status_code)] += 1
            failures.extend(f"{case.operation.label}: {problem}" for problem in check(case, response))

        try:
            call()
        except Exception as exc:  # a failure hypothesis raised: reported with the others
            failures.append(f"{operation.label}: {type(exc).__name__}: {exc}")
    return statuses, failures
