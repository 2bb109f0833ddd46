"""FastAPI integration: HTTP statuses, problem+json answers, strict payloads, the request `Context`.

Install it with the ``fastapi`` extra (``pip install 'cqrskit[fastapi]'``). A typical app::

    app = install(FastAPI(lifespan=lifespan))
    Commands = Annotated[CommandBus, Depends(from_container("command_bus"))]
    RequestContext = Annotated[Context, Depends(context_dependency(current_principal))]

    @app.post("/users", status_code=201)
    async def create_user(
        command: Annotated[CreateUser, Depends(payload(CreateUser))], bus: Commands, context: RequestContext
    ) -> JSONResponse:
        return result_response(await bus.execute(command, context), created=True)
"""

try:
    import fastapi as _fastapi  # noqa: F401 - only checks that the extra is installed
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "cqrskit.fastapi needs FastAPI, which is not installed: pip install 'cqrskit[fastapi]'"
    ) from exc

from cqrskit.fastapi._app import CorrelationIdMiddleware, install
from cqrskit.fastapi._converter import strict_converter
from cqrskit.fastapi._errors import PayloadError, PayloadTooLargeError
from cqrskit.fastapi._naming import WIRE_NAME_METADATA, camel_case
from cqrskit.fastapi._openapi import FAILURE_STATUSES
from cqrskit.fastapi._payload import DEFAULT_MAX_BODY_BYTES, WHOLE_BODY, parse_json, structure
from cqrskit.fastapi._problem_format import PROBLEM_MEDIA_TYPE, PROBLEM_SCHEMA, RFC9457, ProblemFormat
from cqrskit.fastapi._reader import MessageReader, ServerField, from_url, payload
from cqrskit.fastapi._requests import (
    CORRELATION_ID_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    TENANT_HEADER,
    TenantReader,
    context_dependency,
    correlation_id,
    from_container,
    read_body,
    tenant_from_header,
)
from cqrskit.fastapi._responses import (
    OPERATION_ID_HEADER,
    http_status,
    problem_body,
    problem_response,
    result_response,
    to_json,
)
from cqrskit.fastapi._schema import SCHEMA_METADATA
from cqrskit.fastapi._streaming import NDJSON_MEDIA_TYPE, SSE_MEDIA_TYPE, stream_response
from cqrskit.fastapi._write_then_read import execute_then_query

__all__ = [
    "CORRELATION_ID_HEADER",
    "DEFAULT_MAX_BODY_BYTES",
    "FAILURE_STATUSES",
    "IDEMPOTENCY_KEY_HEADER",
    "NDJSON_MEDIA_TYPE",
    "OPERATION_ID_HEADER",
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_SCHEMA",
    "RFC9457",
    "SCHEMA_METADATA",
    "SSE_MEDIA_TYPE",
    "TENANT_HEADER",
    "WHOLE_BODY",
    "WIRE_NAME_METADATA",
    "CorrelationIdMiddleware",
    "MessageReader",
    "PayloadError",
    "PayloadTooLargeError",
    "ProblemFormat",
    "ServerField",
    "TenantReader",
    "camel_case",
    "context_dependency",
    "correlation_id",
    "execute_then_query",
    "from_container",
    "from_url",
    "http_status",
    "install",
    "parse_json",
    "payload",
    "problem_body",
    "problem_response",
    "read_body",
    "result_response",
    "stream_response",
    "strict_converter",
    "structure",
    "tenant_from_header",
    "to_json",
]
