"""cqrskit.fastapi against a small real FastAPI app driven over HTTP (httpx ASGI transport)."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any

import attrs
import httpx
import pytest
import structlog
from dependency_injector import containers, providers
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from starlette.responses import JSONResponse

from cqrskit import (
    AffectedEntity,
    CacheInfo,
    Command,
    CommandBus,
    Context,
    NotFoundError,
    OperationStatus,
    Page,
    Principal,
    QueryBus,
    Result,
)
from cqrskit import Query as CqrsQuery
from cqrskit.fastapi import (
    CORRELATION_ID_HEADER,
    OPERATION_ID_HEADER,
    PROBLEM_MEDIA_TYPE,
    PayloadError,
    context_dependency,
    from_container,
    http_status,
    install,
    parse_json,
    payload,
    problem_response,
    result_response,
    strict_converter,
    structure,
)
from cqrskit.testing import override_handler
from tests.asgi import asgi_client

# --- a small service -------------------------------------------------------------------------------


class Kind(enum.StrEnum):
    CAT = "cat"
    DOG = "dog"


@attrs.frozen
class Address:
    street: str
    zip: str


@attrs.frozen
class Owner:
    email: str
    address: Address


@attrs.frozen
class Toy:
    name: str
    price: float


@attrs.frozen
class RegisterPet(Command[uuid.UUID]):
    name: str
    age: int
    kind: Kind
    owner: Owner
    toys: tuple[Toy, ...] = ()
    vaccinated: bool = False
    born: dt.datetime | None = None


@attrs.frozen
class RenamePet(Command[None]):
    pet_id: uuid.UUID
    name: str


@attrs.frozen
class PetDto:
    id: uuid.UUID
    name: str
    kind: Kind
    registered_by: str | None


@attrs.frozen
class GetPet(CqrsQuery[PetDto]):
    pet_id: uuid.UUID


@attrs.frozen
class ListPets(CqrsQuery[Page[PetDto]]):
    page: int
    page_size: int


@attrs.frozen
class Explode(Command[None]):
    pass


class PetStore:
    def __init__(self) -> None:
        self.pets: dict[uuid.UUID, PetDto] = {}
        self.contexts: list[Context] = []


class RegisterPetHandler:
    def __init__(self, store: PetStore) -> None:
        self.store = store

    async def handle(self, command: RegisterPet, context: Context) -> Result[uuid.UUID]:
        self.store.contexts.append(context)
        pet_id = uuid.uuid4()
        registered_by = context.principal.id if context.principal else None
        self.store.pets[pet_id] = PetDto(pet_id, command.name, command.kind, registered_by)
        return Result.success(pet_id, affected_entities=[AffectedEntity("pet", str(pet_id), "created")])


class RenamePetHandler:
    def __init__(self, store: PetStore) -> None:
        self.store = store

    async def handle(self, command: RenamePet, context: Context) -> None:
        pet = self.store.pets.get(command.pet_id)
        if pet is None:
            raise NotFoundError(f"no pet {command.pet_id}")
        self.store.pets[command.pet_id] = attrs.evolve(pet, name=command.name)


class ExplodeHandler:
    async def handle(self, command: Explode, context: Context) -> None:
        raise RuntimeError("SELECT secret FROM internals")


class GetPetHandler:
    def __init__(self, store: PetStore) -> None:
        self.store = store

    async def handle(self, query: GetPet, context: Context) -> Result[PetDto]:
        pet = self.store.pets.get(query.pet_id)
        if pet is None:
            raise NotFoundError(f"no pet {query.pet_id}")
        return Result.success(pet, cache_info=CacheInfo(hit=False, key="pet", ttl=60))


class ListPetsHandler:
    def __init__(self, store: PetStore) -> None:
        self.store = store

    async def handle(self, query: ListPets, context: Context) -> Page[PetDto]:
        pets = sorted(self.store.pets.values(), key=lambda pet: pet.name)
        start = (query.page - 1) * query.page_size
        return Page(pets[start : start + query.page_size], len(pets), query.page, query.page_size)


class PetContainer(containers.DeclarativeContainer):
    store = providers.Singleton(PetStore)
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                RegisterPet: providers.Factory(RegisterPetHandler, store=store),
                RenamePet: providers.Factory(RenamePetHandler, store=store),
                Explode: providers.Factory(ExplodeHandler),
            }
        ),
    )
    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict(
            {
                GetPet: providers.Factory(GetPetHandler, store=store),
                ListPets: providers.Factory(ListPetsHandler, store=store),
            }
        ),
    )


TOKENS = {"alice-token": Principal("alice"), "admin-token": Principal("admin", is_admin=True)}


def current_principal(authorization: Annotated[str | None, Header()] = None) -> Principal | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    principal = TOKENS.get(token) if scheme.lower() == "bearer" else None
    if principal is None:
        raise HTTPException(401, "unknown bearer token", headers={"WWW-Authenticate": "Bearer"})
    return principal


Commands = Annotated[CommandBus, Depends(from_container("command_bus"))]
Queries = Annotated[QueryBus, Depends(from_container("query_bus"))]
RequestContext = Annotated[Context, Depends(context_dependency(current_principal))]


def make_app(container: PetContainer) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.container = container
        yield

    app = install(FastAPI(lifespan=lifespan))

    @app.post("/pets", status_code=201)
    async def register_pet(
        command: Annotated[RegisterPet, Depends(payload(RegisterPet, max_bytes=4096))],
        bus: Commands,
        context: RequestContext,
    ) -> JSONResponse:
        result = await bus.execute(command, context)
        return result_response(result, created=True, body={"id": str(result.data)} if result.data else None)

    @app.patch("/pets/{pet_id}")
    async def rename_pet(
        command: Annotated[RenamePet, Depends(payload(RenamePet, path_params=["pet_id"]))],
        bus: Commands,
        context: RequestContext,
    ) -> JSONResponse:
        return result_response(await bus.execute(command, context))

    @app.get("/pets/{pet_id}")
    async def get_pet(pet_id: uuid.UUID, bus: Queries, context: RequestContext) -> JSONResponse:
        return result_response(await bus.execute(GetPet(pet_id), context))

    @app.get("/pets")
    async def list_pets(
        bus: Queries,
        context: RequestContext,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> JSONResponse:
        return result_response(await bus.execute(ListPets(page, page_size), context))

    @app.get("/pets/{pet_id}/name")
    async def pet_name(pet_id: uuid.UUID, bus: Queries, context: RequestContext) -> dict[str, str]:
        return {"name": (await bus.execute(GetPet(pet_id), context)).unwrap().name}

    @app.post("/explode")
    async def explode(bus: Commands, context: RequestContext) -> JSONResponse:
        return result_response(await bus.execute(Explode(), context))

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("password=hunter2")

    return app


@pytest.fixture
def container() -> Iterator[PetContainer]:
    container = PetContainer()
    yield container
    container.unwire()


@pytest.fixture
async def client(container: PetContainer) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(container)
    async with asgi_client(app) as client:
        yield client


def pet_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "name": "Rex",
        "age": 3,
        "kind": "dog",
        "owner": {"email": "a@example.com", "address": {"street": "Main St", "zip": "12345"}},
        "toys": [{"name": "ball", "price": 2.5}],
        "born": "2021-04-01T10:00:00+00:00",
    }
    body.update(changes)
    return body


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert str(body["type"]).startswith("urn:cqrskit:problem:")
    assert body["operation_id"] == response.headers[OPERATION_ID_HEADER]  # every problem carries one
    return body


# --- unit tests ------------------------------------------------------------------------------------


class TestHttpStatus:
    """http_status maps every operation status to its HTTP code."""

    @pytest.mark.parametrize(
        ("status", "code"),
        [
            (OperationStatus.SUCCESS, 200),
            (OperationStatus.VALIDATION_ERROR, 422),
            (OperationStatus.UNAUTHENTICATED, 401),
            (OperationStatus.UNAUTHORIZED, 403),
            (OperationStatus.NOT_FOUND, 404),
            (OperationStatus.CONFLICT, 409),
            (OperationStatus.TIMEOUT, 504),
            (OperationStatus.FAILED, 500),
        ],
    )
    def test_each_status(self, status: OperationStatus, code: int) -> None:
        """Each status has the code the contract names."""
        assert http_status(status) == code

    def test_created(self) -> None:
        """A created success is 201; `created` changes nothing for a failure."""
        assert http_status(OperationStatus.SUCCESS, created=True) == 201
        assert http_status(OperationStatus.CONFLICT, created=True) == 409

    def test_every_status_is_mapped(self) -> None:
        """No status is left without a code."""
        assert {http_status(s) for s in OperationStatus} >= {200, 422, 401, 403, 404, 409, 504, 500}


class TestProblemResponse:
    """problem_response turns a failed Result into RFC 9457 problem details."""

    def test_validation_problem_lists_fields(self) -> None:
        """A validation failure carries every field error and the operation id."""
        result = Result.failure(OperationStatus.VALIDATION_ERROR, {"email": "bad", "name": "empty"})
        result = result.evolve(operation_id="op-1")
        response = problem_response(result, instance="/users")
        assert response.status_code == 422
        assert response.media_type == PROBLEM_MEDIA_TYPE
        assert response.headers[OPERATION_ID_HEADER] == "op-1"
        body = parse_json(bytes(response.body))
        assert body == {
            "type": "urn:cqrskit:problem:validation_error",
            "title": HTTPStatus(422).phrase,  # its wording changed in Python 3.13
            "status": 422,
            "detail": "some fields are invalid",
            "instance": "/users",
            "operation_id": "op-1",
            "errors": {"email": "bad", "name": "empty"},
        }

    def test_detail_error_becomes_detail(self) -> None:
        """The errors' "detail" entry is the problem's detail, not a field."""
        result = Result.failure(OperationStatus.NOT_FOUND, {"detail": "no such user"})
        body = parse_json(bytes(problem_response(result).body))
        assert body["detail"] == "no such user"
        assert "errors" not in body
        assert body["status"] == 404

    def test_refuses_success(self) -> None:
        """A successful Result is not a problem."""
        with pytest.raises(ValueError, match="failed Result"):
            problem_response(Result.success(1))


class TestStructure:
    """structure builds messages strictly and names every bad field by its path."""

    def test_valid_body(self) -> None:
        """A valid body becomes the message, with enums, UUIDs, datetimes and nested classes parsed."""
        command = structure(pet_body(), RegisterPet)
        assert command.kind is Kind.DOG
        assert command.owner.address.zip == "12345"
        assert command.toys == (Toy("ball", 2.5),)
        assert command.born == dt.datetime(2021, 4, 1, 10, tzinfo=dt.UTC)
        pet_id = uuid.uuid4()
        assert structure({"pet_id": str(pet_id), "name": "x"}, RenamePet).pet_id == pet_id

    def test_no_coercion(self) -> None:
        """Numbers are not strings, floats are not ints, and ints are not booleans."""
        with pytest.raises(PayloadError) as caught:
            structure(pet_body(name=5, age=3.9, vaccinated=1), RegisterPet)
        assert caught.value.errors == {
            "name": "expected a string",
            "age": "expected an integer",
            "vaccinated": "expected true or false",
        }

    def test_bool_is_not_an_int(self) -> None:
        """True is refused where an integer is expected."""
        with pytest.raises(PayloadError) as caught:
            structure(pet_body(age=True), RegisterPet)
        assert caught.value.errors == {"age": "expected an integer"}

    def test_all_errors_with_paths(self) -> None:
        """Every error is collected, nested ones with dotted and indexed paths."""
        body = pet_body(
            owner={"email": "a@example.com", "address": {"street": 1}},
            toys=[{"name": "ball", "price": 1}, {"name": 2, "price": "cheap"}],
            kind="hamster",
            born="yesterday",
            colour="brown",
        )
        del body["age"]
        with pytest.raises(PayloadError) as caught:
            structure(body, RegisterPet)
        assert caught.value.errors == {
            "age": "field required",
            "kind": "expected one of 'cat', 'dog'",
            "owner.address.street": "expected a string",
            "owner.address.zip": "field required",
            "toys[1].name": "expected a string",
            "toys[1].price": "expected a number",
            "born": "expected an ISO 8601 date-time such as 2024-05-01T12:00:00+00:00",
            "colour": "unknown field",
        }

    def test_unknown_nested_key(self) -> None:
        """An unknown key inside a nested object is named by its full path."""
        owner = {"email": "a@example.com", "address": {"street": "s", "zip": "1", "country": "x"}}
        with pytest.raises(PayloadError) as caught:
            structure(pet_body(owner=owner), RegisterPet)
        assert caught.value.errors == {"owner.address.country": "unknown field"}

    def test_wrong_shapes(self) -> None:
        """A string where a list or an object belongs is refused, not iterated."""
        with pytest.raises(PayloadError) as caught:
            structure(pet_body(toys="ball", owner="me"), RegisterPet)
        assert caught.value.errors == {"toys": "expected a list", "owner": "expected a JSON object"}

    def test_bad_uuid(self) -> None:
        """A malformed UUID is a field error."""
        with pytest.raises(PayloadError) as caught:
            structure({"pet_id": "not-a-uuid", "name": "x"}, RenamePet)
        assert list(caught.value.errors) == ["pet_id"]

    def test_infinity_refused_as_float(self) -> None:
        """An infinite float is refused even when it got past the JSON decoder."""
        with pytest.raises(PayloadError) as caught:
            structure(pet_body(toys=[{"name": "x", "price": float("inf")}]), RegisterPet)
        assert caught.value.errors == {"toys[0].price": "expected a finite number"}

    def test_dates_and_decimals(self) -> None:
        """Dates and decimals are parsed from strings; a wrong kind or a bad text names the field."""

        @attrs.frozen
        class Booking:
            day: dt.date
            price: decimal.Decimal

        booking = structure({"day": "2024-05-01", "price": "12.50"}, Booking)
        assert booking == Booking(dt.date(2024, 5, 1), decimal.Decimal("12.50"))
        with pytest.raises(PayloadError) as caught:
            structure({"day": 20240501, "price": "NaN"}, Booking)
        assert caught.value.errors == {
            "day": "expected an ISO 8601 date string",
            "price": "expected a finite decimal number",
        }
        with pytest.raises(PayloadError) as caught:
            structure({"day": "May 1st", "price": [1]}, Booking)
        assert caught.value.errors == {
            "day": "expected an ISO 8601 date such as 2024-05-01",
            "price": "expected a decimal number",
        }

    def test_not_an_object(self) -> None:
        """A body that is not a JSON object is refused as a whole."""
        with pytest.raises(PayloadError) as caught:
            structure([1, 2], RegisterPet)
        assert caught.value.errors == {"$": "expected a JSON object"}

    def test_own_converter(self) -> None:
        """A converter from strict_converter can be extended and passed in."""
        converter = strict_converter()
        converter.register_structure_hook(Kind, lambda value, _: Kind(str(value).lower()))
        assert structure(pet_body(kind="DOG"), RegisterPet, converter=converter).kind is Kind.DOG


class TestParseJson:
    """parse_json refuses what is not plain, finite, bounded JSON."""

    @pytest.mark.parametrize("raw", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}'])
    def test_nan_and_infinity(self, raw: bytes) -> None:
        """NaN and infinities are not JSON."""
        with pytest.raises(PayloadError, match="not valid JSON"):
            parse_json(raw)

    @pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b"[" * 50_000])
    def test_malformed(self, raw: bytes) -> None:
        """Broken, empty, non-UTF-8 and absurdly nested bodies are errors on "$" (the whole body)."""
        with pytest.raises(PayloadError) as caught:
            parse_json(raw)
        assert list(caught.value.errors) == ["$"]


# --- over HTTP -------------------------------------------------------------------------------------


class TestEndpoints:
    """A real app built with install, payload, context_dependency and from_container."""

    async def test_create_then_read(self, client: httpx.AsyncClient, container: PetContainer) -> None:
        """A valid POST gives 201; the principal and correlation id reach the handler."""
        response = await client.post(
            "/pets",
            json=pet_body(),
            headers={"Authorization": "Bearer alice-token", CORRELATION_ID_HEADER: "trace-42"},
        )
        assert response.status_code == 201, response.text
        assert response.headers[CORRELATION_ID_HEADER] == "trace-42"
        assert response.headers[OPERATION_ID_HEADER]
        pet_id = response.json()["id"]
        context = container.store().contexts[-1]
        assert context.principal == TOKENS["alice-token"]
        assert context.correlation_id == "trace-42"
        assert context.operation_id == response.headers[OPERATION_ID_HEADER]

        read = await client.get(f"/pets/{pet_id}")
        assert read.status_code == 200
        assert read.json() == {"id": pet_id, "name": "Rex", "kind": "dog", "registered_by": "alice"}
        assert read.headers["X-Cache"] == "miss"

    async def test_validation_problem(self, client: httpx.AsyncClient) -> None:
        """A bad body gets a 422 problem naming every field, never a 500."""
        response = await client.post("/pets", json=pet_body(age="three", extra=1))
        body = assert_problem(response, 422)
        assert body["errors"] == {"age": "expected an integer", "extra": "unknown field"}
        assert body["instance"] == "/pets"
        assert body["correlation_id"] == response.headers[CORRELATION_ID_HEADER]

    async def test_refusal_has_an_operation_id(self, client: httpx.AsyncClient) -> None:
        """A body refused before any bus runs still gets an operation id, logged without the values."""
        with structlog.testing.capture_logs() as logs:
            response = await client.post("/pets", json=pet_body(age="secret-value"))
        body = assert_problem(response, 422)
        assert body["operation_id"] == response.headers[OPERATION_ID_HEADER]
        refused = [log for log in logs if log["event"] == "request_refused"]
        assert len(refused) == 1
        assert refused[0]["operation_id"] == body["operation_id"]
        assert refused[0]["fields"] == ["age"]
        assert refused[0]["log_level"] == "warning"
        assert "secret-value" not in repr(logs)

    async def test_malformed_json(self, client: httpx.AsyncClient) -> None:
        """Malformed JSON and NaN are 422 problems on "$"."""
        for raw in (b'{"name": ', b'{"age": NaN}'):
            response = await client.post("/pets", content=raw, headers={"content-type": "application/json"})
            body = assert_problem(response, 422)
            assert list(body["errors"]) == ["$"]

    async def test_body_too_large(self, client: httpx.AsyncClient) -> None:
        """A body over the endpoint's limit is refused with 413 before it is parsed."""
        response = await client.post("/pets", json=pet_body(name="x" * 10_000))
        body = assert_problem(response, 413)
        assert "4096" in str(body["detail"])

    async def test_streamed_body_too_large(self, client: httpx.AsyncClient) -> None:
        """A chunked body without Content-Length is cut off at the limit too."""

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 1000

        response = await client.post("/pets", content=chunks())
        assert_problem(response, 413)

    async def test_path_params(self, client: httpx.AsyncClient) -> None:
        """A path parameter fills a field; a body repeating it and a bad UUID are 422."""
        created = await client.post("/pets", json=pet_body())
        pet_id = created.json()["id"]
        renamed = await client.patch(f"/pets/{pet_id}", json={"name": "Max"})
        assert renamed.status_code == 200, renamed.text
        assert (await client.get(f"/pets/{pet_id}")).json()["name"] == "Max"

        repeated = await client.patch(f"/pets/{pet_id}", json={"name": "Max", "pet_id": pet_id})
        assert list(assert_problem(repeated, 422)["errors"]) == ["pet_id"]
        bad = await client.patch("/pets/not-a-uuid", json={"name": "Max"})
        assert list(assert_problem(bad, 422)["errors"]) == ["pet_id"]

    async def test_not_found(self, client: httpx.AsyncClient) -> None:
        """NOT_FOUND from a handler is a 404 problem with the operation id."""
        response = await client.get(f"/pets/{uuid.uuid4()}")
        body = assert_problem(response, 404)
        assert body["operation_id"] == response.headers[OPERATION_ID_HEADER]
        assert str(body["detail"]).startswith("no pet")
        assert body["correlation_id"] == response.headers[CORRELATION_ID_HEADER]
        assert body["instance"] == response.request.url.path

    async def test_unwrap_becomes_problem(self, client: httpx.AsyncClient) -> None:
        """Result.unwrap() on a failure inside an endpoint is answered with the result's problem."""
        response = await client.get(f"/pets/{uuid.uuid4()}/name")
        body = assert_problem(response, 404)
        assert body["operation_id"]

    async def test_query_parameter_validation(self, client: httpx.AsyncClient) -> None:
        """FastAPI's own parameter errors are 422 problems with field names too."""
        for query in ("page_size=0", "page_size=101", "page=x"):
            response = await client.get(f"/pets?{query}")
            body = assert_problem(response, 422)
            assert next(iter(body["errors"])) in {"page", "page_size"}
        bad_id = await client.get("/pets/not-a-uuid")
        assert list(assert_problem(bad_id, 422)["errors"]) == ["pet_id"]

    async def test_pagination(self, client: httpx.AsyncClient) -> None:
        """A Page result is rendered with its items and pagination."""
        for name in ("A", "B", "C"):
            await client.post("/pets", json=pet_body(name=name))
        response = await client.get("/pets?page=2&page_size=2")
        assert response.status_code == 200
        body = response.json()
        assert [pet["name"] for pet in body["items"]] == ["C"]
        assert body["pagination"] == {
            "page": 2,
            "page_size": 2,
            "total_count": 3,
            "total_pages": 2,
            "has_next": False,
            "has_previous": True,
            "offset": 2,
            "limit": 2,
        }

    async def test_handler_crash(self, client: httpx.AsyncClient) -> None:
        """A handler crash is a 500 problem with an operation id and no internal text."""
        response = await client.post("/explode")
        body = assert_problem(response, 500)
        assert body["operation_id"] == response.headers[OPERATION_ID_HEADER]
        assert "secret" not in response.text
        assert "RuntimeError" not in response.text

    async def test_endpoint_crash(self, client: httpx.AsyncClient) -> None:
        """An exception outside any bus is a 500 problem too, with an id, a correlation id, no text."""
        response = await client.get("/broken", headers={CORRELATION_ID_HEADER: "c-1"})
        body = assert_problem(response, 500)
        assert body["operation_id"]
        assert body["correlation_id"] == "c-1"
        assert response.headers[CORRELATION_ID_HEADER] == "c-1"
        assert "hunter2" not in response.text

    async def test_bad_token(self, client: httpx.AsyncClient) -> None:
        """An HTTPException from the app's auth dependency becomes a 401 problem with its headers."""
        response = await client.get("/pets", headers={"Authorization": "Bearer nope"})
        body = assert_problem(response, 401)
        assert body["detail"] == "unknown bearer token"
        assert response.headers["WWW-Authenticate"] == "Bearer"

    async def test_override_handler(self, client: httpx.AsyncClient, container: PetContainer) -> None:
        """A provider overridden on the app's container serves the next request."""

        class FakeRegister:
            async def handle(self, command: RegisterPet, context: Context) -> uuid.UUID:
                return uuid.UUID(int=7)

        with override_handler(container, RegisterPet, FakeRegister()):
            response = await client.post("/pets", json=pet_body())
        assert response.json() == {"id": str(uuid.UUID(int=7))}


