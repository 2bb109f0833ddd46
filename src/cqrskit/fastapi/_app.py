"""What `install` adds to an app: the correlation id middleware and the problem+json error handlers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cqrskit import _operation_ids
from cqrskit._errors import DETAIL
from cqrskit._loggable import loggable_exception
from cqrskit._logs import library_logger
from cqrskit._outcome import INTERNAL_ERROR, UNREACHABLE, exception_status
from cqrskit._results import ResultError
from cqrskit._status import OperationStatus
from cqrskit.fastapi._errors import PayloadError, PayloadTooLargeError
from cqrskit.fastapi._openapi import document_messages
from cqrskit.fastapi._payload import WHOLE_BODY
from cqrskit.fastapi._problem_format import RFC9457, ProblemFormat
from cqrskit.fastapi._requests import CORRELATION_ID_HEADER, correlation_id, safe_id
from cqrskit.fastapi._responses import (
    OPERATION_ID_HEADER,
    RETRY_AFTER_HEADER,
    RETRY_AFTER_SECONDS,
    current_request,
    http_status,
    problem_body,
    problem_response,
)

__all__ = ["CorrelationIdMiddleware", "install"]

_logger = library_logger("cqrskit.fastapi")


class CorrelationIdMiddleware:
    """ASGI middleware: decides each request's correlation id and echoes it on the response.

    It takes the caller's ``X-Correlation-ID`` when it is safe (see `correlation_id`) or makes a new
    one, stores it on ``request.state.correlation_id`` and sets the header on every response, error
    responses included. It also makes `problem_format` the one problem responses use while it serves a
    request. `install` adds it as the outermost middleware.
    """

    def __init__(
        self, app: ASGIApp, header: str = CORRELATION_ID_HEADER, problem_format: ProblemFormat = RFC9457
    ) -> None:
        self.app = app
        self.header = header
        self.problem_format = problem_format
        self._raw_header = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == self._raw_header:
                given = value.decode("latin-1")
                break
        decided = safe_id(given) or _operation_ids.new_operation_id()
        scope.setdefault("state", {})["correlation_id"] = decided
        echoed = (self._raw_header, decided.encode("latin-1"))

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != self._raw_header]
                headers.append(echoed)
                message["headers"] = headers
            await send(message)

        token = current_request.set((decided, scope.get("path", ""), self.problem_format))
        try:
            await self.app(scope, receive, send_with_header)
        finally:
            current_request.reset(token)

    def __repr__(self) -> str:
        return f"CorrelationIdMiddleware(header={self.header!r})"


def _refused(
    request: Request,
    status: OperationStatus,
    errors: Mapping[str, str],
    *,
    http_code: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Answer a request refused before any bus saw it, with an operation id of its own.

    The id is logged with the refusal (at warning: the status, the path and the names of the bad
    fields, never their values), so a problem body always carries an id an operator can search for.
    """
    operation_id = _operation_ids.new_operation_id()
    correlation = correlation_id(request)
    body = problem_body(
        status,
        errors,
        operation_id=operation_id,
        correlation_id=correlation,
        instance=request.url.path,
        http_code=http_code,
    )
    _logger.warning(
        "request_refused",
        status=status.value,
        http_status=body["status"],
        path=request.url.path,
        fields=sorted(field for field in errors if field != DETAIL),
        operation_id=operation_id,
        correlation_id=correlation,
    )
    problem_format = _problem_format()
    return JSONResponse(
        problem_format.render(body),
        status_code=body["status"],
        media_type=problem_format.media_type,
        headers={**(headers or {}), OPERATION_ID_HEADER: operation_id},
    )


def _problem_format() -> ProblemFormat:
    current = current_request.get()
    return current[2] if current is not None else RFC9457


def _field_path(location: Sequence[object]) -> str:
    # FastAPI locations start with where the value came from ("query", "path", "body", "header").
    parts = list(location[1:]) if len(location) > 1 else list(location)
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path or WHOLE_BODY


async def _on_payload_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PayloadError)  # noqa: S101 - registered for this type only
    return _refused(request, OperationStatus.VALIDATION_ERROR, exc.errors)


async def _on_payload_too_large(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PayloadTooLargeError)  # noqa: S101 - registered for this type only
    return _refused(request, OperationStatus.VALIDATION_ERROR, {DETAIL: str(exc)}, http_code=413)


async def _on_request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    errors: dict[str, str] = {}
    for error in exc.errors():
        errors.setdefault(_field_path(error.get("loc", ())), str(error.get("msg", "invalid value")))
    return _refused(request, OperationStatus.VALIDATION_ERROR, errors)


