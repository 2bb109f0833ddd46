"""A worker of the onboarding example that SIGKILLs itself once at a chosen point (for the crash tests).

``python -m tests.onboarding.crash_worker DATABASE_URL POINT MARKER``: POINT is ``after_state`` (the
process's state row is written, the transaction not committed) or ``after_commit`` (a step and what it
sent committed, nothing after); ``none`` never dies. MARKER is created just before the kill, so the
restarted worker runs through.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from examples.onboarding.container import Container


async def main(url: str, point: str, marker: Path) -> None:
    container = Container()
    container.config.database_url.from_value(url)
    container.config.activation_delay.from_value(dt.timedelta(seconds=0.3))
    runner = container.runner()
    seen = {"step": False}

    def kill() -> None:
        if point != "none" and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)

    def watch(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE CQRSKIT_PROCESS_INSTANCES"):
            seen["step"] = True
            if point == "after_state":
                kill()

    sa.event.listen(container.database().engine.sync_engine, "after_cursor_execute", watch)
    print("ready", flush=True)
    while True:
        await runner.run_once()
        if seen["step"] and point == "after_commit":
            kill()
        await asyncio.sleep(0.02)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