class TestCorrelationId:
    """The correlation id is taken when safe, generated otherwise, and always echoed."""

    async def test_generated_when_absent(self, client: httpx.AsyncClient, container: PetContainer) -> None:
        """Without the header a fresh id is made, echoed and passed to the handler."""
        response = await client.post("/pets", json=pet_body())
        echoed = response.headers[CORRELATION_ID_HEADER]
        assert echoed
        assert container.store().contexts[-1].correlation_id == echoed

    @pytest.mark.parametrize("given", ["x" * 129, "a b", "<script>", "é", ""])
    async def test_unsafe_replaced(self, client: httpx.AsyncClient, given: str) -> None:
        """An over-long or unsafe header is replaced, never echoed."""
        response = await client.get("/pets", headers={CORRELATION_ID_HEADER: given.encode()})
        assert response.status_code == 200
        assert response.headers[CORRELATION_ID_HEADER] not in {given, ""}

    async def test_echoed_on_errors(self, client: httpx.AsyncClient) -> None:
        """Error responses echo the id as well."""
        response = await client.get("/pets?page=0", headers={CORRELATION_ID_HEADER: "abc-1"})
        assert response.status_code == 422
        assert response.headers[CORRELATION_ID_HEADER] == "abc-1"
        assert response.json()["correlation_id"] == "abc-1"


