"""The user service over HTTP: lifecycle, authorization, caching, pagination, every failure status."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from cqrskit import Context
from cqrskit.fastapi import OPERATION_ID_HEADER
from cqrskit.testing import override_handler

# The example is built on the caching behaviours; until they are merged these tests cannot run.
pytest.importorskip("cqrskit.caching", reason="examples/users needs cqrskit.caching, not merged yet")

from examples.users.container import Container
from examples.users.messages import GetUser

from tests.users.conftest import (
    ADMIN,
    ALICE,
    ALICE_ID,
    BOB,
    BOB_ID,
    assert_problem,
    create,
    events_delivered,
    new_user,
)


class TestUserLifecycle:
    """The seed's TestUserManagementFlow, over HTTP."""

    async def test_complete_user_lifecycle(self, client: httpx.AsyncClient) -> None:
        """Create, read, update, read again, list, delete, and find it gone."""
        created = await client.post("/users", json=new_user("integration"), headers=ADMIN)
        assert created.status_code == 201
        user_id = created.json()["id"]
        assert created.headers["Location"] == f"/users/{user_id}"

        read = await client.get(f"/users/{user_id}", headers=ADMIN)
        assert read.status_code == 200
        user = read.json()
        assert user["email"] == "integration@example.com"
        assert user["role"] == "member"
        assert user["is_active"] is True
        assert "password" not in read.text
        assert "scrypt" not in read.text

        updated = await client.patch(f"/users/{user_id}", json={"full_name": "Updated User"}, headers=ADMIN)
        assert updated.status_code == 200
        assert updated.json() == {
            **user,
            "full_name": "Updated User",
            "updated_at": updated.json()["updated_at"],
        }

        again = await client.get(f"/users/{user_id}", headers=ADMIN)
        assert again.json()["full_name"] == "Updated User"

        listed = await client.get("/users", params={"email_contains": "integration"}, headers=ADMIN)
        assert [item["id"] for item in listed.json()["items"]] == [user_id]

        deleted = await client.delete(f"/users/{user_id}", headers=ADMIN)
        assert deleted.status_code == 204
        assert deleted.headers[OPERATION_ID_HEADER]
        assert_problem(await client.get(f"/users/{user_id}", headers=ADMIN), 404)
        assert_problem(await client.delete(f"/users/{user_id}", headers=ADMIN), 404)
        assert_problem(await client.patch(f"/users/{user_id}", json={"full_name": "X"}, headers=ADMIN), 404)

    async def test_deactivated_user(self, client: httpx.AsyncClient) -> None:
        """A deactivated user is hidden unless include_inactive is given."""
        user_id = await create(client)
        assert (
            await client.patch(f"/users/{user_id}", json={"is_active": False}, headers=ADMIN)
        ).status_code == 200
        assert_problem(await client.get(f"/users/{user_id}", headers=ADMIN), 404)
        shown = await client.get(f"/users/{user_id}", params={"include_inactive": "true"}, headers=ADMIN)
        assert shown.json()["is_active"] is False

    async def test_batch(self, client: httpx.AsyncClient) -> None:
        """A batch creates every user, in order, in one go."""
        users = [new_user(f"batch{n:03d}") for n in range(25)]
        response = await client.post("/users/batch", json={"users": users}, headers=ADMIN)
        assert response.status_code == 201, response.text
        ids = response.json()["ids"]
        assert len(ids) == 25
        first = await client.get(f"/users/{ids[0]}", headers=ADMIN)
        assert first.json()["username"] == "batch000"

    async def test_stats(self, container: Container, client: httpx.AsyncClient) -> None:
        """Stats count the demo accounts and new users by role and activity."""
        await create(client, "dora", role="guest")
        await events_delivered(container)
        stats = (await client.get("/users/stats", headers=ADMIN)).json()
        assert stats == {
            "total": 4,
            "active": 4,
            "inactive": 0,
            "by_role": {"admin": 1, "guest": 1, "member": 2},
        }


