"""Unit tests of `cqrskit.behaviours._log_context`: how Logging binds a dispatch's ids for structlog."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from structlog.contextvars import bind_contextvars, clear_contextvars, get_contextvars

from cqrskit.behaviours._log_context import DispatchIds


@pytest.fixture(autouse=True)
def _clean_contextvars() -> Iterator[None]:
    clear_contextvars()
    yield
    clear_contextvars()


class TestDispatchIds:
    """Binding the five ids through structlog's public contextvars functions."""

    def test_binds_and_restores_like_bind_contextvars(self) -> None:
        """It binds the ids where merge_contextvars finds them and restores what was there."""
        ids = DispatchIds()
        bind_contextvars(operation_id="outer", user_agent="curl")
        tokens = ids.bind("op", "corr", None, "Register", "alice")
        assert get_contextvars() == {
            "operation_id": "op",
            "correlation_id": "corr",
            "causation_id": None,
            "message_type": "Register",
            "principal_id": "alice",
            "user_agent": "curl",
        }
        ids.reset(tokens)
        assert get_contextvars() == {"operation_id": "outer", "user_agent": "curl"}

    def test_clear_contextvars_inside_a_dispatch_is_undone_by_reset(self) -> None:
        """A handler that clears the context cannot make the outer ids disappear."""
        ids = DispatchIds()
        bind_contextvars(operation_id="outer")
        tokens = ids.bind("op", None, None, "Register", None)
        clear_contextvars()
        assert get_contextvars() == {}
        ids.reset(tokens)
        assert get_contextvars() == {"operation_id": "outer"}
