"""`RequireSameTenant`: a message about another tenant's resource is refused, one of the caller's goes on."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from cqrskit import Command, CommandBus, ConfigurationError, Context, OperationStatus, Principal
from cqrskit.behaviours import Authorization, Public, RequirePermissions, RequireSameTenant

S = OperationStatus


@attrs.frozen
class RenameProject(Command[None]):
    tenant_id: str
    project_id: str
    name: str


@attrs.frozen
class Untenanted(Command[None]):
    name: str


class RenameProjectHandler:
    async def handle(self, command: RenameProject, context: Context) -> None:
        return None


ADA = Principal("ada", permissions={"project:update"})
GRACE = Principal("grace")
ROOT = Principal("root", is_admin=True)
ACME_PROJECT = RenameProject("acme", "p1", "New name")


def decide(rule: RequireSameTenant, principal: Principal | None, tenant: str | None) -> OperationStatus:
    return rule.check(ACME_PROJECT, Context(principal, tenant=tenant))


class TestRequireSameTenant:
    """The tenant check first, then the rule it wraps."""

    @pytest.mark.parametrize(
        ("principal", "tenant", "expected"),
        [
            (ADA, "acme", S.SUCCESS),  # own tenant, authenticated
            (ADA, "globex", S.UNAUTHORIZED),  # another tenant's project
            (ADA, None, S.UNAUTHORIZED),  # a caller acting for no tenant
            (None, "acme", S.UNAUTHENTICATED),  # own tenant, but the default rule wants a login
            (None, "globex", S.UNAUTHENTICATED),
            (ROOT, "globex", S.UNAUTHORIZED),  # admins are held to their tenant by default
        ],
    )
    def test_default(self, principal: Principal | None, tenant: str | None, expected: S) -> None:
        """Only an authenticated caller acting for the project's own tenant passes the default rule."""
        assert decide(RequireSameTenant("tenant_id"), principal, tenant) is expected

    def test_the_wrapped_rule_decides_within_the_tenant(self) -> None:
        """With RequirePermissions inside, a caller of the right tenant still needs the permission."""
        rule = RequireSameTenant("tenant_id", rule=RequirePermissions("project:update"))
        assert decide(rule, ADA, "acme") is S.SUCCESS
        assert decide(rule, GRACE, "acme") is S.UNAUTHORIZED
        assert decide(rule, ADA, "globex") is S.UNAUTHORIZED

    def test_public_inside_lets_an_anonymous_caller_of_the_tenant_through(self) -> None:
        """``rule=Public()``: anonymous callers pass, but only for their own tenant's resources."""
        rule = RequireSameTenant("tenant_id", rule=Public())
        assert decide(rule, None, "acme") is S.SUCCESS
        assert decide(rule, None, "globex") is S.UNAUTHENTICATED

    def test_admin_override_when_asked(self) -> None:
        """``allow_admin_override=True`` lets an admin past the tenant check; the wrapped rule still runs."""
        rule = RequireSameTenant("tenant_id", allow_admin_override=True)
        assert decide(rule, ROOT, "globex") is S.SUCCESS
        assert decide(rule, ADA, "globex") is S.UNAUTHORIZED

    def test_describe_and_repr(self) -> None:
        """The route inspector's words name the field and the wrapped rule; the repr rebuilds it."""
        rule = RequireSameTenant("tenant_id", rule=RequirePermissions("project:update"))
        assert rule.describe() == (
            "requires tenant_id == the caller's tenant; then requires project:update; admins pass too"
        )
        assert repr(rule) == "RequireSameTenant('tenant_id', rule=RequirePermissions('project:update'))"


class TestOnABus:
    """Through `Authorization` on a command bus, and checked when the bus is built."""

    async def test_another_tenants_resource_is_unauthorized(self) -> None:
        """Acme's project renamed by a caller acting for Globex: UNAUTHORIZED; for Acme: done."""
        rules: dict[type, Any] = {RenameProject: RequireSameTenant("tenant_id")}
        bus = CommandBus({RenameProject: RenameProjectHandler()}, [Authorization(rules)])
        assert (await bus.execute(ACME_PROJECT, Context(ADA, tenant="acme"))).is_success
        refused = await bus.execute(ACME_PROJECT, Context(ADA, tenant="globex"))
        assert refused.status is S.UNAUTHORIZED

    def test_a_message_without_the_field_is_a_configuration_error(self) -> None:
        """The field is checked against the message type when the bus is built."""
        rules: dict[type, Any] = {Untenanted: RequireSameTenant("tenant_id")}
        with pytest.raises(ConfigurationError, match=r"Untenanted\.tenant_id"):
            CommandBus({Untenanted: RenameProjectHandler()}, [Authorization(rules)])

    def test_the_wrapped_rule_is_checked_at_build_too(self) -> None:
        """A wrapped RequirePermissions naming a missing resource field fails the build as well."""
        inner = RequirePermissions("project:update", resource_field="missing")
        rules: dict[type, Any] = {RenameProject: RequireSameTenant("tenant_id", rule=inner)}
        with pytest.raises(ConfigurationError, match=r"RenameProject\.missing"):
            CommandBus({RenameProject: RenameProjectHandler()}, [Authorization(rules)])

    def test_tenant_field_must_be_a_name(self) -> None:
        """A tenant_field that cannot be a field name is refused when the rule is made."""
        with pytest.raises(ConfigurationError, match="tenant_field"):
            RequireSameTenant("not a name")
