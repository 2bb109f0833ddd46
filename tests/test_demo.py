"""The demo in examples/ runs and prints what each dispatch did."""

from __future__ import annotations

import pytest
from examples import demo


class TestDemo:
    async def test_prints_each_outcome(self, capsys: pytest.CaptureFixture[str]) -> None:
        """It creates and fetches a thing, then shows a validation failure, a not-found and a refusal."""
        await demo.main()
        out = capsys.readouterr().out
        assert "-> success, id" in out
        assert "name='teapot'" in out
        assert "-> validation_error, errors {'name': 'must not be blank'}" in out
        assert "-> not_found" in out
        assert "-> unauthenticated, errors {'detail': 'authentication is required'}" in out

    async def test_logging_prints_one_line_per_dispatch(self, capsys: pytest.CaptureFixture[str]) -> None:
        """cqrskit's Logging prints one line per dispatch, at info or warning; nothing at debug."""
        await demo.main()
        lines = [
            line.strip() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("[")
        ]
        assert [line.split(" in ")[0] for line in lines] == [
            "[info] CreateThing -> success",
            "[info] GetThing -> success",
            "[warning] CreateThing -> validation_error",
            "[warning] GetThing -> not_found",
            "[warning] CreateThing -> unauthenticated",
        ]
