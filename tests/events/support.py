"""What the event tests share: envelopes built the way any producer could, and the outbox read by name."""

from __future__ import annotations

import time
import uuid
from typing import Any

import sqlalchemy as sa
from cattrs.preconf.json import make_converter

from cqrskit import AffectedEntity
from cqrskit.events import Envelope, Event, message_name
from cqrskit.sqlalchemy import Database

OUTBOX_TABLE = "cqrskit_outbox"  # the table create_event_tables makes, as a migration would see it
_converter = make_converter()


def wrap(message: Any) -> Envelope:
    """Wrap `message` for a transport as another producer would: a new id, its name, its JSON payload."""
    key = message.ordering_key() if isinstance(message, Event) else None
    if isinstance(key, AffectedEntity):
        key = f"{key.kind}:{key.id}"
    return Envelope(
        message_id=uuid.uuid4().hex,
        name=message_name(type(message)),
        payload=_converter.dumps(message).encode(),
        key=key,
        created_at=time.time(),
    )


async def outbox(database: Database, schema: str | None = None) -> sa.Table:
    """The outbox table of `schema`, read from the database itself."""
    async with database.engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: sa.Table(OUTBOX_TABLE, sa.MetaData(schema=schema), autoload_with=sync)
        )
