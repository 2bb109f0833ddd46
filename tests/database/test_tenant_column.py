"""TenantColumn: the SQL it builds, and the rows it lets through on a real SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, aliased, mapped_column

from cqrskit import ConfigurationError
from cqrskit.sqlalchemy import Database, TenantColumn, TenantRequiredError


class Base(DeclarativeBase):
    pass


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40))
    member_id: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(String(80))


core = MetaData()
plain = Table("plain", core, Column("id", Integer, primary_key=True))
labels = Table(
    "labels",
    core,
    Column("id", Integer, primary_key=True),
    Column("owner", String(40)),
    Column("plain_id", ForeignKey("plain.id")),
)

tenants = TenantColumn()


def sql(statement: Any) -> str:
    """The statement as PostgreSQL would get it, with its values inlined, on one line."""
    compiled = statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    return " ".join(str(compiled).split())


class TestScopeBuildsSql:
    """The WHERE clauses and values `scope` adds, statement by statement."""

    def test_an_orm_select_gets_the_tenant_condition_after_its_own(self) -> None:
        """select(Member).where(...) keeps its condition and adds members.tenant_id = 'a'."""
        statement = tenants.scope(select(Member).where(Member.id == 1), "a")
        assert sql(statement).endswith("WHERE members.id = 1 AND members.tenant_id = 'a'")

    def test_every_joined_table_with_the_column_is_scoped(self) -> None:
        """A join filters each side by the tenant, so a row of another tenant cannot join in."""
        statement = tenants.scope(select(Member.name, Note.text).join(Note, Note.member_id == Member.id), "a")
        assert sql(statement).endswith("WHERE members.tenant_id = 'a' AND notes.tenant_id = 'a'")

    def test_an_alias_is_scoped_under_its_own_name(self) -> None:
        """A self-join through aliased() scopes both the table and its alias."""
        other = aliased(Member)
        statement = tenants.scope(select(Member.id, other.id).join(other, other.name == Member.name), "a")
        assert sql(statement).endswith("WHERE members.tenant_id = 'a' AND members_1.tenant_id = 'a'")

    def test_a_table_without_the_column_is_left_alone(self) -> None:
        """Reference data with no tenant column joins in unscoped; the tenant's table is still scoped."""
        statement = tenants.scope(select(Member.id, plain.c.id), "a")
        assert sql(statement).endswith("WHERE members.tenant_id = 'a'")

    def test_update_and_delete_are_scoped_on_their_target(self) -> None:
        """UPDATE and DELETE get the condition on the table they change."""
        changed = tenants.scope(update(Member).where(Member.id == 1).values(name="x"), "a")
        removed = tenants.scope(delete(Member).where(Member.id == 1), "a")
        assert sql(changed) == "UPDATE members SET name='x' WHERE members.id = 1 AND members.tenant_id = 'a'"
        assert sql(removed) == "DELETE FROM members WHERE members.id = 1 AND members.tenant_id = 'a'"

    def test_insert_sets_the_column_over_a_value_given(self) -> None:
        """INSERT gets the tenant's value, even where the caller wrote another tenant's."""
        statement = tenants.scope(insert(Member).values(id=1, name="x", tenant_id="b"), "a")
        assert sql(statement) == "INSERT INTO members (id, tenant_id, name) VALUES (1, 'a', 'x')"

    def test_a_core_table_and_a_custom_column_name(self) -> None:
        """Core tables work the same, with the column named as configured."""
        statement = TenantColumn("owner").scope(select(labels).where(labels.c.id == 2), "a")
        assert sql(statement).endswith("WHERE labels.id = 2 AND labels.owner = 'a'")

    def test_no_tenant_when_not_required_means_the_rows_of_no_tenant(self) -> None:
        """required=False and no tenant scope to IS NULL, never to every tenant's rows."""
        optional = TenantColumn(required=False)
        assert sql(optional.scope(select(Member), None)).endswith("WHERE members.tenant_id IS NULL")
        assert "VALUES (1, NULL, 'x')" in sql(optional.scope(insert(Member).values(id=1, name="x"), None))

    def test_condition_gives_the_clause_for_a_subquery(self) -> None:
        """condition() scopes what scope() does not look into, here an EXISTS."""
        inner = select(Note.id).where(Note.member_id == Member.id, tenants.condition(Note, "a")).exists()
        statement = tenants.scope(select(Member.id).where(inner), "a")
        assert "notes.tenant_id = 'a'" in sql(statement)
        assert sql(statement).endswith("AND members.tenant_id = 'a'")
        assert sql(select(labels.c.id).where(TenantColumn("owner").condition(labels, "b"))).endswith(
            "WHERE labels.owner = 'b'"
        )


