"""SQLite without lost updates: our own BEGIN (IMMEDIATE for writes), WAL, a busy timeout.

The sqlite3 driver (and aiosqlite on top of it) begins a transaction lazily, at the first INSERT,
UPDATE or DELETE, and with a deferred BEGIN; two concurrent read-modify-write transactions then both
read the old value and one update is lost. Following SQLAlchemy's documented recipe we switch the
driver's own BEGIN off when a connection is made and emit ours in the engine's ``begin`` event:
``BEGIN IMMEDIATE`` takes the write lock at the start, so writers queue (for up to the busy timeout)
instead of interleaving. Read sessions carry an execution option that asks for a plain deferred BEGIN.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["BEGIN_OPTION", "install_hooks", "private_database_url"]

BEGIN_OPTION = "cqrskit_sqlite_begin"
"""Execution option naming the BEGIN variant: ``"IMMEDIATE"`` (the default) or ``"DEFERRED"``."""

_BEGIN_VARIANTS = frozenset({"IMMEDIATE", "DEFERRED", "EXCLUSIVE"})
_MEMORY_NAMES = frozenset({"", ":memory:"})


def private_database_url(url: URL, owner: object) -> tuple[URL, weakref.finalize[Any, Any] | None]:
    """Replace an in-memory SQLite URL with a file in a private temporary directory.

    An in-memory database lives in one connection; concurrent commands sharing it would see and roll
    back each other's work. A file database gets a real pool, WAL and BEGIN IMMEDIATE like any other.
    Returns the URL and a finalizer that deletes the directory when `owner` goes away or at exit
    (None when `url` names a file).
    """
    database = url.database or ""
    if database not in _MEMORY_NAMES:
        return url, None
    directory = tempfile.mkdtemp(prefix="cqrskit-sqlite-")
    cleanup = weakref.finalize(owner, shutil.rmtree, directory, ignore_errors=True)
    return url.set(database=str(Path(directory) / "database.sqlite3")), cleanup


def install_hooks(engine: AsyncEngine, busy_timeout: float) -> None:
    """Make `engine`'s SQLite connections use WAL, wait `busy_timeout` seconds for locks, and our BEGIN."""
    timeout_ms = int(busy_timeout * 1000)
    sync_engine = engine.sync_engine

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver must not emit BEGIN on its own: we emit it in on_begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    def on_begin(connection: Connection) -> None:
        variant = connection.get_execution_options().get(BEGIN_OPTION, "IMMEDIATE")
        if variant not in _BEGIN_VARIANTS:
            variant = "IMMEDIATE"
        connection.exec_driver_sql(f"BEGIN {variant}")

    event.listen(sync_engine, "connect", on_connect)
    event.listen(sync_engine, "begin", on_begin)
