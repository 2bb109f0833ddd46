"""The options of `cqrskit.fastapi` for APIs not shaped like ours, each over HTTP against a real app."""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations at runtime.

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import attrs
import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from starlette.responses import Response

from cqrskit import (
    Command,
    CommandBus,
    Context,
    NotAuthenticatedError,
    NotFoundError,
    OffsetPage,
    OperationStatus,
    Query,
    QueryBus,
    Result,
)
from cqrskit.fastapi import (
    OPERATION_ID_HEADER,
    WHOLE_BODY,
    ProblemFormat,
    camel_case,
    execute_then_query,
    install,
    payload,
    problem_response,
    result_response,
)
from cqrskit.fastapi import from_url as url_reader
from cqrskit.fastapi._schema import composed_validators, json_default
from tests.asgi import asgi_client

# --- messages ------------------------------------------------------------------------------------


@attrs.frozen
class Address:
    street_name: str
    zip_code: str = attrs.field(metadata={"wire_name": "ZIP"})


@attrs.frozen
class LineItem:
    unit_price: float


@attrs.frozen
class PlaceOrder(Command[uuid.UUID]):
    shop_id: uuid.UUID
    placed_by: str
    delivery_address: Address
    line_items: tuple[LineItem, ...] = ()
    gift_note: str = attrs.field(default="", metadata={"wire_name": "note"})


@attrs.frozen
class OrderDto:
    order_id: uuid.UUID
    placed_by: str
    gift_note: str = attrs.field(metadata={"wire_name": "note"})


@attrs.frozen
class GetOrder(Query[OrderDto]):
    order_id: uuid.UUID


@attrs.frozen
class ListOrders(Query[OffsetPage[OrderDto]]):
    offset: int = 0
    limit: int = 2


@attrs.frozen
class Comment(Command[None]):
    body: str  # a field called body, told apart from the body as a whole


@attrs.frozen
class Login(Command[str]):
    password: str


@attrs.frozen
class Archive(Command[None]):
    order_id: uuid.UUID


ORDER_ID = uuid.UUID(int=42)


class Orders:
    def __init__(self) -> None:
        self.placed: list[PlaceOrder] = []
        self.reads: list[Context] = []


def buses(orders: Orders) -> tuple[CommandBus, QueryBus]:
    class PlaceOrderHandler:
        async def handle(self, command: PlaceOrder, context: Context) -> uuid.UUID:
            if command.placed_by == "nobody":
                raise NotFoundError("no such customer")
            orders.placed.append(command)
            return ORDER_ID

    class GetOrderHandler:
        async def handle(self, query: GetOrder, context: Context) -> OrderDto:
            orders.reads.append(context)
            placed = orders.placed[-1]
            return OrderDto(query.order_id, placed.placed_by, placed.gift_note)

    class ListOrdersHandler:
        async def handle(self, query: ListOrders, context: Context) -> OffsetPage[OrderDto]:
            every = [OrderDto(uuid.UUID(int=n), f"p{n}", "") for n in range(5)]
            window = every[query.offset : query.offset + query.limit]
            return OffsetPage(window, total_count=len(every), offset=query.offset, limit=query.limit)

    class CommentHandler:
        async def handle(self, command: Comment, context: Context) -> None:
            return None

    class LoginHandler:
        async def handle(self, command: Login, context: Context) -> str:
            raise NotAuthenticatedError("wrong email or password")

    class ArchiveHandler:
        async def handle(self, command: Archive, context: Context) -> None:
            return None

    commands = CommandBus(
        handlers={
            PlaceOrder: PlaceOrderHandler(),
            Comment: CommentHandler(),
            Login: LoginHandler(),
            Archive: ArchiveHandler(),
        }
    )
    queries = QueryBus(handlers={GetOrder: GetOrderHandler(), ListOrders: ListOrdersHandler()})
    return commands, queries


async def user_name(request: Request) -> object:
    return request.headers.get("X-User", "anonymous")


def errors_body(problem: Mapping[str, Any]) -> dict[str, Any]:
    return {"errors": {"body": [problem["detail"], *problem.get("errors", {}).values()]}}


SHAPED = ProblemFormat(
    render=errors_body,
    media_type="application/json",
    name="GenericErrorModel",
    schema={"type": "object", "properties": {"errors": {"type": "object"}}, "required": ["errors"]},
)


