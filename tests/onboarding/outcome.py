"""The end every onboarding crash test must reach: what the processes come to without any crash."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from cqrskit.processes import ProcessInstance, ProcessStatus

USERS = [f"u{n}" for n in range(6)]
"""The users each crash test creates."""
ACTIVATED = {"u0", "u2", "u4"}
"""The users activated before their deadline; the others are disabled by it."""


async def assert_the_uncrashed_end(
    instance: Callable[[str], Awaitable[ProcessInstance[object] | None]],
    accounts: Mapping[str, str],
    tasks: Mapping[str, str],
) -> None:
    """Check every user's process, account and welcome task are what a run without a crash gives."""
    for user in USERS:
        found = await instance(user)
        assert found is not None
        if user in ACTIVATED:
            assert (found.status, accounts[user], tasks[user]) == (ProcessStatus.COMPLETED, "active", "open")
            assert [e.message for e in found.history] == ["UserCreated", "UserActivated"]
        else:
            assert (found.status, accounts[user], tasks[user]) == (
                ProcessStatus.COMPENSATED,
                "disabled",
                "cancelled",
            )
            assert [e.message for e in found.history] == ["UserCreated", "ActivationDeadline"]