class TestConflicts:
    """Duplicates are 409, never 500."""

    async def test_duplicate_email_and_username(self, client: httpx.AsyncClient) -> None:
        """The same email (in another case) or username is refused."""
        await create(client)
        body = assert_problem(await client.post("/users", json=new_user("carol"), headers=ADMIN), 409)
        assert "already in use" in body["detail"]
        other_case = new_user("carl", email="CAROL@example.com")
        assert_problem(await client.post("/users", json=other_case, headers=ADMIN), 409)

    async def test_update_to_taken_email(self, client: httpx.AsyncClient) -> None:
        """Taking another user's email is a conflict."""
        user_id = await create(client)
        response = await client.patch(f"/users/{user_id}", json={"email": "alice@example.com"}, headers=ADMIN)
        assert_problem(response, 409)

    async def test_batch_with_taken_username(self, client: httpx.AsyncClient) -> None:
        """A batch holding a taken username creates nobody."""
        users = [new_user("fresh1"), new_user("alice", email="other@example.com")]
        assert_problem(await client.post("/users/batch", json={"users": users}, headers=ADMIN), 409)
        listed = await client.get("/users", params={"email_contains": "fresh1"}, headers=ADMIN)
        assert listed.json()["items"] == []


class TestAuthorization:
    """Users read and update themselves; admins do everything; strangers nothing."""

    async def test_self_service(self, client: httpx.AsyncClient) -> None:
        """Alice reads and renames herself."""
        assert (await client.get(f"/users/{ALICE_ID}", headers=ALICE)).status_code == 200
        renamed = await client.patch(f"/users/{ALICE_ID}", json={"full_name": "Alice L."}, headers=ALICE)
        assert renamed.status_code == 200

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("GET", f"/users/{BOB_ID}", None),
            ("PATCH", f"/users/{BOB_ID}", {"full_name": "Bobby"}),
            ("DELETE", f"/users/{BOB_ID}", None),
            ("GET", "/users", None),
            ("GET", "/users/stats", None),
            ("POST", "/users", new_user("mallory")),
            ("POST", "/users/batch", {"users": [new_user("mallory")]}),
            ("PATCH", f"/users/{ALICE_ID}", {"role": "admin"}),
            ("PATCH", f"/users/{ALICE_ID}", {"is_active": False}),
        ],
    )
    async def test_forbidden(self, client: httpx.AsyncClient, method: str, path: str, body: Any) -> None:
        """Alice may not touch Bob, list, count, create, or promote herself: 403."""
        response = await client.request(method, path, json=body, headers=ALICE)
        assert_problem(response, 403)

    async def test_bob_cannot_read_alice(self, client: httpx.AsyncClient) -> None:
        """The rule is symmetric."""
        assert_problem(await client.get(f"/users/{ALICE_ID}", headers=BOB), 403)

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("GET", f"/users/{ALICE_ID}", None),
            ("GET", "/users", None),
            ("GET", "/users/stats", None),
            ("POST", "/users", new_user("anon")),
            ("POST", "/users/batch", {"users": [new_user("anon")]}),
            ("PATCH", f"/users/{ALICE_ID}", {"full_name": "Anon"}),
            ("DELETE", f"/users/{ALICE_ID}", None),
        ],
    )
    async def test_anonymous(self, client: httpx.AsyncClient, method: str, path: str, body: Any) -> None:
        """No token, on every endpoint: 401."""
        assert_problem(await client.request(method, path, json=body), 401)

    async def test_unknown_token(self, client: httpx.AsyncClient) -> None:
        """A token the settings do not know: 401 with a challenge."""
        response = await client.get("/users", headers={"Authorization": "Bearer forged"})
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"


class TestCaching:
    """Queries are cached; commands' affected entities invalidate them."""

    async def test_hit_then_invalidation(self, client: httpx.AsyncClient) -> None:
        """Miss, hit, update, miss with the new value, hit."""
        user_id = await create(client)
        caches = [(await client.get(f"/users/{user_id}", headers=ADMIN)).headers["X-Cache"] for _ in range(2)]
        assert caches == ["miss", "hit"]
        await client.patch(f"/users/{user_id}", json={"full_name": "Changed"}, headers=ADMIN)
        after = await client.get(f"/users/{user_id}", headers=ADMIN)
        assert after.headers["X-Cache"] == "miss"
        assert after.json()["full_name"] == "Changed"
        assert (await client.get(f"/users/{user_id}", headers=ADMIN)).headers["X-Cache"] == "hit"

    async def test_list_invalidated_by_create(self, client: httpx.AsyncClient) -> None:
        """A cached list drops when any user is created."""
        first = await client.get("/users", headers=ADMIN)
        assert first.headers["X-Cache"] == "miss"
        assert (await client.get("/users", headers=ADMIN)).headers["X-Cache"] == "hit"
        await create(client)
        after = await client.get("/users", headers=ADMIN)
        assert after.headers["X-Cache"] == "miss"
        assert after.json()["pagination"]["total_count"] == first.json()["pagination"]["total_count"] + 1

    async def test_stats_invalidated_by_delete(self, container: Container, client: httpx.AsyncClient) -> None:
        """Deleting a user refreshes the stats (once its event was delivered)."""
        user_id = await create(client)
        await events_delivered(container)
        before = (await client.get("/users/stats", headers=ADMIN)).json()["total"]
        await client.delete(f"/users/{user_id}", headers=ADMIN)
        await events_delivered(container)
        assert (await client.get("/users/stats", headers=ADMIN)).json()["total"] == before - 1


