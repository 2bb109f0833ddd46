"""Giving library tables made before tenants existed their ``tenant`` column, in place.

The ``create_tables`` methods call `add_tenant_columns` after creating what is missing, so a
deployment whose tables predate tenants is upgraded by the start-up step it already runs. A table
that has the column is left alone, so the check costs one look at the table's columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

__all__ = ["add_tenant_columns"]

TENANT_COLUMN = "tenant"


def add_tenant_columns(connection: Any, tables: Sequence[sa.Table]) -> list[str]:
    """Add the ``tenant`` column, and the keys that include it, to those of `tables` that lack it.

    `connection` is a synchronous SQLAlchemy connection in a transaction (call it through
    ``run_sync``). Rows already there get ``""`` (or NULL where the column may be null): they
    belonged to no tenant. On PostgreSQL the table is altered (the primary key and unique
    constraints that now include the tenant are replaced); SQLite cannot change a primary key, so
    the table is rebuilt under its name and its rows copied. Return the names of the tables upgraded.
    """
    upgraded: list[str] = []
    for table in tables:
        if TENANT_COLUMN not in table.c:
            continue
        inspector = sa.inspect(connection)
        if not inspector.has_table(table.name, schema=table.schema):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name, schema=table.schema)}
        if TENANT_COLUMN in present:
            continue
        if connection.dialect.name == "postgresql":
            _alter(connection, inspector, table)
        else:
            _rebuild(connection, inspector, table)
        upgraded.append(table.name)
    return upgraded


def _filler(table: sa.Table) -> str:
    return "NULL" if table.c[TENANT_COLUMN].nullable else "''"


def _run(connection: Any, statement: str) -> None:
    connection.execute(sa.text(statement))


def _alter(connection: Any, inspector: Any, table: sa.Table) -> None:
    """PostgreSQL: add the column, then swap each key that now includes it for the new one."""
    quote = connection.dialect.identifier_preparer.quote
    name = connection.dialect.identifier_preparer.format_table(table)
    tenant = quote(TENANT_COLUMN)
    null = "" if table.c[TENANT_COLUMN].nullable else f" NOT NULL DEFAULT {_filler(table)}"
    _run(connection, f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
    _run(connection, f"ALTER TABLE {name} ADD COLUMN {tenant} VARCHAR(255){null}")
    if TENANT_COLUMN in table.primary_key.columns:
        old_key = quote(inspector.get_pk_constraint(table.name, schema=table.schema)["name"])
        columns = ", ".join(quote(c.name) for c in table.primary_key.columns)
        _run(connection, f"ALTER TABLE {name} DROP CONSTRAINT {old_key}, ADD PRIMARY KEY ({columns})")
    old_uniques = inspector.get_unique_constraints(table.name, schema=table.schema)
    for constraint in table.constraints:
        if not isinstance(constraint, sa.UniqueConstraint) or TENANT_COLUMN not in constraint.columns:
            continue
        without = sorted(c.name for c in constraint.columns if c.name != TENANT_COLUMN)
        for old in old_uniques:
            if sorted(old["column_names"]) == without:
                _run(connection, f"ALTER TABLE {name} DROP CONSTRAINT {quote(old['name'])}")
        columns = ", ".join(quote(c.name) for c in constraint.columns)
        _run(
            connection, f"ALTER TABLE {name} ADD CONSTRAINT {quote(str(constraint.name))} UNIQUE ({columns})"
        )


def _rebuild(connection: Any, inspector: Any, table: sa.Table) -> None:
    """SQLite: rename the old table aside, create the new one, copy the rows, drop the old one."""
    quote = connection.dialect.identifier_preparer.quote
    name, aside = quote(table.name), quote(f"{table.name}_before_tenants")
    for index in inspector.get_indexes(table.name, schema=table.schema):
        _run(connection, f"DROP INDEX {quote(str(index['name']))}")  # the new table reuses the names
    _run(connection, f"ALTER TABLE {name} RENAME TO {aside}")
    table.create(connection)
    listed = ", ".join(quote(c.name) for c in table.columns if c.name != TENANT_COLUMN)
    tenant = quote(TENANT_COLUMN)
    # Only the library's own table and column names are interpolated: nothing comes from outside.
    copy = f"INSERT INTO {name} ({listed}, {tenant}) SELECT {listed}, {_filler(table)} FROM {aside}"  # noqa: S608
    _run(connection, copy)
    _run(connection, f"DROP TABLE {aside}")
