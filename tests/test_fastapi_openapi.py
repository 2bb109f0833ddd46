"""The OpenAPI document `install` completes from the messages' types."""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations at runtime.

import datetime as dt
import enum
import uuid
from typing import Annotated, Any

import attrs
import pytest
from fastapi import Depends, FastAPI
from openapi_spec_validator import validate
from starlette.responses import Response

from cqrskit import Command, Page, Query
from cqrskit.fastapi import from_url, install, payload


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


@attrs.frozen
class Tag:
    name: str = attrs.field(validator=attrs.validators.max_len(20))


@attrs.frozen
class PaintBox(Command[uuid.UUID]):
    """Paint a box."""

    box_id: uuid.UUID
    colour: Colour
    tags: tuple[Tag, ...] = ()
    layers: int = attrs.field(default=1, validator=[attrs.validators.ge(1), attrs.validators.le(9)])
    owner_email: str | None = attrs.field(default=None, metadata={"json_schema": {"format": "email"}})
    due: dt.datetime | None = None


@attrs.frozen
class BoxDto:
    id: uuid.UUID
    colour: Colour
    painted_at: dt.datetime


@attrs.frozen
class FindBoxes(Query[Page[BoxDto]]):
    colour: Colour | None = None
    page: int = 1


def app_for(command_type: type[Any]) -> FastAPI:
    app = install(FastAPI())
    paint = payload(command_type, path_params=["box_id"])
    find = from_url(FindBoxes)

    @app.put("/boxes/{box_id}", status_code=201)
    async def paint_box(command: Annotated[command_type, Depends(paint)]) -> Response:  # type: ignore[valid-type]
        raise NotImplementedError

    @app.get("/boxes")
    async def find_boxes(query: Annotated[FindBoxes, Depends(find)]) -> Response:
        raise NotImplementedError

    return app


def schema(document: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]
    return found


class TestRequestBody:
    """The body and the parameters come from the message's fields."""

    def test_valid_document(self) -> None:
        validate(app_for(PaintBox).openapi())

    def test_body_fields(self) -> None:
        document = app_for(PaintBox).openapi()
        operation = document["paths"]["/boxes/{box_id}"]["put"]
        body = schema(document, operation["requestBody"]["content"]["application/json"]["schema"])
        assert set(body["properties"]) == {"colour", "tags", "layers", "owner_email", "due"}
        assert body["required"] == ["colour"]
        assert body["additionalProperties"] is False
        layers = body["properties"]["layers"]
        assert layers == {"type": "integer", "minimum": 1, "maximum": 9, "default": 1}
        assert body["properties"]["owner_email"]["format"] == "email"
        assert body["properties"]["due"]["anyOf"][0] == {"type": "string", "format": "date-time"}
        assert schema(document, body["properties"]["colour"])["enum"] == ["red", "blue"]
        tag = schema(document, body["properties"]["tags"]["items"])
        assert tag["properties"]["name"] == {"type": "string", "maxLength": 20}

    def test_path_parameter(self) -> None:
        operation = app_for(PaintBox).openapi()["paths"]["/boxes/{box_id}"]["put"]
        assert operation["parameters"] == [
            {"name": "box_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
        ]

    def test_query_parameters(self) -> None:
        operation = app_for(PaintBox).openapi()["paths"]["/boxes"]["get"]
        assert [(p["name"], p["in"], p["required"]) for p in operation["parameters"]] == [
            ("colour", "query", False),
            ("page", "query", False),
        ]

    def test_a_new_field_updates_the_document(self) -> None:
        @attrs.frozen
        class PaintBox(Command[uuid.UUID]):  # the same command, one field more
            box_id: uuid.UUID
            colour: Colour
            finish: str = "matte"

        document = app_for(PaintBox).openapi()
        operation = document["paths"]["/boxes/{box_id}"]["put"]
        body = schema(document, operation["requestBody"]["content"]["application/json"]["schema"])
        assert body["properties"]["finish"] == {"type": "string", "default": "matte"}


class TestResponses:
    """Success from the result type, every failure as a problem."""

    def test_success_schemas(self) -> None:
        document = app_for(PaintBox).openapi()
        created = document["paths"]["/boxes/{box_id}"]["put"]["responses"]["201"]
        assert created["content"]["application/json"]["schema"] == {"type": "string", "format": "uuid"}
        assert "Location" in created["headers"]
        page = schema(
            document,
            document["paths"]["/boxes"]["get"]["responses"]["200"]["content"]["application/json"]["schema"],
        )
        assert set(page["properties"]) == {"items", "pagination"}
        pagination = schema(document, page["properties"]["pagination"])
        assert set(pagination["required"]) == {
            "page", "page_size", "total_count", "total_pages", "has_next", "has_previous", "offset", "limit"
        }  # fmt: skip

    @pytest.mark.parametrize("status", ["401", "403", "404", "409", "422", "500", "503", "504"])
    def test_problems(self, status: str) -> None:
        document = app_for(PaintBox).openapi()
        for operation in (document["paths"]["/boxes/{box_id}"]["put"], document["paths"]["/boxes"]["get"]):
            content = operation["responses"][status]["content"]
            assert content == {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            }
        problem = document["components"]["schemas"]["Problem"]
        assert {"errors", "operation_id", "correlation_id"} <= set(problem["properties"])
        assert "HTTPValidationError" not in document["components"]["schemas"]
