"""A schema-driven fuzz of the example's OpenAPI document on SQLite and on PostgreSQL, bounded in examples.

Checks on every response: no 5xx; every 4xx is an ``application/problem+json`` body with its status and
operation id; every 422 names its fields under ``errors``, or says in ``detail`` what no single field
is at fault for. The figures (requests per
operation and status) are printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import services
from tests.users.conftest import CHEAP_SCRYPT_N
from tests.users.fuzzing import fuzz

EXAMPLES_PER_OPERATION = 30  # x 7 operations x 2 modes x 2 databases: about 800 requests


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.redis])],
)
def fuzzed_service(request: pytest.FixtureRequest) -> Iterator[str]:
    """The service under uvicorn: on SQLite, or on a PostgreSQL database of its own with Redis."""
    import asyncio

    from examples.users.tour import running_service

    from tests.users.faults import create_database, drop_database

    environ = {"USERS_SCRYPT_N": str(CHEAP_SCRYPT_N)}
    if request.param == "sqlite":
        with running_service(environ) as base_url:
            yield base_url
        return
    server_url = services.require("PostgreSQL", services.POSTGRES_URL)
    redis_url = services.require("Redis", services.REDIS_URL)
    url = asyncio.run(create_database(server_url))
    namespace = url.rsplit("/", 1)[-1]
    try:
        environ |= {
            "USERS_DATABASE_URL": url,
            "USERS_REDIS_URL": redis_url,
            "USERS_CACHE_NAMESPACE": namespace,
        }
        with running_service(environ) as base_url:
            yield base_url
    finally:
        asyncio.run(drop_database(server_url, url))
        asyncio.run(services.drop_redis_keys(redis_url, namespace))


def problems_of(response: Any) -> list[str]:
    """What is wrong with `response` by this test's rules (empty when nothing is)."""
    code = response.status_code
    if code >= 500:
        return [f"server error {code}: {response.text[:300]}"]
    if code < 400:
        return []
    content_type = response.headers.get("content-type")
    if isinstance(content_type, list):  # schemathesis gives each header as a list of its values
        content_type = ", ".join(content_type)
    if content_type != "application/problem+json":
        return [f"{code} is not a problem: {content_type}"]
    body = response.json()
    if body.get("status") != code or not body.get("operation_id"):
        return [f"{code} problem without its status or operation id: {body}"]
    if code == 422 and not body.get("errors") and not body.get("detail"):
        # A field error is named under "errors"; one about no single field (PATCH with no field to
        # change) is the problem's "detail".
        return [f"422 naming nothing: {body}"]
    return []


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_5xx_and_every_4xx_a_problem(fuzzed_service: str, mode: str) -> None:
    statuses, failures = fuzz(
        fuzzed_service, mode, EXAMPLES_PER_OPERATION, lambda _, response: problems_of(response)
    )
    print(mode, sum(statuses.values()), "requests:", dict(sorted(statuses.items())))
    assert failures == []
    assert sum(statuses.values()) > 100
