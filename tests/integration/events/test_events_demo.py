"""The events demo runs end to end: its read model catches up with the commands."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

CAUGHT_UP = "total=4 created=5 updated=2 deleted=1"


class TestEventsDemo:
    """examples.events_demo against the real services."""

    @pytest.mark.redis
    async def test_a_worker_process_catches_the_read_model_up(
        self, postgres_url: str, rabbitmq_url: str, redis_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Relay and worker run as processes; the worker's invalidation reaches the API through Redis."""
        from examples.events_demo import __main__ as demo

        await demo.demo(processes=True)
        out = capsys.readouterr().out
        assert "worker and relay run as processes" in out
        assert CAUGHT_UP in out
        assert out.rstrip().endswith("caught up.")

    async def test_the_read_model_catches_up_in_one_process(
        self, postgres_url: str, rabbitmq_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without Redis the three sides run as tasks of one process, with an in-memory cache."""
        from examples.events_demo import __main__ as demo

        await demo.demo(processes=False)
        out = capsys.readouterr().out
        assert "worker and relay run as tasks of this process" in out
        assert CAUGHT_UP in out
        assert out.rstrip().endswith("caught up.")
