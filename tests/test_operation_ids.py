"""Unit tests of cqrskit._operation_ids: how operation ids are made."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import warnings

import attrs
import pytest

from cqrskit import Command, CommandBus, Context
from cqrskit._operation_ids import new_operation_id


@attrs.frozen
class Ping(Command[None]):
    pass


class PingHandler:
    async def handle(self, command: Ping, context: Context) -> None:
        return None


async def _bus_ids(count: int) -> list[str]:
    bus = CommandBus({Ping: PingHandler()})
    return [str((await bus.execute(Ping())).operation_id) for _ in range(count)]


def _ids_in_child(queue: multiprocessing.Queue[list[str]]) -> None:
    queue.put([new_operation_id() for _ in range(50)] + asyncio.run(_bus_ids(50)))


class TestOperationIds:
    def test_unique_in_a_process(self) -> None:
        """Ten thousand ids made in one process are all different strings."""
        ids = [new_operation_id() for _ in range(10_000)]
        assert all(isinstance(i, str) for i in ids)
        assert len(set(ids)) == len(ids)

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_unique_across_a_forked_child(self) -> None:
        """A forked child draws a new prefix, so its ids (bus dispatches too) never repeat the parent's."""
        before = [new_operation_id() for _ in range(50)] + asyncio.run(_bus_ids(50))
        context = multiprocessing.get_context("fork")
        queue: multiprocessing.Queue[list[str]] = context.Queue()
        child = context.Process(target=_ids_in_child, args=(queue,))
        with warnings.catch_warnings():
            # Python 3.12+ warns that fork() in a threaded process may deadlock; the child only counts.
            warnings.simplefilter("ignore", DeprecationWarning)
            child.start()
        try:
            child_ids = queue.get(timeout=30)
        finally:
            child.join(timeout=30)
        after = [new_operation_id() for _ in range(100)]
        assert child.exitcode == 0
        parent_ids = set(before) | set(after)
        assert len(set(child_ids)) == 100
        assert parent_ids.isdisjoint(child_ids)
        assert child_ids[0].split("-")[0] != before[0].split("-")[0]