class TestPagination:
    """FindUsers pages through users by username."""

    async def test_pages(self, client: httpx.AsyncClient) -> None:
        """Pages carry their items and every pagination field."""
        users = [new_user(f"page{n:02d}") for n in range(12)]
        await client.post("/users/batch", json={"users": users}, headers=ADMIN)
        params = {"email_contains": "page", "page": 2, "page_size": 5}
        body = (await client.get("/users", params=params, headers=ADMIN)).json()
        assert [user["username"] for user in body["items"]] == [f"page{n:02d}" for n in range(5, 10)]
        assert body["pagination"] == {
            "page": 2,
            "page_size": 5,
            "total_count": 12,
            "total_pages": 3,
            "has_next": True,
            "has_previous": True,
            "offset": 5,
            "limit": 5,
        }
        last = (await client.get("/users", params={**params, "page": 3}, headers=ADMIN)).json()
        assert len(last["items"]) == 2
        assert last["pagination"]["has_next"] is False

    async def test_filters(self, client: httpx.AsyncClient) -> None:
        """Role and activity filters combine."""
        guest_id = await create(client, "gina", role="guest")
        await client.patch(f"/users/{guest_id}", json={"is_active": False}, headers=ADMIN)
        params = {"role": "guest", "is_active": "false"}
        body = (await client.get("/users", params=params, headers=ADMIN)).json()
        assert [user["id"] for user in body["items"]] == [guest_id]


MEGABYTE = "x" * 1_000_000


