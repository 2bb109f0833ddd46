"""A bearer-token check for the demo: tokens come from the settings. Not an identity provider."""

from __future__ import annotations

from fastapi import HTTPException, Request

from cqrskit import Principal
from examples.users.settings import Settings


async def current_principal(request: Request) -> Principal | None:
    """Return the caller a known bearer token stands for, None without a token; 401 for a bad one.

    It is ``async`` although it awaits nothing (FastAPI runs a plain ``def`` dependency in a thread),
    and it reads the header itself rather than through a ``Header()`` parameter, which FastAPI would
    validate on every request.
    """
    authorization = request.headers.get("authorization")
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    settings: Settings = request.app.state.container.settings()
    account = settings.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
    if account is None:
        raise HTTPException(401, "unknown bearer token", headers={"WWW-Authenticate": "Bearer"})
    return Principal(str(account.user_id), is_admin=account.is_admin)
