"""`GET /users/export`: every user streamed as NDJSON or Server-Sent Events, admins only."""

from __future__ import annotations

import json

import httpx
import pytest

from cqrskit.fastapi import NDJSON_MEDIA_TYPE, SSE_MEDIA_TYPE
from tests.users.conftest import ADMIN, ALICE, assert_problem, create


class TestExport:
    """The export endpoint through the real app, on SQLite and on PostgreSQL."""

    async def test_an_admin_gets_every_user_as_ndjson(self, client: httpx.AsyncClient) -> None:
        """One JSON object per line, by username, with the operation id in a header."""
        for name in ("dora", "carol", "erin"):
            await create(client, name)
        response = await client.get("/users/export", headers=ADMIN)

        assert response.status_code == 200
        assert response.headers["content-type"] == NDJSON_MEDIA_TYPE
        assert response.headers["X-Operation-ID"]
        users = [json.loads(line) for line in response.text.splitlines()]
        names = [user["username"] for user in users]
        assert {"carol", "dora", "erin"} <= set(names)
        assert names == sorted(names)
        assert all("password" not in json.dumps(user) for user in users)

    async def test_server_sent_events_when_asked(self, client: httpx.AsyncClient) -> None:
        """Accept: text/event-stream gives a data event per user, then an end event with the count."""
        await create(client, "carol")
        response = await client.get("/users/export", headers={**ADMIN, "Accept": SSE_MEDIA_TYPE})

        assert response.headers["content-type"].startswith(SSE_MEDIA_TYPE)
        events = [block for block in response.text.split("\n\n") if block]
        data = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
        assert "carol" in {user["username"] for user in data}
        assert events[-1] == f'event: end\ndata: {{"items":{len(data)}}}'

    async def test_anyone_else_gets_a_problem_before_any_row(self, client: httpx.AsyncClient) -> None:
        """A refusal happens before the first item, so it is an ordinary 403 problem."""
        response = await client.get("/users/export", headers=ALICE)
        assert_problem(response, 403)
        anonymous = await client.get("/users/export")
        assert_problem(anonymous, 401)


@pytest.mark.parametrize("path", ["/openapi.json"])
async def test_the_export_is_declared_as_a_stream(client: httpx.AsyncClient, path: str) -> None:
    """The OpenAPI document gives the item schema under NDJSON and SSE, and the problems."""
    document = (await client.get(path)).json()
    operation = document["paths"]["/users/export"]["get"]
    content = operation["responses"]["200"]["content"]

    assert set(content) == {NDJSON_MEDIA_TYPE, SSE_MEDIA_TYPE}
    item = content[NDJSON_MEDIA_TYPE]["schema"]
    assert item == content[SSE_MEDIA_TYPE]["x-cqrskit-item-schema"]
    assert "application/problem+json" in operation["responses"]["403"]["content"]
