"""The OpenAPI document of an app served through `install`, completed from its messages' types.

FastAPI documents what it validates itself. A `payload` or `from_url` dependency reads the request on
its own, so this fills in what FastAPI cannot see, from the types alone: the request body and the URL
parameters from the message's fields, the success response from its handler's result type, and every
failure status with the one problem schema. Adding a field to a message updates the document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from typing import Any

import attrs
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from cqrskit._messages import Query, StreamQuery
from cqrskit.fastapi._problem_format import ProblemFormat
from cqrskit.fastapi._reader import MessageReader
from cqrskit.fastapi._requests import CORRELATION_ID_HEADER
from cqrskit.fastapi._responses import CACHE_HEADER, OPERATION_ID_HEADER
from cqrskit.fastapi._schema import NO_DEFAULT, JsonSchemas, json_default, result_type
from cqrskit.fastapi._streaming import stream_contents

__all__ = ["FAILURE_STATUSES", "document_messages"]

FAILURE_STATUSES = (401, 403, 404, 409, 422, 500, 503, 504)
"""The failure statuses an endpoint that dispatches a message can answer (413 too when it reads a body)."""

_PATH_PARAMETER = re.compile(r"{(\w+)(?::[^}]*)?}")
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def document_messages(
    app: FastAPI, problem_format: ProblemFormat, security_schemes: Mapping[str, Mapping[str, Any]]
) -> None:
    """Make ``app.openapi()`` complete FastAPI's document from the messages' types (once, then cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            complete(generate(), app.routes, problem_format, security_schemes)
        assert app.openapi_schema is not None  # noqa: S101 - FastAPI's openapi() has just set it
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _readers(dependant: Dependant) -> Iterator[MessageReader[Any]]:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, MessageReader):
            yield dependency.call
        yield from _readers(dependency)


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


def complete(
    document: dict[str, Any],
    routes: Any,
    problem_format: ProblemFormat,
    security_schemes: Mapping[str, Mapping[str, Any]],
) -> None:
    """Add the messages' bodies, parameters and responses to `document`, which FastAPI made from `routes`."""
    schemas = JsonSchemas()
    problem_ref = {"$ref": f"#/components/schemas/{problem_format.name}"}

    def problem(code: int) -> dict[str, Any]:
        return {
            "description": HTTPStatus(code).phrase,
            "headers": {OPERATION_ID_HEADER: _header("the operation id, as in the body")},
            "content": {problem_format.media_type: {"schema": problem_ref}},
        }

    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        path_item = document.get("paths", {}).get(route.path_format, {})
        readers = list(_readers(route.dependant))
        for method in route.methods or ():
            operation = path_item.get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            if "422" in responses:  # FastAPI's own validation errors: install answers them as problems
                responses["422"] = problem(422)
            responses.setdefault("500", problem(500))
            for reader in readers:
                _document_reader(operation, route, reader, schemas, problem)
                if security_schemes:
                    operation["security"] = [{name: []} for name in security_schemes]
    if security_schemes:
        declared = document.setdefault("components", {}).setdefault("securitySchemes", {})
        declared.update(json.loads(json.dumps({name: dict(s) for name, s in security_schemes.items()})))
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(schemas.components)
    components[problem_format.name] = json.loads(json.dumps(dict(problem_format.schema)))
    text = json.dumps(document.get("paths", {}))
    for name in _FASTAPI_VALIDATION:
        if f"#/components/schemas/{name}" not in text:
            components.pop(name, None)


def _document_reader(
    operation: dict[str, Any],
    route: APIRoute,
    reader: MessageReader[Any],
    schemas: JsonSchemas,
    problem: Callable[[int], dict[str, Any]],
) -> None:
    message_type = reader.message_type
    in_path = set(_PATH_PARAMETER.findall(route.path))
    defaults = {field.name: field for field in attrs.fields(message_type)}
    parameters = operation.setdefault("parameters", [])
    declared = {(parameter.get("in"), parameter.get("name")) for parameter in parameters}
    for url_field in reader.url_fields:
        name = url_field.attribute if url_field.attribute in in_path else url_field.wire
        where = "path" if name in in_path else "query"
        if (where, name) in declared:
            continue
        field = defaults[url_field.attribute]
        schema = schemas.field_schema(field, url_field.type, "request", naming=reader.naming)
        required = where == "path" or field.default is attrs.NOTHING
        parameter: dict[str, Any] = {"name": name, "in": where, "required": required}
        if not required and not isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            default = json_default(field.default)
            if default is not NO_DEFAULT:
                schema = {**schema, "default": default}
        parameter["schema"] = schema
        parameters.append(parameter)
    if not parameters:
        operation.pop("parameters")

    if reader.from_body:
        body = schemas.schema(
            message_type,
            "request",
            naming=reader.naming,
            exclude=frozenset(reader.path_params) | frozenset(reader.server_fields),
        )
        if reader.envelope is not None:
            body = _wrapped(reader.envelope, body, closed=True)
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}

    responses = operation.setdefault("responses", {})
    code = route.status_code or 200
    responses.pop(str(code), None)
    success: dict[str, Any] = {
        "description": message_type.__doc__.strip().split("\n")[0] if message_type.__doc__ else "Success",
        "headers": {
            OPERATION_ID_HEADER: _header("the operation id the logs of this request carry"),
            CORRELATION_ID_HEADER: _header("the correlation id: the caller's, or a new one"),
        },
    }
    if code == HTTPStatus.CREATED:
        success["headers"]["Location"] = _header("the URL of what was created, when it has one")
    if issubclass(reader.answers or message_type, Query):
        success["headers"][CACHE_HEADER] = _header("hit or miss, when the query is cached")
    data_type = result_type(reader.answers or message_type)
    has_data = data_type is not type(None) or reader.response_envelope is not None
    if code != HTTPStatus.NO_CONTENT and has_data:
        data = schemas.schema(data_type, "response", naming=reader.naming)
        if reader.response_envelope is not None:
            data = _wrapped(reader.response_envelope, data, closed=False)
        # A streaming query's schema is one item's, sent as NDJSON or as Server-Sent Events.
        is_stream = issubclass(message_type, StreamQuery)
        success["content"] = stream_contents(data) if is_stream else {"application/json": {"schema": data}}
    responses[str(code)] = success
    statuses = (*FAILURE_STATUSES, 413) if reader.from_body else FAILURE_STATUSES
    for status in statuses:
        responses[str(status)] = problem(status)
    operation["responses"] = dict(sorted(responses.items()))


def _wrapped(key: str, schema: dict[str, Any], *, closed: bool) -> dict[str, Any]:
    wrapped: dict[str, Any] = {"type": "object", "properties": {key: schema}, "required": [key]}
    if closed:
        wrapped["additionalProperties"] = False
    return wrapped