async def _on_result_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ResultError)  # noqa: S101 - registered for this type only
    return problem_response(exc.result, instance=request.url.path, correlation_id=correlation_id(request))


_HTTP_STATUSES = {
    400: OperationStatus.VALIDATION_ERROR,  # a request refused for what it sent (a bad tenant header)
    401: OperationStatus.UNAUTHENTICATED,
    403: OperationStatus.UNAUTHORIZED,
    404: OperationStatus.NOT_FOUND,
    409: OperationStatus.CONFLICT,
    422: OperationStatus.VALIDATION_ERROR,
    503: OperationStatus.UNAVAILABLE,
    504: OperationStatus.TIMEOUT,
}


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for this type only
    status = _HTTP_STATUSES.get(exc.status_code, OperationStatus.FAILED)
    errors = {DETAIL: exc.detail} if exc.detail else {}
    return _refused(request, status, errors, http_code=exc.status_code, headers=exc.headers)


class _UnexpectedErrorMiddleware:
    """Answers an exception that escaped an endpoint with a 500 problem, logged once with an id.

    Exceptions inside a bus never get here (the bus turns them into a FAILED Result); this catches
    what an endpoint or a dependency raised. The response names an operation id, never the error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def track(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, track)
        except Exception as exc:
            if started:
                raise
            operation_id = _operation_ids.new_operation_id()
            correlation = scope.get("state", {}).get("correlation_id")
            # A dependency that cannot be reached (a ConnectionError in the chain) is a 503, not a bug.
            unreachable = exception_status(exc)[0] is OperationStatus.UNAVAILABLE
            status = OperationStatus.UNAVAILABLE if unreachable else OperationStatus.FAILED
            _logger.error(  # noqa: TRY400 - the traceback comes from loggable_exception
                "request_failed",
                path=scope.get("path"),
                operation_id=operation_id,
                correlation_id=correlation,
                error_type=type(exc).__qualname__,
                **({} if unreachable else loggable_exception(exc)),
            )
            body = problem_body(
                status,
                {DETAIL: UNREACHABLE if unreachable else INTERNAL_ERROR},
                operation_id=operation_id,
                correlation_id=correlation,
                instance=scope.get("path"),
            )
            problem_format = _problem_format()
            headers = {OPERATION_ID_HEADER: operation_id}
            if unreachable:
                headers[RETRY_AFTER_HEADER] = str(RETRY_AFTER_SECONDS)
            response = JSONResponse(
                problem_format.render(body),
                status_code=http_status(status),
                media_type=problem_format.media_type,
                headers=headers,
            )
            await response(scope, receive, send)


def install(
    app: FastAPI,
    *,
    correlation_header: str = CORRELATION_ID_HEADER,
    problem_format: ProblemFormat = RFC9457,
    security_schemes: Mapping[str, Mapping[str, Any]] | None = None,
) -> FastAPI:
    """Give `app` cqrskit's request handling; call it once, where you create the app.

    It adds `CorrelationIdMiddleware` and answers, as ``application/problem+json``: `PayloadError` and
    FastAPI's own request validation errors with 422 and every field path, `PayloadTooLargeError` with
    413, `ResultError` (from ``result.unwrap()``) with the result's problem, HTTP exceptions with their
    status, and any other exception an endpoint raises with 500, an operation id and no internal text.
    A request refused before it reaches a bus (a bad payload, a bad token) gets an operation id of its
    own, in the body and the ``X-Operation-ID`` header, logged with the refusal as ``request_refused``.

    Every error is written in `problem_format` (RFC 9457 problem details unless you give another).
    The app's OpenAPI document declares, for each endpoint that reads its message with `payload` or
    `from_url`, the request body and parameters from the message's fields, the success response from
    its handler's result type and every failure status with the problem schema. `security_schemes`
    (for example ``{"bearer": {"type": "http", "scheme": "bearer"}}``) are declared for those
    endpoints too, when your authentication reads the request itself and FastAPI cannot see it.
    """
    app.add_exception_handler(PayloadError, _on_payload_error)
    app.add_exception_handler(PayloadTooLargeError, _on_payload_too_large)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(ResultError, _on_result_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_middleware(_UnexpectedErrorMiddleware)
    app.add_middleware(CorrelationIdMiddleware, header=correlation_header, problem_format=problem_format)
    document_messages(app, problem_format, security_schemes or {})
    return app
