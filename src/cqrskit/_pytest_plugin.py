"""The ``cqrskit`` pytest plugin: every container a fixture gives has its buses watched for overrides.

pytest loads it by itself wherever cqrskit is installed (the ``pytest11`` entry point). For each
fixture value that is a dependency-injector container it calls `cqrskit.testing.watch_overrides`, so a
test that overrides a provider after a bus was built from it gets `cqrskit.StaleOverrideError` at
the next dispatch instead of a bus that silently ignores the override. A container built inside a
test's body is not a fixture value: call ``watch_overrides(container)`` there yourself. Turn the
plugin off with ``-p no:cqrskit``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from dependency_injector import containers

from cqrskit.testing import watch_overrides

__all__ = ["pytest_fixture_setup"]


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup() -> Generator[None, Any, Any]:
    """Watch the buses of a container that a fixture has just given."""
    value = yield
    if isinstance(value, containers.Container):
        watch_overrides(value)
    return value
