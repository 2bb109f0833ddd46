"""The events demo runs end to end: its read model catches up with the commands."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


class TestEventsDemo:
    """examples.events_demo against the real services."""

    async def test_the_read_model_catches_up(
        self, postgres_url: str, rabbitmq_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The demo commits eight commands and reports the read model caught up, cleaning up after."""
        from examples.events_demo import __main__ as demo

        await demo.demo()
        out = capsys.readouterr().out
        assert "total=4 created=5 updated=2 deleted=1" in out
        assert out.rstrip().endswith("caught up.")
