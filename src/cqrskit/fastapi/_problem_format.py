"""How an error is written on the wire: RFC 9457 problem details by default, or a format of your own."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

__all__ = ["PROBLEM_MEDIA_TYPE", "PROBLEM_SCHEMA", "RFC9457", "ProblemFormat"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
"""The media type of RFC 9457 problem details."""

PROBLEM_SCHEMA: Mapping[str, Any] = MappingProxyType(
    {
        "title": "Problem",
        "description": "An RFC 9457 problem: what went wrong, and the ids to quote when you report it.",
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "urn:cqrskit:problem:<operation status>"},
            "title": {"type": "string", "description": "the HTTP reason phrase"},
            "status": {"type": "integer", "description": "the HTTP status code"},
            "detail": {"type": "string", "description": "what went wrong, beyond the fields"},
            "instance": {"type": "string", "description": "the request path"},
            "operation_id": {"type": "string", "description": "the id the logs of this request carry"},
            "correlation_id": {"type": "string", "description": "the X-Correlation-ID of the request"},
            "errors": {
                "type": "object",
                "description": "field path (a.b[2].c) to what is wrong with it",
                "additionalProperties": {"type": "string"},
            },
        },
        "required": ["type", "title", "status", "detail"],
    }
)
"""The JSON Schema of `problem_body`'s objects, declared once in the OpenAPI document's components."""


def _as_is(problem: Mapping[str, Any]) -> Any:
    return problem


@attrs.frozen
class ProblemFormat:
    """How errors are written: `render` turns a `problem_body` dict into the JSON body to send.

    Give one to `install` (``install(app, problem_format=...)``) and `result_response`,
    `problem_response` and every error `install` answers use it; the OpenAPI document declares
    `schema` under `name` with `media_type` for every failure status. For example, the RealWorld API's
    ``{"errors": {"body": [...]}}``::

        def errors_body(problem):
            return {"errors": {"body": [problem["detail"], *problem.get("errors", {}).values()]}}

        realworld = ProblemFormat(
            render=errors_body,
            media_type="application/json",
            name="GenericErrorModel",
            schema={"type": "object", "properties": {"errors": {"type": "object"}}, "required": ["errors"]},
        )
    """

    render: Callable[[Mapping[str, Any]], Any] = _as_is
    media_type: str = PROBLEM_MEDIA_TYPE
    name: str = "Problem"
    schema: Mapping[str, Any] = PROBLEM_SCHEMA


RFC9457 = ProblemFormat()
"""The default `ProblemFormat`: `problem_body`'s dict as it is, as ``application/problem+json``."""
