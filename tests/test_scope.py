from __future__ import annotations

import pytest
import structlog

from cqrskit.scope import TransactionScope, current_transaction, defer_until_commit


class TestTransactionScope:
    async def test_after_commit_work_runs_in_order(self) -> None:
        """Queued work runs in the order it was queued, once."""
        ran: list[int] = []
        scope = TransactionScope()
        for number in range(3):

            async def work(number: int = number) -> None:
                ran.append(number)

            scope.after_commit(work)
        await scope.run_after_commit()
        await scope.run_after_commit()
        assert ran == [0, 1, 2]

    async def test_a_failing_work_is_logged_and_the_rest_run(self) -> None:
        """A work item that raises is logged with its traceback and does not stop the ones after it."""
        ran: list[str] = []

        async def broken() -> None:
            raise RuntimeError("boom")

        async def fine() -> None:
            ran.append("fine")

        scope = TransactionScope()
        scope.after_commit(broken)
        scope.after_commit(fine)
        with structlog.testing.capture_logs() as logs:
            await scope.run_after_commit()
        assert ran == ["fine"]
        assert len(logs) == 1
        assert logs[0]["event"] == "after_commit_failed"
        assert isinstance(logs[0]["exc_info"], RuntimeError)
        assert "broken" in logs[0]["work"]

    async def test_release_passes_work_to_the_parent(self) -> None:
        """A released nested scope hands its work to its parent, which runs it."""
        ran: list[str] = []

        async def work() -> None:
            ran.append("nested")

        outer = TransactionScope()
        inner = TransactionScope(outer)
        assert outer.is_outermost
        assert not inner.is_outermost
        inner.after_commit(work)
        inner.release()
        await inner.run_after_commit()
        assert ran == []
        await outer.run_after_commit()
        assert ran == ["nested"]

    async def test_discard_drops_work(self) -> None:
        """A discarded scope forgets its waiting work, and releasing it afterwards passes nothing up."""
        ran: list[str] = []

        async def work() -> None:
            ran.append("x")

        outer = TransactionScope()
        inner = TransactionScope(outer)
        inner.after_commit(work)
        inner.discard()
        inner.release()
        await outer.run_after_commit()
        assert ran == []

    def test_release_of_the_outermost_clears(self) -> None:
        """Releasing an outermost scope drops nothing on a parent (it has none) and clears its queue."""
        scope = TransactionScope()

        async def work() -> None:
            raise AssertionError

        scope.after_commit(work)
        assert scope.pending == 1
        scope.release()
        assert scope.pending == 0


class TestCurrentTransaction:
    def test_none_outside_a_scope(self) -> None:
        """Outside any scope there is no current transaction."""
        assert current_transaction() is None

    def test_entered_sets_and_restores(self) -> None:
        """entered() makes the scope current for the block and restores the previous one, even on error."""
        outer, inner = TransactionScope(), TransactionScope()
        with outer.entered():
            assert current_transaction() is outer
            seen: list[object] = []
            with pytest.raises(RuntimeError):
                _fail_inside(inner, seen)
            assert seen == [inner]
            assert current_transaction() is outer
        assert current_transaction() is None


class TestDeferUntilCommit:
    def test_false_without_a_scope(self) -> None:
        """With no open scope defer_until_commit returns False and queues nothing."""

        async def work() -> None:
            raise AssertionError

        assert defer_until_commit(work) is False

    async def test_queues_in_the_current_scope(self) -> None:
        """Inside a scope defer_until_commit returns True and the work runs after commit."""
        ran: list[str] = []

        async def work() -> None:
            ran.append("x")

        scope = TransactionScope()
        with scope.entered():
            assert defer_until_commit(work) is True
        assert ran == []
        await scope.run_after_commit()
        assert ran == ["x"]


def _fail_inside(scope: TransactionScope, seen: list[object]) -> None:
    with scope.entered():
        seen.append(current_transaction())
        raise RuntimeError
