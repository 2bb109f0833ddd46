"""`TenantColumn`: tenants sharing tables, each row marked with its tenant, every statement scoped to one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Delete, FromClause, Insert, Join, Select, Update
from sqlalchemy.sql.expression import Alias, TableClause

from cqrskit._errors import ConfigurationError
from cqrskit.sqlalchemy._errors import TenantRequiredError

__all__ = ["TenantColumn"]

_Statement = TypeVar("_Statement", Select[Any], Update, Delete, Insert)
_Instance = TypeVar("_Instance")


def _tables(clause: FromClause) -> Iterator[FromClause]:
    """Yield the tables (and aliases of tables) a FROM item is made of, looking inside joins only."""
    if isinstance(clause, Join):
        yield from _tables(clause.left)
        yield from _tables(clause.right)
    elif isinstance(clause, TableClause) or (
        isinstance(clause, Alias) and isinstance(clause.element, TableClause)
    ):
        yield clause


class TenantColumn:
    """Keep tenants apart in shared tables: every row has a tenant column, every statement is scoped to one.

    Inject one into your repositories (a container ``Singleton``) and pass each statement, with the
    tenant of the dispatch (``context.tenant``, which the handler hands its repository), through
    `scope`::

        rows = await session.execute(tenants.scope(select(User).where(User.id == user_id), tenant))

    `scope` adds ``WHERE <table>.tenant_id = :tenant`` for each table of a SELECT's FROM clause (joined
    tables included) that has the column, and of an UPDATE's or DELETE's target table; on an INSERT it
    sets the column. `stamp` sets it on an ORM object you add to the session. With no tenant it raises
    `TenantRequiredError`; with `required` False it scopes to the rows whose column is NULL (the data
    of no tenant), never to every tenant's rows.

    It looks at the statement's own FROM clause: a subquery, a CTE or a correlated ``EXISTS`` inside
    it is yours to scope (`condition` gives the clause for one table), and raw SQL (``text()``) is
    refused. A statement with no table carrying the column is refused too (`ConfigurationError`),
    rather than run unscoped.
    """

    def __init__(self, name: str = "tenant_id", *, required: bool = True) -> None:
        if not name:
            raise ConfigurationError("TenantColumn needs the name of the tenant column")
        self.name = name
        """The name of the tenant column in every table it scopes."""
        self.required = required
        """Whether scoping to no tenant is refused (else it means the rows whose column is NULL)."""

    def _check(self, tenant: str | None) -> None:
        if tenant is None and self.required:
            raise TenantRequiredError(
                f"this statement is scoped by the {self.name!r} column and the dispatch has no tenant: "
                "dispatch with Context(tenant=...), or build TenantColumn(required=False) for data that "
                "is no tenant's"
            )

    def condition(self, table: Any, tenant: str | None) -> ColumnElement[bool]:
        """Return ``<table>.<name> = :tenant`` (``IS NULL`` for no tenant) for a Table, alias or ORM entity.

        Use it where `scope` does not look: inside a subquery, a CTE, an ``EXISTS`` or a join's ON.
        """
        self._check(tenant)
        columns = getattr(table, "c", None)
        column = getattr(columns, self.name, None) if columns is not None else getattr(table, self.name, None)
        if column is None:
            raise ConfigurationError(f"{table!r} has no tenant column {self.name!r}")
        return column.is_(None) if tenant is None else column == tenant  # type: ignore[no-any-return]

    def scope(self, statement: _Statement, tenant: str | None) -> _Statement:
        """Return `statement` limited to `tenant`'s rows (SELECT, UPDATE, DELETE) or writing them (INSERT).

        Raises `TenantRequiredError` for no tenant when one is required, and `ConfigurationError` for
        a statement it cannot scope: one without a table that has the column, or ``INSERT ... SELECT``
        (scope the SELECT, and select the tenant into the column).
        """
        self._check(tenant)
        if isinstance(statement, Insert):
            if statement.select is not None:
                raise ConfigurationError(
                    "TenantColumn cannot scope INSERT ... SELECT: scope the SELECT and select the tenant "
                    f"into {self.name!r} yourself"
                )
            self._column(statement.table, statement)
            return statement.values({self.name: tenant})
        if isinstance(statement, Select):
            targets = [table for clause in statement.get_final_froms() for table in _tables(clause)]
        elif isinstance(statement, Update | Delete):
            targets = list(_tables(statement.table))
        else:
            raise ConfigurationError(
                f"TenantColumn scopes select(), update(), delete() and insert() statements, not {statement!r}"
            )
        conditions = [self._column(table, None) for table in targets]
        present = [column for column in conditions if column is not None]
        if not present:
            raise ConfigurationError(
                f"no table in this statement has the tenant column {self.name!r}, so it cannot be scoped "
                f"to a tenant (tables: {', '.join(str(getattr(t, 'name', t)) for t in targets) or 'none'})"
            )
        return statement.where(
            *(column.is_(None) if tenant is None else column == tenant for column in present)
        )

    def _column(self, table: FromClause, statement: Insert | None) -> Any:
        column = table.c.get(self.name)
        if column is None and statement is not None:
            raise ConfigurationError(f"cannot insert into {table}: it has no tenant column {self.name!r}")
        return column

    def stamp(self, instance: _Instance, tenant: str | None) -> _Instance:
        """Set the tenant column of an ORM object you are about to add, and return it.

        ``session.add(tenants.stamp(User(...), context.tenant))``. An object that already names another
        tenant is refused (`ConfigurationError`): it would be written into that tenant's data.
        """
        self._check(tenant)
        current = getattr(instance, self.name, None)
        if current is not None and current != tenant:
            raise ConfigurationError(
                f"{type(instance).__qualname__} belongs to tenant {current!r}, not to {tenant!r}; "
                "it cannot be written for this one"
            )
        setattr(instance, self.name, tenant)
        return instance

    def __repr__(self) -> str:
        return f"TenantColumn({self.name!r}, required={self.required!r})"
