"""Who asks, and which dispatch this is: `Principal` and `Context`."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["Context", "Principal", "dispatch_context"]


def _frozenset(value: Any) -> frozenset[str]:
    return value if type(value) is frozenset else frozenset(value)


@attrs.frozen
class Principal:
    """The authenticated caller: an id, the permissions it holds, its roles, and whether it is an admin.

    A scoped permission is written ``"<permission>:<resource id>"``, for example ``"user:update:42"``.
    """

    id: str
    permissions: frozenset[str] = attrs.field(default=frozenset(), converter=_frozenset)
    roles: frozenset[str] = attrs.field(default=frozenset(), converter=_frozenset)
    is_admin: bool = False


# Context is built once per dispatch, so it is a slotted class whose public fields are read-only
# properties over private slots: as immutable to its users as a frozen class, and about three times
# cheaper to build (attrs' frozen __init__ goes through object.__setattr__ for every field).
@attrs.define(repr=False, unsafe_hash=True)
class Context:
    """What travels with a message besides its fields: the caller and the ids that tie work together.

    You pass one as ``bus.execute(message, context=Context(principal=...))``. The bus hands behaviours
    and the handler a copy whose `operation_id` names this dispatch and whose `correlation_id` defaults to
    it. Instances are immutable.
    """

    _principal: Principal | None = attrs.field(default=None, alias="principal")
    _correlation_id: str | None = attrs.field(default=None, alias="correlation_id")
    _causation_id: str | None = attrs.field(default=None, alias="causation_id")
    _idempotency_key: str | None = attrs.field(default=None, alias="idempotency_key")
    _operation_id: str | None = attrs.field(default=None, alias="operation_id")
    _tenant: str | None = attrs.field(default=None, alias="tenant")

    @property
    def principal(self) -> Principal | None:
        """The caller, or None for an anonymous one."""
        return self._principal

    @property
    def correlation_id(self) -> str | None:
        """The id shared by every dispatch that serves one outside request."""
        return self._correlation_id

    @property
    def causation_id(self) -> str | None:
        """The operation id of the dispatch that caused this one, if any."""
        return self._causation_id

    @property
    def idempotency_key(self) -> str | None:
        """A caller-chosen key that makes a command run once (see the `Idempotency` behaviour)."""
        return self._idempotency_key

    @property
    def operation_id(self) -> str | None:
        """This dispatch's id; set by the bus, None on a context you built yourself."""
        return self._operation_id

    @property
    def tenant(self) -> str | None:
        """The tenant this dispatch acts for, or None in a service that has no tenants.

        Nothing crosses a tenant: cache entries and tags, idempotency keys, envelopes, scheduled
        commands and process instances are kept per tenant (see the tenancy page of the docs).
        """
        return self._tenant

    def child(self) -> Context:
        """Return the context for a dispatch this one causes: a nested command or a published event.

        It keeps the principal, the tenant and the correlation id, and its `causation_id` is this
        operation's id.
        """
        return Context(self._principal, self._correlation_id, self._operation_id, None, None, self._tenant)

    def __repr__(self) -> str:
        return (
            f"Context(principal={self._principal!r}, correlation_id={self._correlation_id!r}, "
            f"causation_id={self._causation_id!r}, idempotency_key={self._idempotency_key!r}, "
            f"operation_id={self._operation_id!r}, tenant={self._tenant!r})"
        )


def dispatch_context(given: Context | None, operation_id: str) -> Context:
    """Return the context one dispatch sees: `given` with `operation_id` set, correlated to it by default.

    Every bus builds its dispatch's context here (`cqrskit._bus.BusCore.dispatch`).
    """
    # Positional: a keyword call through attrs' aliases costs about 40 ns more, once per dispatch.
    if given is None:
        return Context(None, operation_id, None, None, operation_id, None)
    return Context(
        given._principal,
        given._correlation_id or operation_id,
        given._causation_id,
        given._idempotency_key,
        operation_id,
        given._tenant,
    )
