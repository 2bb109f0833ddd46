"""Fixtures the SQLAlchemy tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cqrskit.sqlalchemy import Database
from tests.database.support import create_tables


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    """A Database on a SQLite file of this test's own, with the test tables; disposed afterwards."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    await create_tables(database)
    try:
        yield database
    finally:
        await database.dispose()
