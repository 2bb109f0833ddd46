"""From an HTTP request to what a bus needs: the message, the `Context`, the bus itself."""

# No "from __future__ import annotations" here: FastAPI reads the annotations of the dependency made
# in context_dependency at runtime, and they name a local variable.

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from cqrskit import _operation_ids
from cqrskit._context import Context, Principal
from cqrskit.fastapi._errors import PayloadTooLargeError
from cqrskit.fastapi._payload import DEFAULT_MAX_BODY_BYTES

__all__ = [
    "CORRELATION_ID_HEADER",
    "IDEMPOTENCY_KEY_HEADER",
    "TENANT_HEADER",
    "TenantReader",
    "context_dependency",
    "correlation_id",
    "from_container",
    "read_body",
    "tenant_from_header",
]

CORRELATION_ID_HEADER = "X-Correlation-ID"
"""The header a caller may send to tie its requests together; every response echoes it."""

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
"""The header that becomes `Context.idempotency_key`."""

TENANT_HEADER = "X-Tenant-ID"
"""The header `tenant_from_header` reads unless you name another."""

TenantReader = Callable[[Request, Principal | None], Awaitable[str | None]]
"""How `context_dependency` learns a request's tenant: ``async def (request, principal) -> str | None``.

It receives the principal your authentication returned (None for an anonymous caller), so it can
take the tenant from a claim of the principal, from a header (`tenant_from_header`), from the host
name, or check that the principal belongs to the tenant it names. Raise ``HTTPException`` to refuse
the request (answered as a problem by `install`'s handlers); return None for no tenant.
"""

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


def safe_id(value: str | None) -> str | None:
    """Return `value` when it is a usable id (1 to 128 letters, digits, ``.``, ``_``, ``:``, ``-``)."""
    if value is not None and _SAFE_ID.fullmatch(value):
        return value
    return None


def correlation_id(request: Request) -> str:
    """Return the request's correlation id: the caller's ``X-Correlation-ID`` when safe, else a new one.

    `CorrelationIdMiddleware` decides it once per request and echoes it; without the middleware this
    decides it here (and it is not echoed). A header that is too long or holds other characters than
    letters, digits, ``.``, ``_``, ``:`` and ``-`` is replaced, never logged or echoed.
    """
    decided: str | None = getattr(request.state, "correlation_id", None)
    if decided is None:
        decided = safe_id(request.headers.get(CORRELATION_ID_HEADER)) or _operation_ids.new_operation_id()
        request.state.correlation_id = decided
    return decided


def _anonymous() -> None:
    return None


def tenant_from_header(header: str = TENANT_HEADER, *, required: bool = True) -> TenantReader:
    """Return a `TenantReader` taking the tenant from the request header `header`.

    The value must be a safe id (1 to 128 letters, digits, ``.``, ``_``, ``:`` and ``-``); any other
    value is refused with a 400 problem that names the header and never repeats the value. A request
    without the header is refused with 400 too, unless `required` is False (then it has no tenant)::

        RequestContext = Annotated[
            Context, Depends(context_dependency(from_request=read_token, tenant=tenant_from_header()))
        ]

    A header is whatever the caller sends: where a tenant must be proven, take it from the
    authenticated principal instead, or check the principal's membership in your own `TenantReader`.
    """
    lowered = header.lower()
    missing = f"the {header} header is required: it names the tenant the request acts for"
    malformed = f"the {header} header must be 1 to 128 letters, digits, '.', '_', ':' or '-'"

    async def read_tenant_header(request: Request, principal: Principal | None) -> str | None:  # noqa: ARG001 - a TenantReader
        value = request.headers.get(lowered)
        if value is None:
            if required:
                raise HTTPException(status_code=400, detail=missing)
            return None
        if safe_id(value) is None:
            raise HTTPException(status_code=400, detail=malformed)
        return value

    return read_tenant_header


def context_dependency(
    principal: Callable[..., Principal | None] | Callable[..., Awaitable[Principal | None]] | None = None,
    *,
    from_request: Callable[[Request], Awaitable[Principal | None]] | None = None,
    tenant: TenantReader | None = None,
) -> Callable[..., Awaitable[Context]]:
    """Return a FastAPI dependency that builds the `Context` for a request.

    `principal` is your authentication dependency (any FastAPI dependency returning a `Principal`, or
    None for an anonymous caller; it may raise or return None as it sees fit). The context carries it,
    the request's correlation id (see `correlation_id`) and the ``Idempotency-Key`` header when safe::

        RequestContext = Annotated[Context, Depends(context_dependency(current_principal))]

    When your authentication needs nothing but the request, give it as ``from_request=`` instead: an
    ``async def (request) -> Principal | None`` called directly, which spares FastAPI resolving a
    dependency on every request (a measurable share of a cached read's cost).

    `tenant`, a `TenantReader` (``async def (request, principal) -> str | None``), decides the
    context's tenant once the principal is known: `tenant_from_header` reads a header, and your own
    can read a claim of the principal. Without it the context has no tenant.
    """
    if from_request is not None:
        if principal is not None:
            raise TypeError("give context_dependency a principal dependency or from_request, not both")
        read_principal = from_request

        async def request_context_direct(request: Request) -> Context:
            return await _request_context(request, await read_principal(request), tenant)

        return request_context_direct

    principal_dependency = principal if principal is not None else _anonymous

    async def request_context(
        request: Request,
        caller: Annotated[Principal | None, Depends(principal_dependency)],
    ) -> Context:
        return await _request_context(request, caller, tenant)

    return request_context


async def _request_context(
    request: Request, caller: Principal | None, tenant: TenantReader | None
) -> Context:
    """Return the context of `request` for `caller`: its correlation id, idempotency key and tenant.

    The one place a request's `Context` is built, whichever way `context_dependency` found the caller.
    """
    return Context(
        principal=caller,
        correlation_id=correlation_id(request),
        idempotency_key=safe_id(request.headers.get(IDEMPOTENCY_KEY_HEADER)),
        tenant=None if tenant is None else await tenant(request, caller),
    )


async def read_body(request: Request, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> bytes:
    """Return the request body, refusing one longer than `max_bytes` before reading all of it.

    Raises `PayloadTooLargeError` (answered with 413).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeError(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def from_container(
    provider: str, *, state_attribute: str = "container"
) -> Callable[[Request], Awaitable[Any]]:
    """Return a FastAPI dependency giving ``app.state.<state_attribute>.<provider>()``.

    Your lifespan creates the container and puts it on ``app.state``; endpoints then receive the buses
    it builds, and a test overrides a provider on that container::

        CommandBusDep = Annotated[CommandBus, Depends(from_container("command_bus"))]
    """

    # async, although it awaits nothing: FastAPI runs a plain def dependency in a worker thread.
    async def provide(request: Request) -> Any:
        container = getattr(request.app.state, state_attribute, None)
        if container is None:
            raise RuntimeError(
                f"app.state.{state_attribute} is not set: create the container in your app's lifespan "
                f"and assign it there before serving requests"
            )
        return getattr(container, provider)()

    provide.__name__ = f"provide_{provider}"
    return provide
