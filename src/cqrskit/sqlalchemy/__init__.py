"""SQLAlchemy integration: `Database` (engines, sessions, transactions) and the `Transaction` behaviour.

Needs the ``sqlalchemy`` extra (SQLAlchemy's asyncio support and aiosqlite); PostgreSQL needs the
``postgres`` extra (asyncpg).
"""

try:
    import sqlalchemy.ext.asyncio  # noqa: F401 - fail here, with the fix, rather than deep inside
except ImportError as exc:  # pragma: no cover - exercised in a test that hides SQLAlchemy
    raise ImportError(
        "cqrskit.sqlalchemy needs SQLAlchemy with asyncio support: pip install 'cqrskit[sqlalchemy]'"
    ) from exc

from cqrskit.errors import CommitOutcomeUnknownError, NoActiveSessionError
from cqrskit.sqlalchemy._block import TransactionBlock
from cqrskit.sqlalchemy._database import Database
from cqrskit.sqlalchemy._transaction import Transaction

__all__ = ["CommitOutcomeUnknownError", "Database", "NoActiveSessionError", "Transaction", "TransactionBlock"]
