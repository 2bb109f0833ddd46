"""SQLAlchemy integration: `Database`, `Transaction`, keeping tenants apart, and the errors they raise.

Needs the ``sqlalchemy`` extra (SQLAlchemy's asyncio support and aiosqlite); PostgreSQL needs the
``postgres`` extra (asyncpg).
"""

try:
    import sqlalchemy.ext.asyncio  # noqa: F401 - fail here, with the fix, rather than deep inside
except ImportError as exc:  # pragma: no cover - exercised in a test that hides SQLAlchemy
    raise ImportError(
        "cqrskit.sqlalchemy needs SQLAlchemy with asyncio support: pip install 'cqrskit[sqlalchemy]'"
    ) from exc

from cqrskit.behaviours._database_failures import CommitOutcomeUnknownError
from cqrskit.sqlalchemy._block import TransactionBlock
from cqrskit.sqlalchemy._database import Database
from cqrskit.sqlalchemy._errors import NoActiveSessionError, TenantRequiredError, UnknownTenantError
from cqrskit.sqlalchemy._invalidations import SqlInvalidationJournal
from cqrskit.sqlalchemy._tenant_column import TenantColumn
from cqrskit.sqlalchemy._tenant_schemas import SchemaPerTenant
from cqrskit.sqlalchemy._transaction import Transaction

__all__ = [
    "CommitOutcomeUnknownError",
    "Database",
    "NoActiveSessionError",
    "SchemaPerTenant",
    "SqlInvalidationJournal",
    "TenantColumn",
    "TenantRequiredError",
    "Transaction",
    "TransactionBlock",
    "UnknownTenantError",
]
