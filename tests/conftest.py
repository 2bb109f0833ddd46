"""Fixtures shared by the whole suite."""

from __future__ import annotations

import secrets

import pytest

from tests import services


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
