"""Stuck process instances: running, past a deadline, and no step taken since it fell due."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import attrs
import sqlalchemy as sa

from cqrskit.events._tables import NO_TENANT
from cqrskit.processes._manager import ProcessStatus
from cqrskit.processes._tables import process_tables

if TYPE_CHECKING:
    from cqrskit.sqlalchemy._database import Database

__all__ = ["StuckInstance", "stuck_instances"]


@attrs.frozen
class StuckInstance:
    """A running instance whose deadline `deadline` fell due at `due_at` and that took no step since.

    `last_step_at` is when it last took a step (its ``updated_at``), not after `due_at` by definition;
    times are UNIX times. `status` is always `ProcessStatus.RUNNING`: an ended instance waits for
    nothing. `tenant` is the instance's tenant, None for one started without a tenant.
    """

    process: str
    key: str
    status: ProcessStatus
    deadline: str
    due_at: float
    last_step_at: float
    tenant: str | None = None


async def stuck_instances(
    database: Database,
    *,
    schema: str | None = None,
    process: str | None = None,
    older_than: float = 0.0,
    now: float | None = None,
) -> list[StuckInstance]:
    """Return the stuck instances of `schema` (of the process named `process` only, when given).

    An instance is stuck when it is running, one of its deadlines fell due more than `older_than`
    seconds before `now` (default: the current time), and it has taken no step since that deadline
    fell due (its last step is not later than the deadline's due time). A deadline is pending from
    the step that sets it until its own step is taken, it is cancelled, or the instance ends; so a
    stuck instance is one whose deadline did not reach it: no `ScheduleRunner` (or forwarder, relay
    or consumer) running, or the deadline command failed for good. One entry per instance, for its
    earliest such deadline, oldest first. An instance that sets no deadline is never stuck by this
    definition: nothing says when it should have moved on.
    """
    tables = process_tables(schema)
    instances, deadlines = tables.instances, tables.deadlines
    cutoff = (time.time() if now is None else now) - older_than
    query = (
        sa.select(
            instances.c.process,
            instances.c.key,
            instances.c.tenant,
            instances.c.status,
            instances.c.updated_at,
            deadlines.c.deadline,
            deadlines.c.due_at,
        )
        .join(
            deadlines,
            sa.and_(
                deadlines.c.process == instances.c.process,
                deadlines.c.tenant == instances.c.tenant,
                deadlines.c.key == instances.c.key,
            ),
        )
        .where(
            instances.c.status == str(ProcessStatus.RUNNING),
            deadlines.c.due_at <= cutoff,
            instances.c.updated_at <= deadlines.c.due_at,
        )
        .order_by(deadlines.c.due_at, instances.c.process, instances.c.key)
    )
    if process is not None:
        query = query.where(instances.c.process == process)
    async with database.read_session() as session:
        rows = (await session.execute(query)).all()
    found: dict[tuple[str, str, str], StuckInstance] = {}
    for row in rows:
        found.setdefault(
            (row.process, row.tenant, row.key),
            StuckInstance(
                row.process,
                row.key,
                ProcessStatus(row.status),
                row.deadline,
                row.due_at,
                row.updated_at,
                None if row.tenant == NO_TENANT else row.tenant,
            ),
        )
    return list(found.values())