def make_app(orders: Orders, problem_format: ProblemFormat | None = None) -> FastAPI:
    app = install(FastAPI(), problem_format=problem_format) if problem_format else install(FastAPI())
    commands, queries = buses(orders)
    context = Context()
    place = payload(
        PlaceOrder,
        path_params=["shop_id"],
        server_fields={"placed_by": user_name},
        envelope="order",
        response_envelope="order",
        answers=GetOrder,
        naming=camel_case,
    )
    comment = payload(Comment)
    login = payload(Login)
    archive = url_reader(Archive)
    listing = url_reader(ListOrders)

    @app.post("/shops/{shop_id}/orders", status_code=201)
    async def place_order(command: Annotated[PlaceOrder, Depends(place)]) -> Response:
        read = GetOrder(ORDER_ID)
        return place.respond(await execute_then_query(commands, command, queries, read, context), status=201)

    @app.post("/comments", status_code=202)
    async def post_comment(command: Annotated[Comment, Depends(comment)]) -> Response:
        return comment.respond(await commands.execute(command, context), status=202)

    @app.post("/login")
    async def log_in(command: Annotated[Login, Depends(login)]) -> Response:
        return login.respond(await commands.execute(command, context))

    @app.delete("/orders/{order_id}", status_code=204)
    async def archive_order(command: Annotated[Archive, Depends(archive)]) -> Response:
        return archive.respond(await commands.execute(command, context), status=204)

    @app.get("/orders")
    async def list_orders(query: Annotated[ListOrders, Depends(listing)]) -> Response:
        return listing.respond(await queries.execute(query, context))

    async def command_bus(request: Request) -> CommandBus:
        return commands

    async def caller_context(request: Request) -> Context:
        return Context(correlation_id=request.headers.get("X-User"))

    direct = payload(Comment, bus=command_bus, context=caller_context)

    @app.post("/direct-comments", status_code=201)
    async def direct_comment(command: Annotated[Comment, Depends(direct)], request: Request) -> Response:
        return direct.respond(await direct.execute(command, request), status=201)

    @app.post("/unbound-comments")
    async def unbound_comment(command: Annotated[Comment, Depends(comment)], request: Request) -> Response:
        return comment.respond(await comment.execute(command, request))

    @app.get("/direct-problem")
    async def direct_problem() -> Response:
        return problem_response(Result.failure(OperationStatus.CONFLICT, {"detail": "taken"}))

    @app.get("/direct-result")
    async def direct_result() -> Response:
        return result_response(Result.failure(OperationStatus.NOT_FOUND, {"detail": "gone"}))

    return app


@pytest.fixture
def orders() -> Orders:
    return Orders()


@pytest.fixture
async def client(orders: Orders) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(make_app(orders)) as http:
        yield http


@pytest.fixture
async def shaped(orders: Orders) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(make_app(orders, SHAPED)) as http:
        yield http


