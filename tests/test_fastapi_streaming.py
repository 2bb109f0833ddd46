"""`stream_response`: a streaming query over HTTP as NDJSON or Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import attrs
import httpx
from fastapi import FastAPI, Request
from starlette.responses import Response

from cqrskit import Context, NotFoundError, QueryBus, StreamQuery
from cqrskit.fastapi import NDJSON_MEDIA_TYPE, SSE_MEDIA_TYPE, install, stream_response
from tests.asgi import asgi_client


@attrs.frozen
class Item:
    number: int


@attrs.frozen
class Items(StreamQuery[Item]):
    count: int
    fail_at: int | None = None


class ItemsHandler:
    async def handle(self, query: Items, context: Context) -> AsyncIterator[Item]:
        for number in range(query.count):
            if number == query.fail_at:
                if number == 0:
                    raise NotFoundError("nothing here")
                raise RuntimeError("internal detail that must not leak")
            yield Item(number)


def make_app() -> FastAPI:
    app = install(FastAPI())
    bus = QueryBus({Items: ItemsHandler()})

    @app.get("/items")
    async def items(request: Request, count: int, fail_at: int | None = None) -> Response:
        result = await bus.stream(Items(count, fail_at), Context())
        return stream_response(result, accept=request.headers.get("accept"))

    return app


async def get(path: str, accept: str | None = None) -> httpx.Response:
    async with asgi_client(make_app()) as client:
        return await client.get(path, headers={"Accept": accept} if accept else {})


class TestStreamResponse:
    """Items as they come; problems before the first item; an error record after it."""

    async def test_ndjson_gives_one_item_per_line(self) -> None:
        """Each line is one item written as JSON."""
        response = await get("/items?count=3")

        assert response.status_code == 200
        assert response.headers["content-type"] == NDJSON_MEDIA_TYPE
        assert [json.loads(line) for line in response.text.splitlines()] == [{"number": n} for n in range(3)]

    async def test_a_failure_before_the_first_item_is_a_problem(self) -> None:
        """The status line is not sent yet, so the caller gets an ordinary 404 problem."""
        response = await get("/items?count=3&fail_at=0")

        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == "nothing here"

    async def test_a_failure_after_the_first_item_ends_ndjson_with_an_error_record(self) -> None:
        """The last line is {"error": problem}, with no internal text."""
        response = await get("/items?count=5&fail_at=2")

        lines = [json.loads(line) for line in response.text.splitlines()]
        assert lines[:2] == [{"number": 0}, {"number": 1}]
        error = lines[2]["error"]
        assert error["status"] == 500
        assert error["type"] == "urn:cqrskit:problem:failed"
        assert error["operation_id"] == response.headers["X-Operation-ID"]
        assert error["correlation_id"] == response.headers["X-Correlation-ID"]
        assert "internal detail" not in response.text
        assert len(lines) == 3

    async def test_sse_gives_data_events_then_end(self) -> None:
        """Server-Sent Events: a data event per item, then an end event with the count."""
        response = await get("/items?count=2", accept=SSE_MEDIA_TYPE)

        assert response.headers["content-type"].startswith(SSE_MEDIA_TYPE)
        assert response.text == (
            'data: {"number":0}\n\ndata: {"number":1}\n\nevent: end\ndata: {"items":2}\n\n'
        )

    async def test_sse_ends_with_an_error_event_after_a_failure(self) -> None:
        """A failure after the first item is an error event carrying the problem, and no end event."""
        response = await get("/items?count=5&fail_at=1", accept=SSE_MEDIA_TYPE)

        events = [event for event in response.text.split("\n\n") if event]
        assert events[0] == 'data: {"number":0}'
        kind, data = events[1].split("\n")
        assert kind == "event: error"
        assert json.loads(data.removeprefix("data: "))["status"] == 500
        assert len(events) == 2
