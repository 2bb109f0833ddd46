"""The user service against what a hostile or careless client sends, and against a broken wiring."""

from __future__ import annotations

import asyncio
import json

import attrs
import httpx
import pytest
import structlog
from dependency_injector import providers
from examples.users.app import create_app
from examples.users.container import Container
from examples.users.messages import CreateUser, GetUser, UserDto
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqrskit import CommandBus, ConfigurationError, Context, OperationStatus
from cqrskit.testing import override_handler
from tests.asgi import asgi_client
from tests.users.conftest import ADMIN, ALICE_ID, assert_problem, new_user

# Any JSON document, NaN and infinities included (json.dumps writes them; the service must refuse them).
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Objects whose keys are mostly the fields the endpoints know, so the values reach the strict converter.
FIELDS = st.sampled_from(
    ["email", "username", "password", "full_name", "role", "is_active", "user_id", "users"]
)
BODIES = (
    st.dictionaries(FIELDS | st.text(max_size=10), JSON_VALUES, max_size=7).map(
        lambda body: json.dumps(body).encode()
    )
    | JSON_VALUES.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=60)
)
FUZZ = settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check_answer(response: httpx.Response, allowed: set[int]) -> None:
    assert response.status_code in allowed, (response.status_code, response.text)
    if response.status_code >= 400:
        assert_problem(response, response.status_code)


class TestRandomBodies:
    """Whatever JSON (or non-JSON) arrives, the answer is a success or a problem, never a 500."""

    @FUZZ
    @given(raw=BODIES)
    async def test_create(self, client: httpx.AsyncClient, raw: bytes) -> None:
        """POST /users with a random body: 201, 409 or a 422 problem."""
        response = await client.post(
            "/users", content=raw, headers={**ADMIN, "content-type": "application/json"}
        )
        _check_answer(response, {201, 409, 422})

    @FUZZ
    @given(raw=BODIES)
    async def test_update(self, client: httpx.AsyncClient, raw: bytes) -> None:
        """PATCH /users/{id} with a random body: 200, 409 or a 422 problem."""
        response = await client.patch(
            f"/users/{ALICE_ID}", content=raw, headers={**ADMIN, "content-type": "application/json"}
        )
        _check_answer(response, {200, 404, 409, 422})


class TestSecrets:
    """A password goes in, and never comes out: not in a response, not in a log line."""

    async def test_password_never_returned_or_logged(self, client: httpx.AsyncClient) -> None:
        """Create, batch-create, read, list and fail: no response and no log event holds a password."""
        secrets = ["first-s3cret-pass", "batch-s3cret-pass", "short1"]
        with structlog.testing.capture_logs() as logs:
            created = await client.post("/users", json=new_user(password=secrets[0]), headers=ADMIN)
            batch = {"users": [new_user("batchy", password=secrets[1])]}
            responses = [
                created,
                await client.post("/users/batch", json=batch, headers=ADMIN),
                await client.get(f"/users/{created.json()['id']}", headers=ADMIN),
                await client.get("/users", headers=ADMIN),
                await client.post("/users", json=new_user("shorty", password=secrets[2]), headers=ADMIN),
                await client.post("/users", json=new_user(password=secrets[0]), headers=ADMIN),
            ]
        assert [response.status_code for response in responses] == [201, 201, 200, 200, 422, 409]
        assert any(log["event"] == "dispatch_completed" for log in logs)
        assert any(log["event"] == "audit" for log in logs)
        seen = repr(logs) + "".join(response.text for response in responses)
        for secret in secrets:
            assert secret not in seen
        assert "scrypt$" not in seen


class TestFailures:
    """Statuses no well-behaved request reaches: a timeout and a broken wiring."""

    async def test_timeout_is_504(self, container: Container) -> None:
        """A query that outlives the configured timeout is a 504 problem with its operation id."""
        container.settings.override(providers.Object(attrs.evolve(container.settings(), query_timeout=0.05)))

        class Stuck:
            async def handle(self, query: GetUser, context: Context) -> UserDto:
                await asyncio.Event().wait()  # never set: only the Timeout behaviour ends this
                raise AssertionError("unreachable")

        app = create_app(container)
        async with asgi_client(app, base_url="http://users.test") as client:
            with override_handler(container, GetUser, Stuck()):
                response = await client.get(f"/users/{ALICE_ID}", headers=ADMIN)
        problem = assert_problem(response, 504)
        assert problem["type"] == f"urn:cqrskit:problem:{OperationStatus.TIMEOUT.value}"

    async def test_broken_wiring_stops_start_up(self, container: Container) -> None:
        """A command bus that refuses its mapping makes the app's start-up fail, before any request."""
        not_a_handler = providers.Dict({CreateUser: providers.Object("no handle method")})
        container.command_bus.override(providers.Singleton(CommandBus, handlers=not_a_handler))
        app = create_app(container)
        with pytest.raises(ConfigurationError):
            async with app.router.lifespan_context(app):
                pytest.fail("the app started with a broken command bus")
        container.command_bus.reset_override()