def order_body(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {"deliveryAddress": {"streetName": "Main", "ZIP": "12345"}, "note": "hi"}
    fields.update(changes)
    return {"order": fields}


SHOP = f"/shops/{uuid.UUID(int=1)}/orders"


class TestProblemFormat:
    """One renderer for every error: install's, result_response's and problem_response's."""

    async def test_install_errors(self, shaped: httpx.AsyncClient) -> None:
        refused = await shaped.post("/comments", json=[1])
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/json"
        assert refused.json() == {"errors": {"body": ["some fields are invalid", "expected a JSON object"]}}
        assert refused.headers[OPERATION_ID_HEADER]
        unknown_route = await shaped.get("/nowhere")
        assert unknown_route.status_code == 404
        assert unknown_route.json() == {"errors": {"body": ["Not Found"]}}

    async def test_result_response_and_problem_response(self, shaped: httpx.AsyncClient) -> None:
        conflict = await shaped.get("/direct-problem")
        assert (conflict.status_code, conflict.json()) == (409, {"errors": {"body": ["taken"]}})
        gone = await shaped.get("/direct-result")
        assert (gone.status_code, gone.json()) == (404, {"errors": {"body": ["gone"]}})
        failed = await shaped.post(SHOP, json=order_body(), headers={"X-User": "nobody"})
        assert (failed.status_code, failed.json()) == (404, {"errors": {"body": ["no such customer"]}})
        assert failed.headers["content-type"] == "application/json"

    def test_documented(self, orders: Orders) -> None:
        document = make_app(orders, SHAPED).openapi()
        responses = document["paths"]["/comments"]["post"]["responses"]
        ref = {"$ref": "#/components/schemas/GenericErrorModel"}
        for status in ("401", "404", "413", "422", "500"):
            assert responses[status]["content"] == {"application/json": {"schema": ref}}
        assert "Problem" not in document["components"]["schemas"]

    async def test_default_is_rfc9457(self, client: httpx.AsyncClient) -> None:
        conflict = await client.get("/direct-problem")
        assert conflict.headers["content-type"] == "application/problem+json"
        assert conflict.json()["type"] == "urn:cqrskit:problem:conflict"


class TestWholeBodyKey:
    """The body as a whole is "$"; a field called body keeps its own key."""

    async def test_field_called_body(self, client: httpx.AsyncClient) -> None:
        wrong_field = await client.post("/comments", json={"body": 5})
        assert wrong_field.json()["errors"] == {"body": "expected a string"}
        not_an_object = await client.post("/comments", json=["body"])
        assert not_an_object.json()["errors"] == {WHOLE_BODY: "expected a JSON object"}
        malformed = await client.post("/comments", content=b"{", headers={"content-type": "application/json"})
        assert list(malformed.json()["errors"]) == ["$"]
        missing = await client.post("/comments", json={})
        assert missing.json()["errors"] == {"body": "field required"}


class TestEnvelopesAndServerFields:
    async def test_envelope_read_and_written(self, client: httpx.AsyncClient, orders: Orders) -> None:
        placed = await client.post(SHOP, json=order_body(), headers={"X-User": "ada"})
        assert placed.status_code == 201
        assert placed.json() == {"order": {"orderId": str(ORDER_ID), "placedBy": "ada", "note": "hi"}}
        (command,) = orders.placed
        assert command.shop_id == uuid.UUID(int=1)
        assert command.placed_by == "ada"

    @pytest.mark.parametrize(
        ("body", "errors"),
        [
            ({"deliveryAddress": {"streetName": "x", "ZIP": "1"}}, {"order": "send the fields inside"}),
            ({"order": {}, "extra": 1}, {"order": "send the fields inside"}),
            ({"order": [1]}, {"order": "expected a JSON object"}),
        ],
    )
    async def test_envelope_required(
        self, client: httpx.AsyncClient, body: object, errors: dict[str, str]
    ) -> None:
        refused = await client.post(SHOP, json=body)
        assert refused.status_code == 422
        found = refused.json()["errors"]
        assert list(found) == list(errors)
        assert all(found[key].startswith(text) for key, text in errors.items())

    @pytest.mark.parametrize(
        ("sent", "path", "text"),
        [
            ("placedBy", "order.placedBy", "is set by the server; leave it out of the body"),
            ("shopId", "order.shopId", "comes from the URL path; leave it out of the body"),
        ],
    )
    async def test_server_and_path_fields_refused(
        self, client: httpx.AsyncClient, orders: Orders, sent: str, path: str, text: str
    ) -> None:
        refused = await client.post(SHOP, json=order_body(**{sent: "x"}))
        assert refused.status_code == 422
        assert refused.json()["errors"] == {path: text}
        assert orders.placed == []

    async def test_path_errors_outside_the_envelope(self, client: httpx.AsyncClient) -> None:
        refused = await client.post("/shops/not-a-uuid/orders", json=order_body())
        assert list(refused.json()["errors"]) == ["shopId"]

    def test_documented(self, orders: Orders) -> None:
        document = make_app(orders).openapi()
        operation = document["paths"]["/shops/{shop_id}/orders"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["required"] == ["order"]
        assert body["additionalProperties"] is False
        inner = document["components"]["schemas"][body["properties"]["order"]["$ref"].rsplit("/", 1)[1]]
        assert set(inner["properties"]) == {"deliveryAddress", "lineItems", "note"}
        created = operation["responses"]["201"]["content"]["application/json"]["schema"]
        answered = document["components"]["schemas"][created["properties"]["order"]["$ref"].rsplit("/", 1)[1]]
        assert set(answered["properties"]) == {"orderId", "placedBy", "note"}


class TestNaming:
    """camelCase by rule, a wire name per field, in requests, responses and error paths."""

    async def test_error_paths_use_wire_names(self, client: httpx.AsyncClient) -> None:
        bad = order_body(deliveryAddress={"streetName": 1, "ZIP": 2}, lineItems=[{"unitPrice": "x"}], note=3)
        refused = await client.post(SHOP, json=bad)
        assert refused.json()["errors"] == {
            "order.deliveryAddress.streetName": "expected a string",
            "order.deliveryAddress.ZIP": "expected a string",
            "order.lineItems[0].unitPrice": "expected a number",
            "order.note": "expected a string",
        }

    async def test_attribute_names_are_unknown(self, client: httpx.AsyncClient) -> None:
        refused = await client.post(
            SHOP, json={"order": {"delivery_address": {"street_name": "x", "zip_code": "1"}, "gift_note": ""}}
        )
        assert refused.status_code == 422
        errors = refused.json()["errors"]
        assert errors["order.deliveryAddress"] == "field required"
        assert {"order.delivery_address", "order.gift_note"} <= set(errors)

    async def test_structured_with_wire_names(self, client: httpx.AsyncClient, orders: Orders) -> None:
        body = order_body(lineItems=[{"unitPrice": 2.5}])
        assert (await client.post(SHOP, json=body)).status_code == 201
        (command,) = orders.placed
        assert command.delivery_address == Address("Main", "12345")
        assert command.line_items == (LineItem(2.5),)
        assert command.gift_note == "hi"


class TestStatuses:
    async def test_any_success_status(self, client: httpx.AsyncClient) -> None:
        accepted = await client.post("/comments", json={"body": "hi"})
        assert accepted.status_code == 202
        assert accepted.json() is None
        assert accepted.headers[OPERATION_ID_HEADER]

    async def test_no_content_keeps_the_operation_id(self, client: httpx.AsyncClient) -> None:
        archived = await client.delete(f"/orders/{uuid.UUID(int=3)}")
        assert archived.status_code == 204
        assert archived.content == b""
        assert archived.headers[OPERATION_ID_HEADER]

    async def test_not_authenticated_is_401(self, client: httpx.AsyncClient) -> None:
        failed = await client.post("/login", json={"password": "guess"})
        assert failed.status_code == 401
        assert failed.json()["type"] == "urn:cqrskit:problem:unauthenticated"
        assert failed.json()["detail"] == "wrong email or password"


class TestExecuteThenQuery:
    async def test_answers_with_the_query(self, client: httpx.AsyncClient, orders: Orders) -> None:
        placed = await client.post(SHOP, json=order_body(), headers={"X-User": "ada"})
        (read,) = orders.reads
        assert read.causation_id is not None  # the command's operation id ties the two in the logs
        assert read.causation_id != placed.headers[OPERATION_ID_HEADER]  # the response is the query's

    async def test_a_failed_command_skips_the_query(self, client: httpx.AsyncClient, orders: Orders) -> None:
        failed = await client.post(SHOP, json=order_body(), headers={"X-User": "nobody"})
        assert failed.status_code == 404
        assert orders.reads == []


class TestOffsetPage:
    async def test_over_http(self, client: httpx.AsyncClient) -> None:
        page = (await client.get("/orders", params={"offset": 2, "limit": 2})).json()
        assert [item["placed_by"] for item in page["items"]] == ["p2", "p3"]
        assert page["pagination"] == {
            "page": 2,
            "page_size": 2,
            "total_count": 5,
            "total_pages": 3,
            "has_next": True,
            "has_previous": True,
            "offset": 2,
            "limit": 2,
        }

    def test_documented(self, orders: Orders) -> None:
        document = make_app(orders).openapi()
        ok = document["paths"]["/orders"]["get"]["responses"]["200"]["content"]["application/json"]
        page = document["components"]["schemas"][ok["schema"]["$ref"].rsplit("/", 1)[1]]
        assert page["required"] == ["items", "pagination"]
        pagination = document["components"]["schemas"]["Pagination"]
        assert pagination["properties"]["offset"] == {"type": "integer"}
        assert pagination["properties"]["limit"] == {"type": "integer"}


class TestComposedValidators:
    """The one place that reads attrs's composed validators: fails loudly if attrs changes them."""

    def test_and_and_lists(self) -> None:
        low, high = attrs.validators.ge(1), attrs.validators.le(9)
        assert composed_validators(attrs.validators.and_(low, high)) == (low, high)

        @attrs.define
        class Bounded:
            value: int = attrs.field(validator=[low, high])

        assert composed_validators(attrs.fields(Bounded).value.validator) == (low, high)
        assert composed_validators(low) == ()

    def test_json_default(self) -> None:
        assert json_default(uuid.UUID(int=1)) == str(uuid.UUID(int=1))


class TestExecute:
    """A reader given bus= and context= dispatches its message itself."""

    async def test_dispatches(self, client: httpx.AsyncClient) -> None:
        done = await client.post("/direct-comments", json={"body": "hi"}, headers={"X-User": "ada"})
        assert done.status_code == 201
        assert done.headers[OPERATION_ID_HEADER]

    async def test_needs_both(self, client: httpx.AsyncClient) -> None:
        """Without bus= and context=, execute() is a wiring mistake: a 500 with no internal text."""
        failed = await client.post("/unbound-comments", json={"body": "hi"})
        assert failed.status_code == 500
        assert "bus=" not in failed.text