class TestFromContainer:
    """from_container needs the container on app.state."""

    async def test_missing_container(self) -> None:
        """Without a container on app.state the request fails with a clear 500 problem."""
        app = install(FastAPI())

        @app.get("/x")
        async def endpoint(bus: Commands) -> dict[str, str]:
            return {"bus": repr(bus)}

        async with asgi_client(app) as client:
            response = await client.get("/x")
        assert_problem(response, 500)


async def principal_from_request(request: Request) -> Principal | None:
    user = request.headers.get("x-user")
    return Principal(user) if user else None


DirectContext = Annotated[Context, Depends(context_dependency(from_request=principal_from_request))]


class TestContextDependency:
    """context_dependency with a FastAPI dependency or a plain request reader."""

    async def test_from_request(self) -> None:
        """A principal read straight from the request reaches the context, with the correlation id."""
        app = install(FastAPI())
        seen: list[Context] = []

        @app.get("/whoami")
        async def whoami(context: DirectContext) -> dict[str, str | None]:
            seen.append(context)
            return {"id": context.principal.id if context.principal else None}

        async with asgi_client(app, raise_app_exceptions=True) as client:
            named = await client.get("/whoami", headers={"X-User": "ada", "Idempotency-Key": "k-1"})
            anonymous = await client.get("/whoami")
        assert named.json() == {"id": "ada"}
        assert anonymous.json() == {"id": None}
        assert seen[0].correlation_id == named.headers[CORRELATION_ID_HEADER]
        assert seen[0].idempotency_key == "k-1"

    def test_not_both(self) -> None:
        """A dependency and a request reader at once is refused."""

        async def reader(request: Request) -> None:
            return None

        with pytest.raises(TypeError, match="not both"):
            context_dependency(current_principal, from_request=reader)


