"""What the example service logs through failing INSERTs, bad input, timeouts and crashes holds no secret.

The real service under uvicorn on a PostgreSQL database of this test's own, logging at debug level to a
file; the test scans that file for the plaintext password and for any scrypt hash (the stored one
included).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests import services
from tests.users.conftest import ADMIN, CHEAP_SCRYPT_N
from tests.users.faults import own_database

PASSWORD = "Tr0ub4dor&3-never-logged"
HASH = re.compile(r"scrypt\$\d+\$\d+\$\d+\$")  # the start of every hash PasswordHasher writes


def user(name: str, **changes: str) -> dict[str, str]:
    return {
        "email": f"{name}@example.com",
        "username": name,
        "password": PASSWORD,
        "full_name": name.title(),
        **changes,
    }


@pytest.mark.postgres
async def test_no_password_or_hash_in_the_logs(tmp_path: Path) -> None:
    from examples.users.tour import running_service

    server_url = services.require("PostgreSQL", services.POSTGRES_URL)
    log = tmp_path / "service.log"
    async with own_database(server_url) as url:
        environ = {
            "USERS_DATABASE_URL": url,
            "USERS_SCRYPT_N": str(CHEAP_SCRYPT_N),
            "USERS_LOG_LEVEL": "debug",
            "USERS_COMMAND_TIMEOUT": "1",
        }
        with running_service(environ, log=log) as base_url:
            engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
            statuses: dict[str, int] = {}
            try:
                async with engine.connect() as connection:
                    # Constraints the handlers do not check, so the INSERT itself fails.
                    await connection.execute(
                        text("ALTER TABLE users ADD CONSTRAINT no_zed CHECK (full_name <> 'Zed')")
                    )
                    await connection.execute(text("CREATE UNIQUE INDEX same_name ON users (full_name)"))
                async with httpx.AsyncClient(base_url=base_url, headers=ADMIN, timeout=30) as client:
                    created = await client.post("/users", json=user("dora"))
                    statuses["created"] = created.status_code
                    statuses["unique"] = (
                        await client.post("/users", json=user("erin", full_name="Dora"))
                    ).status_code
                    statuses["check"] = (
                        await client.post("/users", json=user("fred", full_name="Zed"))
                    ).status_code
                    statuses["invalid"] = (
                        await client.post("/users", json=user("x", email="nope"))
                    ).status_code
                    statuses["nul"] = (
                        await client.post("/users", json=user("gina", full_name="G\x00"))
                    ).status_code
                    async with engine.connect() as locker:
                        # An explicit BEGIN on the autocommit connection: the lock lasts until ROLLBACK.
                        await locker.execute(text("BEGIN"))
                        await locker.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
                        statuses["timeout"] = (await client.post("/users", json=user("hugo"))).status_code
                        await locker.execute(text("ROLLBACK"))
                    batch = {"users": [user("ivan"), user("jane", full_name="Zed")]}
                    statuses["batch_check"] = (await client.post("/users/batch", json=batch)).status_code
                async with engine.connect() as connection:
                    stored = (
                        await connection.execute(
                            text("SELECT password_hash FROM users WHERE username = 'dora'")
                        )
                    ).scalar_one()
            finally:
                await engine.dispose()
            await asyncio.sleep(0)  # the service's last lines are written before it stops
    print("statuses:", statuses)
    assert statuses == {
        "created": 201,
        "unique": 409,
        "check": 500,
        "invalid": 422,
        "nul": 422,
        "timeout": 504,
        "batch_check": 500,
    }
    logged = log.read_text(errors="replace")
    assert "no_zed" in logged  # the CHECK violation was logged, by its constraint's name
    assert "dispatch_completed" in logged
    assert PASSWORD not in logged
    assert stored not in logged
    assert HASH.search(logged) is None, HASH.search(logged)
    print(f"scanned {len(logged.splitlines())} log lines")
