"""SchemaPerTenant without a server: the tenant-to-schema mapping, the search_path, what it refuses.

tests/integration/test_tenant_isolation.py runs it on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cqrskit import ConfigurationError, NotFoundError
from cqrskit.sqlalchemy import Database, SchemaPerTenant, TenantRequiredError, UnknownTenantError


class TestMapping:
    """A tenant id becomes a quoted schema name, one to one, or is refused."""

    def test_the_schema_is_the_prefix_and_the_id_with_case_kept(self) -> None:
        """'acme' and 'Acme' are two tenants, so they get two schemas."""
        schemas = SchemaPerTenant()
        assert schemas.schema_for("acme") == "tenant_acme"
        assert schemas.schema_for("Acme") == "tenant_Acme"
        assert SchemaPerTenant("org_").schema_for("a-1_b") == "org_a-1_b"

    def test_the_search_path_quotes_every_name_tenant_first(self) -> None:
        """The tenant's schema comes before the shared ones, each a quoted identifier."""
        schemas = SchemaPerTenant(shared=["reference", 'odd"name'])
        assert schemas.search_path("acme") == '"tenant_acme", "reference", "odd""name"'
        assert SchemaPerTenant().search_path("acme") == '"tenant_acme"'

    @pytest.mark.parametrize(
        "tenant",
        ['a"; SET search_path = public; --', "a,public", "a b", "", "é", "a\x00", "x" * 57],
    )
    def test_an_id_that_cannot_name_a_schema_is_an_unknown_tenant(self, tenant: str) -> None:
        """Quotes, commas, spaces, non-ASCII, NUL and names past 63 bytes never reach SQL."""
        with pytest.raises(UnknownTenantError) as raised:
            SchemaPerTenant().search_path(tenant)
        assert raised.value.tenant == tenant
        assert isinstance(raised.value, NotFoundError)

    def test_the_longest_id_that_fits(self) -> None:
        """'tenant_' plus 56 characters is 63 bytes: PostgreSQL's limit, no truncation."""
        assert len(SchemaPerTenant().schema_for("x" * 56)) == 63

    def test_no_tenant(self) -> None:
        """Required: TenantRequiredError. Not required: the shared schemas only, or an empty path."""
        with pytest.raises(TenantRequiredError, match=r"Context\(tenant=\.\.\.\)"):
            SchemaPerTenant().search_path(None)
        assert SchemaPerTenant(shared=["common"], required=False).search_path(None) == '"common"'
        assert SchemaPerTenant(required=False).search_path(None) == ""


class TestConfiguration:
    """Settings that could let a tenant reach another's or shared data are refused when built."""

    @pytest.mark.parametrize("prefix", ["", "pg_", "Tenant_", "1t_", "t-", "t" * 63])
    def test_a_prefix_that_is_not_a_safe_lowercase_name(self, prefix: str) -> None:
        """An empty prefix would map tenant 'public' to public; 'pg_' is reserved by PostgreSQL."""
        with pytest.raises(ConfigurationError, match="prefix"):
            SchemaPerTenant(prefix)

    def test_a_shared_schema_that_could_be_a_tenants(self) -> None:
        """A shared schema named like a tenant's, or not a PostgreSQL name at all, is refused."""
        with pytest.raises(ConfigurationError, match="starts with the tenant prefix"):
            SchemaPerTenant(shared=["tenant_common"])
        with pytest.raises(ConfigurationError, match="not a PostgreSQL name"):
            SchemaPerTenant(shared=[""])

    def test_sqlite_is_refused_when_the_database_is_built(self, tmp_path: Path) -> None:
        """SQLite has no schemas to switch between: the error names the tenant column instead."""
        with pytest.raises(ConfigurationError, match=r"needs PostgreSQL.*TenantColumn"):
            Database(f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}", tenant_schemas=SchemaPerTenant())

    def test_repr_says_how_it_is_configured(self) -> None:
        """The route inspector and logs show the prefix, the shared schemas and whether a tenant is needed."""
        assert repr(SchemaPerTenant(shared=["common"])) == (
            "SchemaPerTenant(prefix='tenant_', shared=('common',), required=True)"
        )
