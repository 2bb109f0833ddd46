"""Run one CreateUser on the example's container, then SIGKILL this process before any delivery.

Used by tests/users/test_killed_after_commit.py: ``python -m tests.users.killed_after_commit DB_URL``.
The command commits its user row and its `UserCreated` outbox row together; the embedded consumer never
ran in this process, so the event is recorded and undelivered when the process dies.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from dependency_injector import providers

from cqrskit import Context, Principal


async def main(database_url: str) -> None:
    from examples.users.app import prepare_database
    from examples.users.container import Container
    from examples.users.messages import CreateUser
    from examples.users.passwords import ScryptCost
    from examples.users.settings import Settings

    container = Container()
    settings = Settings(
        database_url=database_url, scrypt_cost=ScryptCost(n=16), configure_logging=False, demo=True
    )
    container.settings.override(providers.Object(settings))
    await prepare_database(container)
    admin = Context(principal=Principal("00000000-0000-4000-8000-000000000001", is_admin=True))
    command = CreateUser("kim@example.com", "kim", "correct horse battery", "Kim")
    result = await container.command_bus().execute(command, admin)
    print("committed", result.status, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # after COMMIT, before any delivery


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