class TestScopeRefuses:
    """What `scope`, `condition` and `stamp` refuse, with the error that says why."""

    def test_no_tenant_when_one_is_required(self) -> None:
        """Every entry point raises TenantRequiredError for a missing tenant, naming the fix."""
        for attempt in (
            lambda: tenants.scope(select(Member), None),
            lambda: tenants.condition(Member, None),
            lambda: tenants.stamp(Member(id=1, name="x"), None),
        ):
            with pytest.raises(TenantRequiredError, match=r"Context\(tenant=\.\.\.\)"):
                attempt()

    def test_a_statement_with_no_table_carrying_the_column(self) -> None:
        """A statement that cannot be scoped is refused rather than run for every tenant."""
        with pytest.raises(ConfigurationError, match=r"has the tenant column .* \(tables: plain\)"):
            tenants.scope(select(plain), "a")
        with pytest.raises(ConfigurationError, match="has no tenant column"):
            tenants.scope(insert(plain).values(id=1), "a")
        with pytest.raises(ConfigurationError, match="has no tenant column"):
            tenants.condition(plain, "a")

    def test_raw_sql_and_insert_from_select(self) -> None:
        """text() and INSERT ... SELECT are refused, each with what to do instead."""
        with pytest.raises(ConfigurationError, match="scopes select"):
            tenants.scope(text("SELECT 1"), "a")  # type: ignore[type-var]
        with pytest.raises(ConfigurationError, match="scope the SELECT"):
            tenants.scope(insert(Member).from_select(["id", "name"], select(Member.id, Member.name)), "a")

    def test_stamping_an_object_of_another_tenant(self) -> None:
        """stamp() fills the column, and refuses an object that names another tenant."""
        assert tenants.stamp(Member(id=1, name="x"), "a").tenant_id == "a"
        with pytest.raises(ConfigurationError, match="belongs to tenant 'b'"):
            tenants.stamp(Member(id=1, name="x", tenant_id="b"), "a")

    def test_an_empty_column_name(self) -> None:
        """The column must be named."""
        with pytest.raises(ConfigurationError, match="needs the name"):
            TenantColumn("")


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    """A SQLite database holding the members and notes of two tenants with the same ids."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'tenants.sqlite3'}")
    async with database.engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    async with database.transaction() as session:
        for tenant in ("a", "b"):
            session.add_all([tenants.stamp(Member(id=n, name=f"{tenant}{n}"), tenant) for n in (1, 2)])
        a_notes = [{"id": n, "member_id": 1, "text": f"a note {n}"} for n in (1, 2)]
        await session.execute(tenants.scope(insert(Note), "a"), a_notes)
        await session.execute(
            tenants.scope(insert(Note), "b"), [{"id": 3, "member_id": 1, "text": "b note 3"}]
        )
    try:
        yield database
    finally:
        await database.dispose()


class TestScopeOnSqlite:
    """The scoped statements run, and each tenant gets only its own rows."""

    async def test_the_same_query_gives_each_tenant_its_own_rows(self, database: Database) -> None:
        """Two tenants with the same member ids read, join, update and delete only their own."""
        async with database.read_session() as session:
            names = {
                tenant: (
                    await session.scalars(tenants.scope(select(Member.name).order_by(Member.id), tenant))
                ).all()
                for tenant in ("a", "b")
            }
            joined = (
                await session.execute(
                    tenants.scope(select(Member.name, Note.text).join(Note, Note.member_id == Member.id), "b")
                )
            ).all()
        assert names == {"a": ["a1", "a2"], "b": ["b1", "b2"]}
        assert joined == [("b1", "b note 3")]
        async with database.transaction() as session:
            await session.execute(
                tenants.scope(update(Member).where(Member.id == 1).values(name="renamed"), "a")
            )
            await session.execute(tenants.scope(delete(Member).where(Member.id == 2), "a"))
        async with database.read_session() as session:
            rows = await session.execute(
                select(Member.tenant_id, Member.id, Member.name).order_by("tenant_id", "id")
            )
            assert rows.all() == [("a", 1, "renamed"), ("b", 1, "b1"), ("b", 2, "b2")]

    async def test_an_executemany_insert_writes_the_tenant_into_every_row(self, database: Database) -> None:
        """The fixture's multi-row INSERT through scope() stamped each row with its tenant."""
        async with database.read_session() as session:
            rows = (await session.execute(select(Note.tenant_id, Note.id).order_by(Note.id))).all()
        assert rows == [("a", 1), ("a", 2), ("b", 3)]
