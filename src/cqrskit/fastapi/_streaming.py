"""Serving a streaming query over HTTP: NDJSON or Server-Sent Events, with problems before the first item.

The response is sent as the stream is read, so the handler produces only as fast as the client takes
the bytes. A failure before the first item is an ordinary problem response (the status line has not
been sent yet); one after it ends the body with an error record, since the 200 is already on the wire.
When the client goes away the stream is closed, and with it the handler and its database session.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from cqrskit._results import Result, ResultError
from cqrskit._streams import Stream
from cqrskit.fastapi._responses import (
    OPERATION_ID_HEADER,
    current_request,
    problem_body,
    problem_response,
    to_json,
)

__all__ = ["NDJSON_MEDIA_TYPE", "SSE_MEDIA_TYPE", "stream_contents", "stream_response"]

NDJSON_MEDIA_TYPE: Final = "application/x-ndjson"
"""Newline-delimited JSON: one item per line; an ``{"error": <problem>}`` line ends a failed stream."""

SSE_MEDIA_TYPE: Final = "text/event-stream"
"""Server-Sent Events: one ``data:`` event per item, then an ``end`` or an ``error`` event."""

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def stream_response(
    result: Result[Stream[Any]],
    *,
    accept: str | None = None,
    naming: Callable[[str], str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Return the response for a streaming query's `result`: its items as they are read, or a problem.

    Pass the request's ``Accept`` header as `accept`: ``text/event-stream`` gets Server-Sent Events
    (``data: <item>`` per item, then ``event: end`` with the item count), anything else NDJSON (one
    JSON item per line). Items are written like `to_json` writes them (with `naming`, if given).

    A failed `result` (refused, invalid, not found, a failure before the first item) is the usual
    problem response. A failure after the first item ends the body with an error record holding the
    same problem object: ``{"error": {...}}`` in NDJSON, ``event: error`` in SSE. Every response
    carries ``X-Operation-ID``. The stream is closed when the response ends, whether the client read
    it all or went away, so the handler stops and releases its session::

        @app.get("/users/export")
        async def export(query: Export, bus: Queries, context: RequestContext, request: Request):
            result = await bus.stream(query, context)
            return stream_response(result, accept=request.headers.get("accept"))
    """
    if result.is_failure:
        return problem_response(result, headers=headers)
    stream = result.unwrap()
    sse = accept is not None and SSE_MEDIA_TYPE in accept
    current = current_request.get()
    correlation_id = None if current is None else current[0]
    response_headers = {"Cache-Control": "no-store", **(headers or {})}
    if result.operation_id is not None:
        response_headers[OPERATION_ID_HEADER] = result.operation_id
    if sse:
        response_headers["X-Accel-Buffering"] = "no"  # proxies must pass each event on at once
    body = _events(stream, naming, correlation_id) if sse else _lines(stream, naming, correlation_id)
    return _StreamedResponse(
        body, media_type=SSE_MEDIA_TYPE if sse else NDJSON_MEDIA_TYPE, headers=response_headers
    )


def _problem(error: ResultError, correlation_id: str | None) -> dict[str, Any]:
    failed = error.result
    return problem_body(
        failed.status, failed.errors, operation_id=failed.operation_id, correlation_id=correlation_id
    )


async def _lines(
    stream: Stream[Any], naming: Callable[[str], str] | None, correlation_id: str | None
) -> AsyncIterator[bytes]:
    async with stream:
        try:
            async for item in stream:
                yield (_dumps(to_json(item, naming=naming)) + "\n").encode()
        except ResultError as error:
            yield (_dumps({"error": _problem(error, correlation_id)}) + "\n").encode()


async def _events(
    stream: Stream[Any], naming: Callable[[str], str] | None, correlation_id: str | None
) -> AsyncIterator[bytes]:
    count = 0
    async with stream:
        try:
            async for item in stream:
                count += 1
                yield f"data: {_dumps(to_json(item, naming=naming))}\n\n".encode()
        except ResultError as error:
            yield f"event: error\ndata: {_dumps(_problem(error, correlation_id))}\n\n".encode()
            return
    yield f"event: end\ndata: {_dumps({'items': count})}\n\n".encode()


class _StreamedResponse(StreamingResponse):
    """A StreamingResponse that closes its body when it ends, also when the client went away.

    Starlette stops reading the body when the client disconnects but leaves the generator suspended;
    closing it here runs its ``async with``, which closes the stream and the handler at once instead
    of whenever the generator is garbage-collected.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


def stream_contents(item_schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return the OpenAPI ``content`` of a streaming query's 200 response, given one item's schema."""
    return {
        NDJSON_MEDIA_TYPE: {"schema": dict(item_schema), "x-cqrskit-stream": "one JSON item per line"},
        SSE_MEDIA_TYPE: {
            "schema": {"type": "string"},
            "x-cqrskit-item-schema": dict(item_schema),
            "x-cqrskit-stream": "a 'data' event per item, then an 'end' or an 'error' event",
        },
    }
