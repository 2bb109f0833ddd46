"""The example's OpenAPI document: valid, fuzzed, used by a generated client, and driven in Swagger UI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from tests.users.conftest import ADMIN, CHEAP_SCRYPT_N
from tests.users.fuzzing import fuzz

ROOT = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = ROOT / "docs" / "_static" / "swagger-create-user.png"
UPDATE_SCREENSHOT = "CQRSKIT_UPDATE_SCREENSHOT"
"""Set this environment variable to 1 to have the Swagger UI test rewrite the docs' screenshot.

Without it the screenshot goes to pytest's temporary directory, so a run leaves the tree clean.
"""
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
EXAMPLES_PER_OPERATION = 25  # x 7 operations x 2 modes: about 300 requests in all


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    """The example service under uvicorn on a free port, on SQLite in a temporary directory."""
    from examples.users.tour import running_service

    with running_service({"USERS_SCRYPT_N": str(CHEAP_SCRYPT_N)}) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def document(service: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{service}/openapi.json").json()
    return found


class TestDocument:
    """The document describes every endpoint completely, and validates."""

    def test_validates(self, document: dict[str, Any]) -> None:
        validate(document)

    def test_every_endpoint_declared(self, document: dict[str, Any]) -> None:
        paths = document["paths"]
        for path, method in [("/users", "post"), ("/users/{user_id}", "patch"), ("/users/batch", "post")]:
            assert "requestBody" in paths[path][method], (path, method)
        assert {"name": "user_id", "in": "path", "required": True}.items() <= (
            paths["/users/{user_id}"]["patch"]["parameters"][0].items()
        )
        for item in paths.values():
            for operation in item.values():
                success = [code for code in operation["responses"] if code.startswith("2")]
                assert len(success) == 1
                for code in ("401", "403", "404", "409", "422", "503", "504"):
                    content = operation["responses"][code]["content"]
                    assert "application/problem+json" in content


class TestFuzz:
    """Schemathesis, bounded: no 5xx, no response outside the declared schema, statuses and media types."""

    @pytest.mark.parametrize("mode", ["positive", "negative"])
    def test_no_server_error_and_schema_kept(self, service: str, mode: str) -> None:
        from schemathesis.checks import (
            content_type_conformance,
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
        )

        checks = [
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
            content_type_conformance,
        ]

        def conforms(case: Any, response: Any) -> list[str]:
            try:
                case.validate_response(response, checks=checks)
            except Exception as exc:  # every operation's failure reported at once
                return [str(exc)]
            return []

        statuses, failures = fuzz(service, mode, EXAMPLES_PER_OPERATION, conforms)
        print(dict(statuses))
        assert failures == []
        assert sum(statuses.values()) > 100
        assert not any(code >= 500 for _, code in statuses)


class TestGeneratedClient:
    """A client generated from the document creates, reads, updates and deletes a user."""

    def test_crud(self, service: str, document: dict[str, Any], tmp_path: Path) -> None:
        import json

        spec = tmp_path / "openapi.json"
        spec.write_text(json.dumps(document))
        generator = Path(sys.executable).with_name("openapi-python-client")
        env = {**os.environ, "PATH": f"{generator.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        subprocess.run(  # noqa: S603 - our own venv's tool
            [
                str(generator),
                "generate",
                "--path",
                str(spec),
                "--meta",
                "none",
                "--output-path",
                str(tmp_path / "users_client"),
            ],
            check=True,
            capture_output=True,
            env=env,
            cwd=tmp_path,
        )
        sys.path.insert(0, str(tmp_path))
        try:
            self._crud(service)
        finally:
            sys.path.remove(str(tmp_path))
            for name in [name for name in sys.modules if name.startswith("users_client")]:
                del sys.modules[name]

    def _crud(self, base_url: str) -> None:
        from users_client.client import AuthenticatedClient  # type: ignore[import-not-found]

        with AuthenticatedClient(base_url=base_url, token="admin-token") as client:
            self._calls(client)

    def _calls(self, client: Any) -> None:
        from users_client.api.default import (
            create_user_users_post,
            delete_user_users_user_id_delete,
            get_user_users_user_id_get,
            update_user_users_user_id_patch,
        )
        from users_client.models import CreateUser, UpdateUserBody

        name = f"gen{uuid.uuid4().hex[:8]}"
        created = create_user_users_post.sync_detailed(
            client=client,
            body=CreateUser(
                email=f"{name}@example.com", username=name, password="correct horse", full_name="Gen Erated"
            ),
        )
        assert created.status_code == 201, created.content
        user_id = created.parsed.id
        assert created.headers["Location"] == f"/users/{user_id}"

        read = get_user_users_user_id_get.sync_detailed(user_id, client=client)
        assert read.status_code == 200
        assert read.parsed.username == name
        assert read.parsed.role == "member"

        updated = update_user_users_user_id_patch.sync_detailed(
            user_id, client=client, body=UpdateUserBody(full_name="Re Named")
        )
        assert updated.status_code == 200
        assert updated.parsed.full_name == "Re Named"

        deleted = delete_user_users_user_id_delete.sync_detailed(user_id, client=client)
        assert deleted.status_code == 204
        gone = get_user_users_user_id_get.sync_detailed(user_id, client=client)
        assert gone.status_code == 404
        assert gone.parsed.operation_id == gone.headers["X-Operation-ID"]


def _chromium() -> str:
    """The browser's path; outside CI a missing browser skips, in CI it fails."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "chromium"],  # noqa: S607
            check=False,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"{CHROMIUM} is missing in CI: install Debian's chromium package (apt-get install -y chromium)"
        )
    pytest.skip(f"{CHROMIUM} is missing and could not be installed (apt-get install -y chromium)")