class TestWithoutFastAPI:
    """Importing cqrskit.fastapi without the extra says how to install it."""

    def test_clear_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The ImportError names the extra to install."""
        import importlib
        import sys

        for name in [m for m in sys.modules if m == "cqrskit.fastapi" or m.startswith("cqrskit.fastapi.")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "fastapi", None)
        with pytest.raises(ImportError, match=r"pip install 'cqrskit\[fastapi\]'"):
            importlib.import_module("cqrskit.fastapi")


class TestPathParams:
    """payload(path_params=...) names a parameter the route must have."""

    async def test_missing_route_parameter(self) -> None:
        """A wiring mistake answers 500 (logged with an operation id), not a misleading 422."""
        app = install(FastAPI())

        @app.patch("/pets")
        async def rename(command: BadRename) -> dict[str, str]:
            return {"name": command.name}

        async with asgi_client(app) as client:
            response = await client.patch("/pets", json={"name": "Max"})
        assert_problem(response, 500)


BadRename = Annotated[RenamePet, Depends(payload(RenamePet, path_params=["pet_id"]))]


class TestDocumented:
    """Every public name of cqrskit.fastapi is explained in a docs page, not only in the reference."""

    def test_every_name_in_the_docs(self) -> None:
        """Each name appears in docs/**/*.md as code."""
        import cqrskit.fastapi
        from tests.test_docs import DOCS

        text = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.rglob("*.md") if "api" not in p.parts)
        assert [name for name in cqrskit.fastapi.__all__ if f"`{name}" not in text] == []
