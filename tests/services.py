"""Reaching the real services integration tests use, and what happens when one is missing.

Each URL comes from an environment variable with the local default. When a service cannot be reached
its tests skip with the reason, except in CI (``CI=true``), where a missing service fails them.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get("CQRSKIT_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CQRSKIT_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("CQRSKIT_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("CQRSKIT_NATS_URL", "nats://127.0.0.1:4222")

_DEFAULT_PORTS = {"postgresql": 5432, "redis": 6379, "amqp": 5672, "nats": 4222}


def in_ci() -> bool:
    """True when running in CI, where every service must be there."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def reachable(url: str, timeout: float = 1.0) -> bool:
    """True when a TCP connection to the URL's host and port succeeds."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def require(name: str, url: str) -> str:
    """Return `url` when its service answers; otherwise skip, or fail in CI."""
    if reachable(url):
        return url
    reason = f"{name} is not reachable at {url}"
    if in_ci():
        pytest.fail(f"{reason}, and CI=true: integration tests must run in CI", pytrace=False)
    pytest.skip(reason)


async def drop_redis_keys(redis_url: str, prefix: str) -> None:
    """Delete every Redis key whose name starts with `prefix` (a test's own namespace)."""
    import redis.asyncio as redis

    client = redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
