"""`context_dependency` with a tenant: from a header (`tenant_from_header`) or from the principal."""

# No "from __future__ import annotations": FastAPI reads the endpoint's annotation at runtime, and it
# names the dependency of app_with, a local variable.

from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request

from cqrskit import Context, Principal
from cqrskit.fastapi import (
    OPERATION_ID_HEADER,
    PROBLEM_MEDIA_TYPE,
    context_dependency,
    install,
    tenant_from_header,
)
from tests.asgi import asgi_client


async def principal_from_request(request: Request) -> Principal | None:
    user = request.headers.get("x-user")
    return Principal(user, roles={"tenant:" + user.split("@")[1]}) if user else None


def current_principal(request: Request) -> Principal | None:
    return Principal("ada") if request.headers.get("x-user") else None


async def tenant_of_principal(request: Request, principal: Principal | None) -> str | None:
    """The tenant named by the principal's ``tenant:<id>`` role, as a token claim would name it."""
    if principal is None:
        return None
    return next((role.split(":", 1)[1] for role in principal.roles if role.startswith("tenant:")), None)


def app_with(dependency: Any) -> tuple[FastAPI, list[Context]]:
    app = install(FastAPI())
    seen: list[Context] = []
    RequestContext = Annotated[Context, Depends(dependency)]  # noqa: N806 - a type alias

    @app.get("/whoami")
    async def whoami(context: RequestContext) -> dict[str, str | None]:
        seen.append(context)
        return {"tenant": context.tenant}

    return app, seen


def assert_400(response: Any) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.json()
    assert body["status"] == 400
    assert body["type"] == "urn:cqrskit:problem:validation_error"  # the caller's mistake, not a failure
    assert body["operation_id"] == response.headers[OPERATION_ID_HEADER]
    return str(body)


class TestTenantFromHeader:
    """`tenant_from_header`: a safe id from ``X-Tenant-ID``, else a clear 400 problem."""

    async def test_the_header_becomes_the_tenant(self) -> None:
        """``X-Tenant-ID: acme`` gives a context whose tenant is acme, beside its principal."""
        app, seen = app_with(
            context_dependency(from_request=principal_from_request, tenant=tenant_from_header())
        )
        async with asgi_client(app) as client:
            response = await client.get("/whoami", headers={"X-Tenant-ID": "acme", "X-User": "ada@x"})
        assert response.json() == {"tenant": "acme"}
        assert seen[0].principal is not None
        assert seen[0].principal.id == "ada@x"

    @pytest.mark.parametrize("value", ["a b", "../etc", "x" * 129, "ünïcode", ""])
    async def test_a_bad_value_is_a_400_that_does_not_repeat_it(self, value: str) -> None:
        """Anything but 1 to 128 safe characters is refused, naming the header, never echoing the value."""
        app, seen = app_with(context_dependency(tenant=tenant_from_header()))
        async with asgi_client(app) as client:
            response = await client.get("/whoami", headers={"X-Tenant-ID": value.encode("utf-8")})
        body = assert_400(response)
        assert "X-Tenant-ID" in body
        assert not value or value not in body
        assert seen == []

    async def test_a_missing_header_is_a_400_unless_optional(self) -> None:
        """Required by default; with ``required=False`` a request without it has no tenant."""
        required, _ = app_with(context_dependency(tenant=tenant_from_header()))
        optional, seen = app_with(context_dependency(tenant=tenant_from_header("X-Org", required=False)))
        async with asgi_client(required) as client:
            assert "X-Tenant-ID header is required" in assert_400(await client.get("/whoami"))
        async with asgi_client(optional) as client:
            assert (await client.get("/whoami")).json() == {"tenant": None}
            assert (await client.get("/whoami", headers={"X-Org": "globex"})).json() == {"tenant": "globex"}
        assert [c.tenant for c in seen] == [None, "globex"]


class TestTenantFromThePrincipal:
    """A `TenantReader` of the app's own sees the principal the authentication returned."""

    async def test_from_request_and_a_reader_of_the_principal(self) -> None:
        """The fast path with a tenant reader: the tenant comes from the principal's claim."""
        app, _ = app_with(context_dependency(from_request=principal_from_request, tenant=tenant_of_principal))
        async with asgi_client(app) as client:
            assert (await client.get("/whoami", headers={"X-User": "ada@acme"})).json() == {"tenant": "acme"}
            assert (await client.get("/whoami")).json() == {"tenant": None}

    async def test_a_dependency_principal_and_a_reader(self) -> None:
        """With a FastAPI dependency for the principal the reader gets its value too."""

        async def reader(request: Request, principal: Principal | None) -> str | None:
            return None if principal is None else f"of-{principal.id}"

        app, _ = app_with(context_dependency(current_principal, tenant=reader))
        async with asgi_client(app) as client:
            assert (await client.get("/whoami", headers={"X-User": "1"})).json() == {"tenant": "of-ada"}

    async def test_a_reader_refuses_with_an_http_exception(self) -> None:
        """A reader that raises HTTPException(403) answers the request with a 403 problem."""

        async def member_only(request: Request, principal: Principal | None) -> str | None:
            raise HTTPException(status_code=403, detail="not a member of this tenant")

        app, seen = app_with(context_dependency(current_principal, tenant=member_only))
        async with asgi_client(app) as client:
            response = await client.get("/whoami", headers={"X-User": "1"})
        assert response.status_code == 403
        assert seen == []

    async def test_without_a_reader_there_is_no_tenant(self) -> None:
        """No `tenant=`: the context has none, whatever headers the request carries."""
        app, _ = app_with(context_dependency(from_request=principal_from_request))
        async with asgi_client(app) as client:
            response = await client.get("/whoami", headers={"X-Tenant-ID": "acme"})
        assert response.json() == {"tenant": None}