class TestBadInput:
    """Bad payloads get a 422 naming the fields, never a 500."""

    @pytest.mark.parametrize(
        ("body", "fields"),
        [
            (new_user(password=12345678), {"password"}),
            (new_user(username=None), {"username"}),
            (new_user(role="superuser"), {"role"}),
            (new_user(role=1), {"role"}),
            ({"email": "a@example.com"}, {"username", "password", "full_name"}),
            (new_user(nickname="x"), {"nickname"}),
            (new_user(email="not-an-email", username="x", password="short", full_name=" "), None),
            (new_user(full_name=MEGABYTE), {"full_name"}),
            ([new_user()], {"$"}),
            ("just a string", {"$"}),
        ],
    )
    async def test_create(self, client: httpx.AsyncClient, body: Any, fields: set[str] | None) -> None:
        """Wrong types, missing and extra fields, bad values, a 1 MB name, a non-object: field paths."""
        response = await client.post("/users", json=body, headers=ADMIN)
        problem = assert_problem(response, 422)
        expected = fields or {"email", "username", "password", "full_name"}
        assert set(problem["errors"]) == expected

    @pytest.mark.parametrize(
        "raw", [b'{"email": NaN}', b'{"email": ', b"", b"\xff\xfe", b'{"full_name": Infinity}']
    )
    async def test_malformed_json(self, client: httpx.AsyncClient, raw: bytes) -> None:
        """NaN, infinities, truncated, empty and non-UTF-8 bodies: 422 on "$"."""
        response = await client.post(
            "/users", content=raw, headers={**ADMIN, "content-type": "application/json"}
        )
        assert set(assert_problem(response, 422)["errors"]) == {"$"}

    async def test_too_large(self, client: httpx.AsyncClient) -> None:
        """A body over the service's limit (2 MiB) is refused with 413 before it is parsed."""
        response = await client.post("/users", json=new_user(full_name=MEGABYTE * 3), headers=ADMIN)
        assert_problem(response, 413)

    async def test_nested_paths(self, client: httpx.AsyncClient) -> None:
        """Errors inside a batch name the user's position and field."""
        users = [new_user("okay1"), new_user("bad", email=5, extra=True), new_user("worse", password="short")]
        problem = assert_problem(await client.post("/users/batch", json={"users": users}, headers=ADMIN), 422)
        assert problem["errors"] == {"users[1].email": "expected a string", "users[1].extra": "unknown field"}
        problem = assert_problem(
            await client.post("/users/batch", json={"users": [users[0], users[2]]}, headers=ADMIN), 422
        )
        assert problem["errors"] == {"users[1].password": "must be 8 to 128 characters"}

    @pytest.mark.parametrize("size", [0, 101])
    async def test_batch_size(self, client: httpx.AsyncClient, size: int) -> None:
        """An empty batch and one over 100 are refused."""
        users = [new_user(f"b{n:03d}") for n in range(size)]
        problem = assert_problem(await client.post("/users/batch", json={"users": users}, headers=ADMIN), 422)
        assert set(problem["errors"]) == {"users"}

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"page_size": 0}, "page_size"),
            ({"page_size": 101}, "page_size"),
            ({"page": 0}, "page"),
            ({"page": "two"}, "page"),
            ({"role": "wizard"}, "role"),
            ({"is_active": "perhaps"}, "is_active"),
        ],
    )
    async def test_find_parameters(
        self, client: httpx.AsyncClient, params: dict[str, Any], field: str
    ) -> None:
        """Query parameters out of range or of the wrong type: 422 naming the parameter."""
        problem = assert_problem(await client.get("/users", params=params, headers=ADMIN), 422)
        assert set(problem["errors"]) == {field}

    @pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
    async def test_bad_uuid(self, client: httpx.AsyncClient, method: str) -> None:
        """A malformed id in the path: 422 on user_id."""
        response = await client.request(method, "/users/not-a-uuid", json={"full_name": "x"}, headers=ADMIN)
        assert set(assert_problem(response, 422)["errors"]) == {"user_id"}

    async def test_update_needs_a_field(self, client: httpx.AsyncClient) -> None:
        """An empty PATCH is a validation error, and so is repeating the id in the body."""
        problem = assert_problem(await client.patch(f"/users/{ALICE_ID}", json={}, headers=ADMIN), 422)
        assert "at least one" in problem["detail"]
        repeated = await client.patch(f"/users/{ALICE_ID}", json={"user_id": ALICE_ID}, headers=ADMIN)
        assert set(assert_problem(repeated, 422)["errors"]) == {"user_id"}

    async def test_update_with_nan(self, client: httpx.AsyncClient) -> None:
        """A NaN in an update body is refused."""
        response = await client.patch(
            f"/users/{ALICE_ID}",
            content=b'{"is_active": NaN}',
            headers={**ADMIN, "content-type": "application/json"},
        )
        assert_problem(response, 422)


class TestProblems:
    """Problem bodies carry ids; the correlation id is echoed."""

    async def test_operation_and_correlation_ids(self, client: httpx.AsyncClient) -> None:
        """A 404 carries the dispatch's operation id and the caller's correlation id."""
        response = await client.get(f"/users/{uuid.uuid4()}", headers={**ADMIN, "X-Correlation-ID": "tour-7"})
        problem = assert_problem(response, 404)
        assert problem["operation_id"] == response.headers[OPERATION_ID_HEADER]
        assert problem["correlation_id"] == "tour-7"
        assert response.headers["X-Correlation-ID"] == "tour-7"
        assert problem["instance"] == response.request.url.path

    async def test_correlation_id_on_success(self, client: httpx.AsyncClient) -> None:
        """Successes echo the id too; without one, a fresh id is made."""
        given = await client.get(f"/users/{ALICE_ID}", headers={**ALICE, "X-Correlation-ID": "abc"})
        assert given.headers["X-Correlation-ID"] == "abc"
        made = await client.get(f"/users/{ALICE_ID}", headers=ALICE)
        assert made.headers["X-Correlation-ID"]

    async def test_handler_crash(self, client: httpx.AsyncClient, container: Container) -> None:
        """A crashing handler is a 500 with an operation id and none of the error's text."""

        class Crashing:
            async def handle(self, query: GetUser, context: Context) -> None:
                raise RuntimeError("connection to db-7.internal refused; password=hunter2")

        with override_handler(container, GetUser, Crashing()):
            response = await client.get(f"/users/{ALICE_ID}", headers=ADMIN)
        problem = assert_problem(response, 500)
        assert problem["operation_id"] == response.headers[OPERATION_ID_HEADER]
        assert "hunter2" not in response.text
        assert "db-7" not in response.text
        assert "RuntimeError" not in response.text
