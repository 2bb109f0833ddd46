"""Authorization and its rules."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from dependency_injector import containers, providers
from structlog.testing import capture_logs

from cqrskit import Command, CommandBus, ConfigurationError, Context, OperationStatus, Principal, QueryBus
from cqrskit.behaviours import (
    DENY,
    Authenticated,
    Authorization,
    AuthorizationRule,
    Public,
    RequirePermissions,
)
from tests.behaviours.policy_support import CallNextStub, EchoHandler, GetName, Ping, Register, Rename, Sleep

S = OperationStatus


@attrs.frozen
class Transfer(Command[None]):
    """Resource-scoped, without the owner exception."""

    account_id: int


@attrs.frozen
class Purge(Command[None]):
    """Admins may not override this one."""


@attrs.frozen
class Report(Command[None]):
    """Needs two permissions at once."""


RULES: dict[type, AuthorizationRule] = {
    Ping: RequirePermissions("user:create"),
    Rename: RequirePermissions("user:update", resource_field="user_id", allow_owner=True),
    Transfer: RequirePermissions("account:transfer", resource_field="account_id"),
    Purge: RequirePermissions("system:purge", allow_admin_override=False),
    Report: RequirePermissions("report:read", "report:export"),
    Register: Public(),
    GetName: Authenticated(),
}  # Sleep has no rule: the default, DENY, applies

ANONYMOUS = None
NOBODY = Principal("7")
ADMIN = Principal("root", is_admin=True)

CASES = [
    ("anonymous", Ping(), ANONYMOUS, S.UNAUTHENTICATED),
    ("no permission", Ping(), NOBODY, S.UNAUTHORIZED),
    ("another permission", Ping(), Principal("7", {"user:delete"}), S.UNAUTHORIZED),
    ("global permission", Ping(), Principal("7", {"user:create"}), S.SUCCESS),
    ("scoped permission is not global", Ping(), Principal("7", {"user:create:1"}), S.UNAUTHORIZED),
    ("anonymous on a resource", Rename(42, "x"), ANONYMOUS, S.UNAUTHENTICATED),
    ("resource permission", Rename(42, "x"), Principal("7", {"user:update:42"}), S.SUCCESS),
    ("another resource's permission", Rename(42, "x"), Principal("7", {"user:update:43"}), S.UNAUTHORIZED),
    ("global permission on a resource", Rename(42, "x"), Principal("7", {"user:update"}), S.SUCCESS),
    ("owner", Rename(42, "x"), Principal("42"), S.SUCCESS),
    ("not the owner", Rename(42, "x"), Principal("41"), S.UNAUTHORIZED),
    ("owner without allow_owner", Transfer(5), Principal("5"), S.UNAUTHORIZED),
    ("resource permission without owner", Transfer(5), Principal("9", {"account:transfer:5"}), S.SUCCESS),
    ("admin override", Ping(), ADMIN, S.SUCCESS),
    ("admin override on a resource", Rename(42, "x"), ADMIN, S.SUCCESS),
    ("admin override disabled", Purge(), ADMIN, S.UNAUTHORIZED),
    ("admin with the permission", Purge(), Principal("root", {"system:purge"}, is_admin=True), S.SUCCESS),
    ("one of two permissions", Report(), Principal("7", {"report:read"}), S.UNAUTHORIZED),
    ("both permissions", Report(), Principal("7", {"report:read", "report:export"}), S.SUCCESS),
    ("unmapped type, anonymous", Sleep(), ANONYMOUS, S.UNAUTHENTICATED),
    ("unmapped type, principal", Sleep(), Principal("7", {"user:create"}), S.UNAUTHORIZED),
    ("unmapped type, admin", Sleep(), ADMIN, S.UNAUTHORIZED),
    ("public, anonymous", Register("a@b", "password", 1), ANONYMOUS, S.SUCCESS),
    ("authenticated, anonymous", GetName(1), ANONYMOUS, S.UNAUTHENTICATED),
    ("authenticated, principal", GetName(1), NOBODY, S.SUCCESS),
]


class Container(containers.DeclarativeContainer):
    """Both buses behind one Authorization."""

    handler = providers.Singleton(EchoHandler)
    authorization = providers.Singleton(Authorization, rules=RULES)
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            dict.fromkeys((Ping, Rename, Transfer, Purge, Report, Register, Sleep), handler)
        ),
        behaviours=providers.List(authorization),
    )
    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict({GetName: handler}),
        behaviours=providers.List(authorization),
    )


class TestAuthorization:
    """Authorization called directly with a fake call_next."""

    @pytest.mark.parametrize(("name", "message", "principal", "expected"), CASES, ids=[c[0] for c in CASES])
    async def test_table(self, name: str, message: Any, principal: Principal | None, expected: S) -> None:
        """Each case gives its expected status; the rest of the pipeline runs only when allowed."""
        call_next = CallNextStub()
        result = await Authorization(RULES)(message, Context(principal=principal), call_next)
        assert result.status is expected
        assert call_next.calls == (1 if expected is S.SUCCESS else 0)

    async def test_refusals_do_not_reveal_the_permission(self) -> None:
        """Neither refusal's text names the rule or the permission missing."""
        authorization = Authorization(RULES)
        for principal in (ANONYMOUS, NOBODY):
            result = await authorization(Ping(), Context(principal=principal), CallNextStub())
            assert result.is_failure
            assert "user:create" not in repr(result)
        anonymous = await authorization(Ping(), Context(), CallNextStub())
        unmapped = await authorization(Sleep(), Context(), CallNextStub())
        assert anonymous == unmapped  # an anonymous caller cannot tell a guarded type from an unmapped one

    async def test_refusals_are_logged_at_debug_with_the_rule(self) -> None:
        """The refusing rule and the principal are logged at debug for operators."""
        with capture_logs() as logs:
            await Authorization(RULES)(Ping(), Context(principal=NOBODY, operation_id="op-1"), CallNextStub())
        assert logs == [
            {
                "event": "authorization_refused",
                "log_level": "debug",
                "message_type": "Ping",
                "operation_id": "op-1",
                "principal_id": "7",
                "status": "unauthorized",
                "rule": "requires user:create; admins pass too",
            }
        ]

    async def test_a_rule_returning_nonsense_fails_closed(self) -> None:
        """A custom rule returning anything but SUCCESS refuses, as UNAUTHORIZED."""

        class Sloppy:
            def check(self, message: Any, context: Context) -> Any:
                return None

            def describe(self) -> str:
                return "forgot to return"

        result = await Authorization({Ping: Sloppy()})(Ping(), Context(principal=ADMIN), CallNextStub())
        assert result.status is S.UNAUTHORIZED

    async def test_custom_default(self) -> None:
        """A default other than DENY applies to every type without a rule."""
        authorization = Authorization({}, default=Authenticated())
        assert (await authorization(Sleep(), Context(principal=NOBODY), CallNextStub())).is_success
        assert (await authorization(Sleep(), Context(), CallNextStub())).status is S.UNAUTHENTICATED

    def test_describe(self) -> None:
        """describe() gives each type's rule in words and whether it is the default."""
        authorization = Authorization(RULES)
        assert authorization.describe(Rename) == {
            "rule": "requires user:update (globally or for the resource in user_id); "
            "the owner (user_id == principal id) may too; admins pass too",
            "default": False,
        }
        assert authorization.describe(Purge)["rule"] == "requires system:purge; admins may not override"
        assert authorization.describe(Sleep) == {"rule": "denied to everyone", "default": True}
        assert authorization.describe(Register)["rule"] == "public: anyone, anonymous included"
        assert authorization.describe(GetName)["rule"] == "requires an authenticated principal"

    def test_repr(self) -> None:
        """Reprs read like the configuration that built them."""
        assert repr(Authorization({Ping: RequirePermissions("a", "b")})) == (
            "Authorization({Ping: RequirePermissions('a', 'b')}, default=DENY)"
        )
        assert repr(
            RequirePermissions("x", resource_field="id", allow_owner=True, allow_admin_override=False)
        ) == ("RequirePermissions('x', resource_field='id', allow_owner=True, allow_admin_override=False)")
        assert (repr(Public()), repr(Authenticated()), repr(DENY)) == ("Public()", "Authenticated()", "DENY")

    def test_binds_to_every_type(self) -> None:
        """Authorization takes part in every pipeline, mapped or not (fail closed)."""
        authorization = Authorization(RULES)
        assert all(authorization.bind(t) is not None for t in (Ping, Rename, Sleep, GetName))


