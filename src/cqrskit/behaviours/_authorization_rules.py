"""The rules `Authorization` applies: who may dispatch a message type, decided from its context.

`RequirePermissions`, `RequireSameTenant`, `Authenticated`, `Public` and `DENY` are the rules cqrskit
ships; any object with
``check(message, context)`` and ``describe()`` (the `AuthorizationRule` protocol) is one too. Import
them from `cqrskit.behaviours`.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from cqrskit._context import Context
from cqrskit._errors import ConfigurationError
from cqrskit._status import OperationStatus

__all__ = [
    "ALLOW",
    "DENY",
    "UNAUTHENTICATED",
    "UNAUTHORIZED",
    "Authenticated",
    "AuthorizationRule",
    "Public",
    "RequirePermissions",
    "RequireSameTenant",
]

ALLOW = OperationStatus.SUCCESS
UNAUTHENTICATED = OperationStatus.UNAUTHENTICATED
UNAUTHORIZED = OperationStatus.UNAUTHORIZED


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
            return UNAUTHENTICATED
        if principal.is_admin and self._admins:
            return ALLOW
        held = principal.permissions
        if self._resource is None:
            return ALLOW if self._required <= held else UNAUTHORIZED
        resource = str(self._resource(message))
        if self._owner and principal.id == resource:
            return ALLOW
        for permission in self._permissions:
            if permission not in held and f"{permission}:{resource}" not in held:
                return UNAUTHORIZED
        return ALLOW

    def describe(self) -> str:
        """Return the rule in words."""
        permissions = " and ".join(self._permissions)
        text = f"requires {permissions}"
        if self._resource_field is not None:
            text += f" (globally or for the resource in {self._resource_field})"
            if self._owner:
                text += f"; the owner ({self._resource_field} == principal id) may too"
        return text + ("; admins pass too" if self._admins else "; admins may not override")

    def __repr__(self) -> str:
        arguments = [repr(p) for p in self._permissions]
        if self._resource_field is not None:
            arguments.append(f"resource_field={self._resource_field!r}")
        if self._owner:
            arguments.append("allow_owner=True")
        if not self._admins:
            arguments.append("allow_admin_override=False")
        return f"RequirePermissions({', '.join(arguments)})"


class RequireSameTenant:
    """Allows a message only when the resource it is about belongs to the caller's tenant, then asks `rule`.

    The resource's tenant is the message's `tenant_field`; the caller's is ``context.tenant`` (set by
    your FastAPI dependency, or carried by an envelope). A message whose field differs from the
    caller's tenant, or a context without a tenant, is refused (UNAUTHORIZED, or UNAUTHENTICATED for
    an anonymous caller); one of the caller's own tenant is then decided by `rule`, by default
    `Authenticated()`::

        rules = {
            RenameProject: RequireSameTenant(
                "tenant_id", rule=RequirePermissions("project:update", resource_field="project_id")
            ),
        }

    Admins are held to their tenant too unless `allow_admin_override` is True (then an admin passes
    the tenant check, and `rule` still applies). Where the resource's tenant is known only once it is
    read from the database, check it in the handler and raise `PermissionDeniedError`.
    """

    __slots__ = ("_admins", "_field", "_read", "_rule")

    def __init__(
        self,
        tenant_field: str = "tenant",
        *,
        rule: AuthorizationRule | None = None,
        allow_admin_override: bool = False,
    ) -> None:
        field: object = tenant_field
        if not (isinstance(field, str) and field.isidentifier()):
            raise ConfigurationError(
                f"tenant_field must be the name of a message field, got {tenant_field!r}"
            )
        self._field = tenant_field
        self._read: Callable[[Any], object] = operator.attrgetter(tenant_field)
        self._rule: AuthorizationRule = rule if rule is not None else Authenticated()
        self._admins = allow_admin_override

    def check_message_type(self, message_type: type) -> None:
        """Raise `ConfigurationError` when `message_type` lacks `tenant_field`, or when `rule` refuses it."""
        field = self._field
        if field not in _field_names(message_type) and not hasattr(message_type, field):
            raise ConfigurationError(
                f"{self!r} reads {message_type.__qualname__}.{field}, which is not a field of that message"
            )
        check_type = getattr(self._rule, "check_message_type", None)
        if check_type is not None:
            check_type(message_type)

    def check(self, message: Any, context: Context, /) -> OperationStatus:
        """Refuse a resource of another tenant (or a caller of none); else return what `rule` decides."""
        tenant = context.tenant
        principal = context.principal
        if tenant is None or str(self._read(message)) != tenant:
            if principal is None:
                return UNAUTHENTICATED
            if not (self._admins and principal.is_admin):
                return UNAUTHORIZED
        return self._rule.check(message, context)

    def describe(self) -> str:
        """Return the rule in words."""
        admins = "; admins may act for any tenant" if self._admins else ""
        return f"requires {self._field} == the caller's tenant{admins}; then {self._rule.describe()}"

    def __repr__(self) -> str:
        arguments = [repr(self._field), f"rule={self._rule!r}"]
        if self._admins:
            arguments.append("allow_admin_override=True")
        return f"RequireSameTenant({', '.join(arguments)})"


class Authenticated:
    """Allows any principal; refuses anonymous callers with UNAUTHENTICATED."""

    __slots__ = ()

    def check(self, _message: Any, context: Context, /) -> OperationStatus:
        """Allow when there is a principal."""
        return UNAUTHENTICATED if context.principal is None else ALLOW

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
        return ALLOW

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
        return UNAUTHENTICATED if context.principal is None else UNAUTHORIZED

    def describe(self) -> str:
        """Return the rule in words."""
        return "denied to everyone"

    def __repr__(self) -> str:
        return "DENY"


DENY: AuthorizationRule = _Deny()
"""The rule that refuses everyone; `Authorization` gives it to every message type without a rule."""
