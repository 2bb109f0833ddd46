"""Fixtures shared by the whole suite."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import settings

from tests import services

# Tests assert no timings, and Hypothesis's per-example deadline (200 ms) is one: on the shared machine
# a busy moment made a test fail now and then. Examples may take as long as they take.
settings.register_profile("cqrskit", deadline=None)
settings.load_profile("cqrskit")


@pytest.fixture
def unique_name() -> str:
    """A name no other test, run or session uses: for schemas, key prefixes and queue suffixes."""
    return "cqrskit_t_" + secrets.token_hex(6)


@pytest.fixture
def postgres_url() -> str:
    """The PostgreSQL URL (asyncpg driver); skips, or fails in CI, when the server is unreachable."""
    return services.require("PostgreSQL", services.POSTGRES_URL)


@pytest.fixture
def redis_url() -> str:
    """The Redis URL; skips, or fails in CI, when the server is unreachable."""
    return services.require("Redis", services.REDIS_URL)


@pytest.fixture
def rabbitmq_url() -> str:
    """The RabbitMQ URL; skips, or fails in CI, when the broker is unreachable."""
    return services.require("RabbitMQ", services.RABBITMQ_URL)


@pytest.fixture
def nats_url() -> str:
    """The NATS URL (JetStream on); skips, or fails in CI, when the server is unreachable."""
    return services.require("NATS", services.NATS_URL)
