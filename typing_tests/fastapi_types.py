"""Type checks for cqrskit.fastapi: run by mypy --strict and pyright, never executed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, assert_type
from uuid import UUID

import attrs
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from cqrskit import Command, Context, OperationStatus, Principal, Result
from cqrskit.fastapi import (
    MessageReader,
    TenantReader,
    context_dependency,
    from_container,
    http_status,
    install,
    payload,
    problem_response,
    result_response,
    strict_converter,
    structure,
    tenant_from_header,
)


@attrs.frozen
class CreateUser(Command[UUID]):
    email: str


async def principal_from_request(request: Request) -> Principal | None:
    return None


def current_principal() -> Principal | None:
    return None


assert_type(http_status(OperationStatus.NOT_FOUND), int)
assert_type(structure({"email": "a@example.com"}, CreateUser), CreateUser)
assert_type(structure({"email": "a@example.com"}, CreateUser, converter=strict_converter()), CreateUser)
assert_type(payload(CreateUser), MessageReader[CreateUser])
assert_type(context_dependency(current_principal), Callable[..., Awaitable[Context]])
assert_type(context_dependency(from_request=principal_from_request), Callable[..., Awaitable[Context]])
assert_type(tenant_from_header(), TenantReader)
assert_type(
    context_dependency(
        from_request=principal_from_request, tenant=tenant_from_header("X-Org", required=False)
    ),
    Callable[..., Awaitable[Context]],
)


async def tenant_of(request: Request, principal: Principal | None) -> str | None:
    return None if principal is None else principal.id


assert_type(context_dependency(current_principal, tenant=tenant_of), Callable[..., Awaitable[Context]])
context_dependency(tenant=current_principal)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
assert_type(from_container("command_bus"), Callable[[Request], Awaitable[Any]])
assert_type(install(FastAPI()), FastAPI)
failed: Result[UUID] = Result.failure(OperationStatus.CONFLICT)
assert_type(problem_response(failed), JSONResponse)
assert_type(result_response(failed, created=True), Response)
