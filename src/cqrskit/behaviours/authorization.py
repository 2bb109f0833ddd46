"""`Authorization` and its rules: who may dispatch which message type, decided before anything else runs."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

import attrs
import structlog

from cqrskit.context import Context
from cqrskit.errors import DETAIL, ConfigurationError
from cqrskit.protocols import CallNext
from cqrskit.results import OperationStatus, Result

__all__ = ["DENY", "Authenticated", "Authorization", "AuthorizationRule", "Public", "RequirePermissions"]

_ALLOW = OperationStatus.SUCCESS
_UNAUTHENTICATED = OperationStatus.UNAUTHENTICATED
_UNAUTHORIZED = OperationStatus.UNAUTHORIZED

# The refusals say nothing about the rule: which permission was missing is logged at debug only.
_UNAUTHENTICATED_ERRORS = MappingProxyType({DETAIL: "authentication is required"})
_UNAUTHORIZED_ERRORS = MappingProxyType({DETAIL: "you are not allowed to do this"})


class AuthorizationRule(Protocol):
    """Decides whether the caller in `context` may dispatch `message`.

    ``check`` returns ``OperationStatus.SUCCESS`` to allow, ``UNAUTHENTICATED`` when a principal is
    needed and there is none, ``UNAUTHORIZED`` when the principal may not; any other value refuses as
    UNAUTHORIZED, so a rule that forgets to return fails closed. It runs on every dispatch, so keep it
    cheap and free of I/O (a check that needs the database belongs in the handler, which can raise
    `PermissionDeniedError`). ``describe`` returns the rule in words for the route inspector.

    A rule may also define ``check_message_type(message_type)``, called when a bus is built, to refuse
    a type it cannot work with by raising `ConfigurationError`.
    """

    def check(self, message: Any, context: Context, /) -> OperationStatus:
        """Return SUCCESS to allow the dispatch, UNAUTHENTICATED or UNAUTHORIZED to refuse it."""
        ...

    def describe(self) -> str:
        """Return the rule in words."""
        ...


def _field_names(message_type: type) -> set[str]:
    if attrs.has(message_type):
        return {field.name for field in attrs.fields(message_type)}
    if dataclasses.is_dataclass(message_type):
        return {field.name for field in dataclasses.fields(message_type)}
    names: set[str] = set()
    for klass in message_type.__mro__:
        names.update(getattr(klass, "__annotations__", {}))
    return names


class RequirePermissions:
    """Allows a principal holding every permission named; refuses anonymous callers (UNAUTHENTICATED).

    With `resource_field`, a permission may also be held for the one resource the message is about:
    ``RequirePermissions("user:update", resource_field="user_id")`` lets through a principal holding
    ``"user:update"`` or ``"user:update:<str(message.user_id)>"``. With `allow_owner` the principal whose
    id equals that value passes too. Admins pass unless `allow_admin_override` is False.
    """

    __slots__ = ("_admins", "_owner", "_permissions", "_required", "_resource", "_resource_field")

    def __init__(
        self,
        *permissions: str,
        resource_field: str | None = None,
        allow_owner: bool = False,
        allow_admin_override: bool = True,
    ) -> None:
        if not permissions:
            raise ConfigurationError(
                "RequirePermissions needs at least one permission; "
                "use Authenticated() to require a login only"
            )
        given: tuple[object, ...] = permissions  # checked as the untyped values a container may pass
        for permission in given:
            if not isinstance(permission, str) or not permission or permission != permission.strip():
                raise ConfigurationError(
                    f"a permission is a non-empty string without spaces around it, got {permission!r}"
                )
        field: object = resource_field
        if field is not None and not (isinstance(field, str) and field.isidentifier()):
            raise ConfigurationError(
                f"resource_field must be the name of a message field, got {resource_field!r}"
            )
        if allow_owner and resource_field is None:
            raise ConfigurationError("allow_owner needs resource_field: the field holding the owner's id")
        self._permissions = tuple(dict.fromkeys(permissions))
        self._required = frozenset(self._permissions)
        self._resource_field = resource_field
        self._resource: Callable[[Any], object] | None = (
            None if resource_field is None else operator.attrgetter(resource_field)
        )
        self._owner = allow_owner
        self._admins = allow_admin_override

    def check_message_type(self, message_type: type) -> None:
        """Raise `ConfigurationError` when `message_type` has no field named `resource_field`."""
        field = self._resource_field
        if field is not None and field not in _field_names(message_type) and not hasattr(message_type, field):
            raise ConfigurationError(
                f"{self!r} reads {message_type.__qualname__}.{field}, which is not a field of that message"
            )

    def check(self, message: Any, context: Context, /) -> OperationStatus:
        """Allow a principal with the permissions (globally or for this resource), its owner or an admin."""
        principal = context.principal
        if principal is None:
            return _UNAUTHENTICATED
        if principal.is_admin and self._admins:
            return _ALLOW
        held = principal.permissions
        if self._resource is None:
            return _ALLOW if self._required <= held else _UNAUTHORIZED
        resource = str(self._resource(message))
        if self._owner and principal.id == resource:
            return _ALLOW
        for permission in self._permissions:
            if permission not in held and f"{permission}:{resource}" not in held:
                return _UNAUTHORIZED
        return _ALLOW

    def describe(self) -> str:
        """Return the rule in words."""
        permissions = " and ".join(self._permissions)
        text = f"requires {permissions}"
        if self._resource_field is not None:
            text += f" (globally or for the resource in {self._resource_field})"
            if self._owner:
                text += f"; the owner ({self._resource_field} == principal id) may too"
        return text + ("; admins may" if self._admins else "; admins may not override")

    def __repr__(self) -> str:
        arguments = [repr(p) for p in self._permissions]
        if self._resource_field is not None:
            arguments.append(f"resource_field={self._resource_field!r}")
        if self._owner:
            arguments.append("allow_owner=True")
        if not self._admins:
            arguments.append("allow_admin_override=False")
        return f"RequirePermissions({', '.join(arguments)})"


class Authenticated:
    """Allows any principal; refuses anonymous callers with UNAUTHENTICATED."""

    __slots__ = ()

    def check(self, _message: Any, context: Context, /) -> OperationStatus:
        """Allow when there is a principal."""
        return _UNAUTHENTICATED if context.principal is None else _ALLOW

    def describe(self) -> str:
        """Return the rule in words."""
        return "requires an authenticated principal"

    def __repr__(self) -> str:
        return "Authenticated()"


class Public:
    """Allows everyone, anonymous callers included."""

    __slots__ = ()

    def check(self, _message: Any, _context: Context, /) -> OperationStatus:
        """Allow."""
        return _ALLOW

    def describe(self) -> str:
        """Return the rule in words."""
        return "public: anyone, anonymous included"

    def __repr__(self) -> str:
        return "Public()"


class _Deny:
    """Refuses everyone, admins included: UNAUTHENTICATED when anonymous, else UNAUTHORIZED."""

    __slots__ = ()

    def check(self, _message: Any, context: Context, /) -> OperationStatus:
        """Refuse."""
        return _UNAUTHENTICATED if context.principal is None else _UNAUTHORIZED

    def describe(self) -> str:
        """Return the rule in words."""
        return "denied to everyone"

    def __repr__(self) -> str:
        return "DENY"


DENY: AuthorizationRule = _Deny()
"""The rule that refuses everyone; `Authorization` gives it to every message type without a rule."""

_Check = Callable[[Any, Context], OperationStatus]


def _require_rule(rule: object, where: str) -> AuthorizationRule:
    if isinstance(rule, type):
        raise ConfigurationError(
            f"{where} is the class {rule.__qualname__}; give an instance: {rule.__qualname__}()"
        )
    if not (callable(getattr(rule, "check", None)) and callable(getattr(rule, "describe", None))):
        raise ConfigurationError(
            f"{where} must be an AuthorizationRule (RequirePermissions(...), Authenticated(), Public(), "
            f"DENY, or an object with check(message, context) and describe()), got {rule!r}"
        )
    return rule  # type: ignore[return-value]  # checked just above


class Authorization:
    """Refuses a dispatch its caller may not make: UNAUTHENTICATED or UNAUTHORIZED, before any work.

    It sits inside Logging, Tracing, Metrics, Audit and Timeout (so refusals are recorded) and outside
    Validation (a caller who may not act learns nothing about which fields are wrong), Retry and
    Transaction. `rules` maps each message type to its rule; a type with no rule gets `default`, which
    is `DENY`: a bus fails closed. Refusals carry a generic text; the rule that refused, and the
    principal, are logged at debug::

        Authorization(
            {
                CreateUser: RequirePermissions("user:create"),
                UpdateUser: RequirePermissions("user:update", resource_field="user_id", allow_owner=True),
                GetUser: Authenticated(),
                Health: Public(),
            }
        )
    """

    def __init__(
        self,
        rules: Mapping[type, AuthorizationRule],
        default: AuthorizationRule = DENY,
        *,
        logger: Any = None,
    ) -> None:
        if not isinstance(rules, Mapping):
            raise ConfigurationError(f"Authorization's rules must map message types to rules, got {rules!r}")
        checked: dict[type, AuthorizationRule] = {}
        for message_type, rule in rules.items():
            if not isinstance(message_type, type):
                raise ConfigurationError(
                    f"Authorization's rules are keyed by message type, got {message_type!r}"
                )
            checked[message_type] = _require_rule(rule, f"the rule for {message_type.__qualname__}")
        self._rules: Mapping[type, AuthorizationRule] = MappingProxyType(checked)
        self._default = _require_rule(default, "Authorization's default")
        # The rule of each type is resolved here, once: a dispatch is one dict lookup and one call.
        self._checks: dict[type, _Check] = {t: r.check for t, r in checked.items()}
        self._default_check: _Check = self._default.check
        self._logger = logger if logger is not None else structlog.get_logger("cqrskit")

    def rule_for(self, message_type: type) -> AuthorizationRule:
        """Return the rule for `message_type`: its own, or the default."""
        return self._rules.get(message_type, self._default)

    def applies_to(self, message_type: type) -> bool:
        """Check the type's rule can work with it (raising `ConfigurationError` if not); always True."""
        rule = self.rule_for(message_type)
        check_message_type = getattr(rule, "check_message_type", None)
        if check_message_type is not None:
            check_message_type(message_type)
        return True

    def describe(self, message_type: type) -> Mapping[str, object]:
        """Return the rule for `message_type` in words, and whether it is the default."""
        self.applies_to(message_type)
        return {"rule": self.rule_for(message_type).describe(), "default": message_type not in self._rules}

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Run the rest of the pipeline when the rule allows the caller; refuse otherwise."""
        decision = self._checks.get(type(message), self._default_check)(message, context)
        if decision is _ALLOW:
            return await call_next(message, context)
        return self._refuse(message, context, decision)

    def _refuse(self, message: Any, context: Context, decision: object) -> Result[Any]:
        status = _UNAUTHENTICATED if decision is _UNAUTHENTICATED else _UNAUTHORIZED
        principal = context.principal
        self._logger.debug(
            "authorization_refused",
            message_type=type(message).__qualname__,
            operation_id=context.operation_id,
            principal_id=None if principal is None else principal.id,
            status=str(status),
            rule=self.rule_for(type(message)).describe(),
        )
        errors = _UNAUTHENTICATED_ERRORS if status is _UNAUTHENTICATED else _UNAUTHORIZED_ERRORS
        return Result.failure(status, errors)

    def __repr__(self) -> str:
        rules = ", ".join(f"{t.__qualname__}: {r!r}" for t, r in self._rules.items())
        return f"Authorization({{{rules}}}, default={self._default!r})"