class TestSwaggerUi:
    """Swagger UI loads without a CDN and sends CreateUser through "Try it out"."""

    def test_create_user_in_swagger_ui(self, service: str, tmp_path: Path) -> None:
        browser_path = _chromium()
        update_docs = os.environ.get(UPDATE_SCREENSHOT) == "1"
        screenshot = DOCS_SCREENSHOT if update_docs else tmp_path / DOCS_SCREENSHOT.name
        from playwright.sync_api import sync_playwright

        name = f"swag{uuid.uuid4().hex[:6]}"
        body = (
            f'{{"email": "{name}@example.com", "username": "{name}", '
            f'"password": "correct horse", "full_name": "Swagger User"}}'
        )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1400})
                page.goto(f"{service}/docs")
                page.get_by_role("button", name="Authorize").first.click()
                page.locator(".modal-ux input").first.fill("admin-token")
                page.locator(".modal-ux button.authorize").click()
                page.locator(".modal-ux button.btn-done").click()
                operation = page.locator("#operations-default-create_user_users_post")
                operation.locator(".opblock-summary").click()
                operation.get_by_role("button", name="Try it out").click()
                operation.locator("textarea.body-param__text").fill(body)
                with page.expect_response(lambda response: response.url.endswith("/users")) as answer:
                    operation.get_by_role("button", name="Execute").click()
                assert answer.value.status == 201
                live = operation.locator(".live-responses-table tbody .response-col_status").first
                live.wait_for()
                assert "201" in live.inner_text()
                box = operation.bounding_box()
                assert box is not None
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                # The request and the live response; the declared responses below them are left out.
                clip = {
                    "x": box["x"],
                    "y": box["y"],
                    "width": box["width"],
                    "height": min(box["height"], 1150),
                }
                page.screenshot(path=str(screenshot), clip=clip, full_page=True)
            finally:
                browser.close()
        created = httpx.get(f"{service}/users", params={"email_contains": name}, headers=ADMIN).json()
        assert [item["username"] for item in created["items"]] == [name]
