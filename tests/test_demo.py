from __future__ import annotations

import pytest
from examples import demo


class TestDemo:
    async def test_prints_each_outcome(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The demo creates and fetches a thing, then shows a validation failure and a not-found."""
        await demo.main()
        out = capsys.readouterr().out
        assert "-> success, id" in out
        assert "name='teapot'" in out
        assert "-> validation_error, errors {'name': 'must not be blank'}" in out
        assert "-> not_found" in out
