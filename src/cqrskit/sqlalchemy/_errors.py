"""The errors `Database` raises about its session and about tenants."""

from __future__ import annotations

from cqrskit._errors import ConfigurationError, NotFoundError

__all__ = ["NoActiveSessionError", "TenantRequiredError", "UnknownTenantError"]


class NoActiveSessionError(ConfigurationError):
    """You asked `Database.session` for the current session, but no transaction is open in this task.

    The session exists only inside a transaction: put the `Transaction` behaviour on the command bus
    (or open one with ``async with database.transaction():``). A query handler reads through
    ``async with database.read_session() as session:`` instead.
    """


class TenantRequiredError(ConfigurationError):
    """Data is kept per tenant, and the work at hand has no tenant (``context.tenant`` is None).

    Raised by `SchemaPerTenant` when a transaction or read session opens without a tenant, and by
    `TenantColumn` when asked to scope a statement to no tenant, before any statement runs. It is a
    wiring mistake (the tenant is set where the request comes in), so, like every
    `ConfigurationError`, ``bus.execute`` raises it instead of returning a Result.
    """


class UnknownTenantError(NotFoundError):
    """The tenant has no data here: its id maps to no schema, or its schema does not exist.

    Raised by `SchemaPerTenant` when a tenant's transaction begins; the dispatch ends NOT_FOUND and no
    statement ran. `tenant` is the id asked for and `reason` says which of the two it was.
    """

    def __init__(self, tenant: object, reason: str) -> None:
        super().__init__(f"unknown tenant {tenant!r}: {reason}")
        self.tenant = tenant
        self.reason = reason
