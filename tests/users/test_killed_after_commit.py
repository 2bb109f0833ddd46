"""A service process SIGKILLed between a command's COMMIT and the delivery of its event (issue 11).

The embedded default records the event in the command's transaction; the process that committed it
dies before delivering it; the next process delivers it, and the read model counts it exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from dependency_injector import providers
from sqlalchemy import text

from tests.asgi import asgi_client
from tests.users.conftest import ADMIN, CHEAP_SCRYPT_N, events_delivered

ROOT = Path(__file__).resolve().parents[2]


def _commit_then_die(url: str) -> None:
    """Run the command in a process of its own that SIGKILLs itself right after COMMIT."""
    killed = subprocess.run(  # noqa: S603 - this interpreter, a module of this repository
        [sys.executable, "-m", "tests.users.killed_after_commit", url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "committed success" in killed.stdout


async def test_an_event_committed_by_a_killed_process_is_delivered_once_after_restart(tmp_path: Path) -> None:
    """The projection ends one user up: not lost with the dead process, not counted twice."""
    from examples.users.app import create_app
    from examples.users.container import Container
    from examples.users.passwords import ScryptCost
    from examples.users.settings import Settings

    url = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    await asyncio.to_thread(_commit_then_die, url)

    container = Container()
    settings = Settings(
        database_url=url, scrypt_cost=ScryptCost(n=CHEAP_SCRYPT_N), configure_logging=False, demo=True
    )
    container.settings.override(providers.Object(settings))
    async with container.database().read_session() as session:
        waiting = await session.scalar(text("SELECT count(*) FROM cqrskit_outbox WHERE published_at IS NULL"))
    assert waiting == 1  # the dead process's event, recorded with its command and not delivered

    async with asgi_client(create_app(container), base_url="http://users.test") as client:
        await events_delivered(container)  # the restarted service's consumer picks it up
        response = await client.get("/users/stats", headers=ADMIN)
        assert response.status_code == 200, response.text
        # kim, plus the three demo accounts this start seeded: each counted once.
        assert response.json()["total"] == 4
        async with container.database().read_session() as session:
            users = await session.scalar(text("SELECT count(*) FROM users"))
            inbox = await session.scalar(text("SELECT count(*) FROM cqrskit_inbox"))
        assert users == 4
        assert inbox == 4  # one inbox row per event: nothing applied twice
