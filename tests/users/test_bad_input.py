"""Input no database stores is a 422 naming the field, on SQLite and PostgreSQL; demo tokens are opt-in."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from dependency_injector import providers

from tests.asgi import asgi_client
from tests.users.conftest import ADMIN, CHEAP_SCRYPT_N, assert_problem, create, new_user

HUGE = "9" * 4301  # one digit more than Python's int() parses from text


def raw_json(body: dict[str, Any], **raw_values: str) -> bytes:
    """`body` as JSON with each of `raw_values` written in verbatim (a raw number, a raw escape)."""
    text = json.dumps({**body, **dict.fromkeys(raw_values, "@@")})
    for key, raw in raw_values.items():
        text = text.replace(f'"{key}": "@@"', f'"{key}": {raw}')
    return text.encode()


async def post_raw(client: httpx.AsyncClient, path: str, content: bytes) -> httpx.Response:
    headers = {**ADMIN, "content-type": "application/json"}
    return await client.post(path, content=content, headers=headers)


def field_errors(response: httpx.Response) -> dict[str, str]:
    body = assert_problem(response, 422)
    errors: dict[str, str] = body["errors"]
    return errors


class TestBodies:
    """Each value no database stores is refused before any handler runs, naming its field."""

    async def test_an_integer_of_4301_digits(self, client: httpx.AsyncClient) -> None:
        response = await post_raw(client, "/users", raw_json(new_user("dora"), full_name=HUGE))
        assert field_errors(response) == {"full_name": "a number with too many digits"}

    async def test_a_lone_surrogate(self, client: httpx.AsyncClient) -> None:
        response = await post_raw(client, "/users", raw_json(new_user("dora"), full_name='"a\\ud800b"'))
        assert field_errors(response) == {"full_name": "not valid Unicode text (a lone surrogate)"}

    async def test_a_nul_in_a_string_field(self, client: httpx.AsyncClient) -> None:
        response = await post_raw(client, "/users", raw_json(new_user("dora"), full_name='"Do\\u0000ra"'))
        assert field_errors(response) == {"full_name": "control character U+0000 not allowed"}

    async def test_a_nul_in_a_nested_field(self, client: httpx.AsyncClient) -> None:
        users = [new_user("dora"), {**new_user("erin"), "email": "erin\u0000@example.com"}]
        response = await client.post("/users/batch", json={"users": users}, headers=ADMIN)
        assert field_errors(response) == {"users[1].email": "control character U+0000 not allowed"}

    async def test_a_surrogate_in_a_patch(self, client: httpx.AsyncClient) -> None:
        user_id = await create(client, "dora")
        content = b'{"full_name": "\\udfff"}'
        headers = {**ADMIN, "content-type": "application/json"}
        response = await client.patch(f"/users/{user_id}", content=content, headers=headers)
        assert field_errors(response) == {"full_name": "not valid Unicode text (a lone surrogate)"}

    async def test_nothing_was_stored(self, client: httpx.AsyncClient) -> None:
        await post_raw(client, "/users", raw_json(new_user("dora"), full_name='"Do\\u0000ra"'))
        found = await client.get("/users", params={"email_contains": "dora"}, headers=ADMIN)
        assert found.status_code == 200
        assert found.json()["items"] == []


class TestQueryParameters:
    """Paging is bounded and filters hold no NUL: the URL's values get the same 422s as a body's."""

    @pytest.mark.parametrize(
        ("page", "expected"),
        [
            (str(2**62), "must be between 1 and 100000"),
            ("99999999999999999999", "an integer out of range (signed 64-bit)"),
            (HUGE, "a number with too many digits"),
            ("0", "must be between 1 and 100000"),
        ],
    )
    async def test_a_page_out_of_bounds(self, client: httpx.AsyncClient, page: str, expected: str) -> None:
        response = await client.get("/users", params={"page": page}, headers=ADMIN)
        assert field_errors(response) == {"page": expected}

    async def test_a_page_size_out_of_range(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/users", params={"page_size": str(2**63)}, headers=ADMIN)
        assert field_errors(response) == {"page_size": "an integer out of range (signed 64-bit)"}

    async def test_a_nul_in_a_filter(self, client: httpx.AsyncClient) -> None:
        await create(client, "dora")
        response = await client.get("/users?email_contains=do%00ra", headers=ADMIN)
        assert field_errors(response) == {"email_contains": "control character U+0000 not allowed"}

    async def test_the_last_page_that_is_allowed(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/users", params={"page": "100000", "page_size": "100"}, headers=ADMIN)
        assert response.status_code == 200
        assert response.json()["items"] == []


class TestDemoTokens:
    """The demo's tokens and users exist only when the demo setting says so."""

    async def test_without_the_demo_setting_every_token_is_refused(self, tmp_path: Any) -> None:
        from examples.users.app import create_app
        from examples.users.container import Container
        from examples.users.passwords import ScryptCost
        from examples.users.settings import Settings

        settings = Settings.from_environment(
            {"USERS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"}
        )
        assert not settings.demo
        assert not settings.tokens
        assert not settings.seed_demo_users
        container = Container()
        container.settings.override(
            providers.Object(
                Settings(
                    database_url=settings.database_url,
                    scrypt_cost=ScryptCost(n=CHEAP_SCRYPT_N),
                    configure_logging=False,
                )
            )
        )
        async with asgi_client(create_app(container), base_url="http://users.test") as client:
            for token in ("admin-token", "alice-token", "bob-token"):
                response = await client.get("/users", headers={"Authorization": f"Bearer {token}"})
                assert_problem(response, 401)
            assert_problem(await client.get("/users"), 401)

    def test_the_demo_setting_turns_them_on(self) -> None:
        from examples.users.settings import DEMO_TOKENS, Settings

        settings = Settings.from_environment({"USERS_DEMO": "1"})
        assert settings.demo
        assert settings.tokens == DEMO_TOKENS
        assert settings.seed_demo_users
