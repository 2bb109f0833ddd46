"""``python -m cqrskit processes stuck``: the instances a deadline did not reach, one JSON line each."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import time
from typing import Any, TextIO

from dependency_injector import containers

from cqrskit._inspect import find_processes
from cqrskit.processes import StuckInstance, stuck_instances


async def stuck_processes_command(
    container: containers.Container, *, older_than: float, process: str | None, out: TextIO
) -> int:
    """Run ``processes stuck``: one JSON line per stuck instance of the container's process managers.

    Stuck is what `cqrskit.processes.stuck_instances` says: running, a deadline due more than
    `older_than` seconds ago, and no step since it fell due. Returns 0, or 2 when the container
    declares no process manager (or not the one `process` names) or one cannot be built.
    """
    reports = find_processes(container)
    broken = [report for report in reports if report.error is not None]
    for report in broken:
        print(f"{report.name}: cannot be built: {report.error}", file=sys.stderr)
    managers = [report.bus for report in reports if report.error is None]
    if process is not None:
        managers = [manager for manager in managers if manager.name == process]
    if broken or not managers:
        if not broken:
            wanted = f"named {process!r}" if process is not None else "at all"
            print(f"the container declares no process manager {wanted}", file=sys.stderr)
        return 2
    seen: set[tuple[int, str | None, str]] = set()
    databases: dict[int, Any] = {}
    try:
        for manager in managers:
            database = manager.database
            databases.setdefault(id(database), database)
            if (id(database), manager.schema, manager.name) in seen:
                continue  # two providers of one manager
            seen.add((id(database), manager.schema, manager.name))
            now = time.time()
            for stuck in await stuck_instances(
                database, schema=manager.schema, process=manager.name, older_than=older_than, now=now
            ):
                print(json.dumps(_stuck_line(stuck, now)), file=out)
    finally:
        for database in databases.values():
            with contextlib.suppress(Exception):
                await database.dispose()
    return 0


def _stuck_line(stuck: StuckInstance, now: float) -> dict[str, object]:
    return {
        "process": stuck.process,
        "key": stuck.key,
        "tenant": stuck.tenant,
        "status": str(stuck.status),
        "deadline": stuck.deadline,
        "due_at": _iso(stuck.due_at),
        "last_step_at": _iso(stuck.last_step_at),
        "overdue_seconds": round(now - stuck.due_at, 3),
    }


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat(timespec="milliseconds")
