"""cqrskit is quiet until told otherwise: with structlog unconfigured, only warnings and errors print.

Each case runs in a fresh interpreter, because `structlog.configure` (and `capture_logs`, which the
other tests use) cannot be undone for the rest of a test session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A command refused by Authorization (a debug event), one that succeeds under Logging (info), and one
# that fails validation under Logging (warning). `CONFIGURE` is replaced by the case's own set-up.
PROGRAM = """
import asyncio

import attrs

from cqrskit import Command, CommandBus, Context, Principal
from cqrskit.behaviours import Authorization, Logging, Public, RequirePermissions, Validation

CONFIGURE


@attrs.frozen
class Ping(Command[str]):
    text: str = "hi"

    def validate(self):
        return {} if self.text else {"text": "must not be empty"}


@attrs.frozen
class Secret(Command[str]):
    pass


class Pong:
    async def handle(self, command, context):
        return "pong"


async def main():
    rules = {Ping: Public(), Secret: RequirePermissions("secret:read")}
    bus = CommandBus({Ping: Pong(), Secret: Pong()}, [Logging(), Authorization(rules), Validation()])
    someone = Context(principal=Principal("someone"))
    print("refused:", (await bus.execute(Secret(), someone)).status)
    print("succeeded:", (await bus.execute(Ping(), someone)).status)
    print("invalid:", (await bus.execute(Ping(""), someone)).status)


asyncio.run(main())
"""


def _run(configure: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(  # noqa: S603 - this interpreter, our own program
        [sys.executable, "-c", PROGRAM.replace("CONFIGURE", configure)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout + done.stderr


class TestUnconfigured:
    def test_only_warnings_and_errors_print(self) -> None:
        """With structlog unconfigured, the refusal (debug) and the success (info) print nothing."""
        out = _run("")

        assert "authorization_refused" not in out
        assert "[info" not in out
        assert "[debug" not in out
        # The validation failure is a warning: it still shows.
        assert "[warning  ] dispatch_completed" in out
        assert "invalid: validation_error" in out

    def test_configuring_structlog_turns_every_event_on(self) -> None:
        """One call, ``structlog.configure()``, and cqrskit's debug and info events follow it."""
        out = _run("import structlog\nstructlog.configure()")

        assert "authorization_refused" in out
        assert "[info     ] dispatch_completed" in out

    def test_your_configuration_decides_the_level(self) -> None:
        """Configured at info, the debug refusal stays out and the info events show."""
        configure = (
            "import logging, structlog\n"
            "structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))"
        )
        out = _run(configure)

        assert "authorization_refused" not in out
        assert "[info     ] dispatch_completed" in out