class TestRuleConfiguration:
    """Rules and Authorization refuse settings that cannot work."""

    @pytest.mark.parametrize(
        ("args", "kwargs"),
        [
            ((), {}),
            (("",), {}),
            ((" user:create",), {}),
            ((42,), {}),
            (("user:update",), {"allow_owner": True}),
            (("user:update",), {"resource_field": "user id"}),
            (("user:update",), {"resource_field": 3}),
        ],
    )
    def test_require_permissions_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Missing permissions, bad permissions, allow_owner without resource_field are refused."""
        with pytest.raises(ConfigurationError):
            RequirePermissions(*args, **kwargs)

    def test_resource_field_must_be_a_field_of_the_message(self) -> None:
        """A resource_field the message type lacks is refused when the bus asks about that type."""
        authorization = Authorization({Ping: RequirePermissions("x", resource_field="user_id")})
        with pytest.raises(ConfigurationError, match=r"Ping\.user_id"):
            authorization.bind(Ping)
        with pytest.raises(ConfigurationError, match=r"Ping\.user_id"):
            authorization.describe(Ping)

    def test_resource_field_checked_at_bus_build(self) -> None:
        """Building a bus from a container with such a rule raises ConfigurationError."""

        class Broken(containers.DeclarativeContainer):
            command_bus = providers.Singleton(
                CommandBus,
                handlers=providers.Dict({Ping: providers.Factory(EchoHandler)}),
                behaviours=providers.List(
                    providers.Singleton(
                        Authorization, rules={Ping: RequirePermissions("x", resource_field="user_id")}
                    )
                ),
            )

        with pytest.raises(ConfigurationError, match="not a field"):
            Broken().command_bus()

    def test_resource_field_may_be_a_property(self) -> None:
        """A property of the message class is accepted as resource_field."""

        @attrs.frozen
        class Move(Command[None]):
            path: str

            @property
            def folder(self) -> str:
                return self.path.rsplit("/", 1)[0]

        authorization = Authorization({Move: RequirePermissions("fs:write", resource_field="folder")})
        assert authorization.bind(Move) is not None

    @pytest.mark.parametrize(
        ("rules", "default"),
        [
            ([Ping], DENY),
            ({"Ping": Public()}, DENY),
            ({Ping: "public"}, DENY),
            ({Ping: Public}, DENY),  # the class, not an instance
            ({}, None),
        ],
    )
    def test_authorization_arguments(self, rules: Any, default: Any) -> None:
        """Rules must map types to rule objects, and the default must be a rule."""
        with pytest.raises(ConfigurationError):
            Authorization(rules, default)


class TestAuthorizationOnABus:
    """Authorization inside buses built from a DeclarativeContainer."""

    @pytest.mark.parametrize(("name", "message", "principal", "expected"), CASES, ids=[c[0] for c in CASES])
    async def test_table(self, name: str, message: Any, principal: Principal | None, expected: S) -> None:
        """Through the bus each case gives its expected status, with a generic error text."""
        container = Container()
        bus: Any = container.query_bus() if isinstance(message, GetName) else container.command_bus()
        result = await bus.execute(message, Context(principal=principal))
        assert result.status is expected
        assert result.operation_id
        assert container.handler().calls == (1 if expected is S.SUCCESS else 0)
        if expected is not S.SUCCESS:
            assert list(result.errors) == ["detail"]
