"""Unit tests of cqrskit._inspect, the route inspector: ``python -m cqrskit routes`` and ``check``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cqrskit.__main__ import main
from cqrskit._inspect import check, find_buses, load_container, message_classes

ROOT = Path(__file__).resolve().parent.parent


class TestLoadContainer:
    """load_container finds a container by its dotted name."""

    def test_class_is_instantiated(self) -> None:
        """A DeclarativeContainer class gives a fresh instance."""
        container = load_container("tests.inspect_containers:GoodContainer")
        assert set(container.providers) == {"command_bus", "query_bus"}

    @pytest.mark.parametrize(
        "spec", ["tests.inspect_containers", "tests.inspect_containers:", ":GoodContainer"]
    )
    def test_bad_spec(self, spec: str) -> None:
        """A spec without both halves is refused."""
        with pytest.raises(ValueError, match=r"package\.module:Container"):
            load_container(spec)

    def test_not_a_container(self) -> None:
        """A name that is not a container is refused."""
        with pytest.raises(TypeError):
            load_container("tests.inspect_containers:PlaceOrder")


class TestRoutes:
    """`routes` prints every route with its handler and ordered behaviour chain."""

    def test_output(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The exact output for a container with two buses."""
        assert main(["routes", "tests.inspect_containers:GoodContainer"]) == 0
        module = "tests.inspect_containers"
        assert capsys.readouterr().out == (
            "command_bus (CommandBus, 2 routes)\n"
            f"  {module}.CancelOrder\n"
            f"    handler: {module}.CancelOrderHandler (new per dispatch)\n"
            "    behaviours (outermost first):\n"
            "      1. Authorization(rule='requires an authenticated principal', default=False)\n"
            "      2. Timing(timeout=2.5)\n"
            f"  {module}.PlaceOrder\n"
            f"    handler: {module}.PlaceOrderHandler\n"
            "    behaviours (outermost first):\n"
            "      1. Authorization(rule='requires order:place; admins pass too', default=False)\n"
            "      2. Timing(timeout=2.5)\n"
            "\n"
            "query_bus (QueryBus, 1 route)\n"
            f"  {module}.GetOrder\n"
            f"    handler: {module}.GetOrderHandler\n"
            "    behaviours: none\n"
            "\n"
        )

    def test_event_bus(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An EventBus is found too; each event lists its subscribers in order."""
        assert main(["routes", "tests.inspect_containers:EventContainer"]) == 0
        module = "tests.inspect_containers"
        assert capsys.readouterr().out == (
            "event_bus (EventBus, 1 route)\n"
            f"  {module}.OrderPlaced\n"
            f"    subscribers: {module}.EmailCustomer, {module}.UpdateStock\n"
            "    behaviours: none\n"
            "\n"
        )

    def test_unbuildable_bus_is_shown(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A bus that refuses its configuration is printed with the reason."""
        assert main(["routes", "tests.inspect_containers:WrongOrderContainer"]) == 1
        out = capsys.readouterr().out
        assert out.startswith("command_bus cannot be built: ")
        assert "list Outer before Inner in command_bus's behaviours" in out

    def test_no_bus(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A container without buses is an error (exit 2)."""
        assert main(["routes", "tests.inspect_containers:NoBusContainer"]) == 2
        assert "declares no CommandBus" in capsys.readouterr().err

    def test_unknown_module(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A module that cannot be imported is reported, exit 2."""
        assert main(["routes", "tests.no_such_module:Container"]) == 2
        assert "cannot load" in capsys.readouterr().err


class TestCheck:
    """`check` exits non-zero and names each wiring problem."""

    def test_sound_container(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A sound container passes: every message of its module routed, ruled and reporting."""
        container = load_container("tests.inspect_containers:GoodContainer")
        assert check(find_buses(container)) == []
        assert main(["check", "tests.inspect_mistakes:SoundContainer"]) == 0
        assert capsys.readouterr().out == "ok: 2 buses, 2 routes, no wiring problems\n"

    def test_unrouted_message_found_without_modules(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A Query subclass of the container's module with no route is found with no --modules."""
        assert main(["check", "tests.inspect_containers:GoodContainer"]) == 1
        out = capsys.readouterr().out
        expected = (
            "tests.inspect_containers.ForgottenQuery has no route on any bus: add it to a bus's handlers"
        )
        assert f"problem: {expected}\n" in out
        assert out.endswith("1 problem(s) found\n")

    def test_unrouted_message_in_a_given_module(self) -> None:
        """--modules still adds the classes of other modules."""
        container = load_container("tests.inspect_containers:GoodContainer")
        problems = check(find_buses(container), ["tests.inspect_containers"])
        assert problems == [
            "tests.inspect_containers.ForgottenQuery has no route on any bus: add it to a bus's handlers"
        ]

    def test_settings_for_an_unrouted_type(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A rule and a timeout for a command no bus routes are flagged, and so is the command."""
        assert main(["check", "tests.inspect_mistakes:UnroutedCommandContainer"]) == 1
        out = capsys.readouterr().out
        name = "tests.inspect_mistakes.RenameUser"
        assert out == (
            f"problem: query_bus: Timeout has a timeout for {name}, which no bus routes: route it, "
            "or remove the entry\n"
            f"problem: query_bus: Authorization has an authorization rule for {name}, which no bus "
            "routes: route it, or remove the entry\n"
            f"problem: {name} has no route on any bus: add it to a bus's handlers\n"
            "3 problem(s) found\n"
        )

    def test_a_command_that_cannot_report_what_it_changed(self, capsys: pytest.CaptureFixture[str]) -> None:
        """On a bus with CacheInvalidation, a handler declared to return a plain value is flagged."""
        assert main(["check", "tests.inspect_mistakes:SilentCommandContainer"]) == 1
        out = capsys.readouterr().out
        assert out.startswith(
            "problem: command_bus: tests.inspect_mistakes.RenameUser's handler RenameSilently.handle "
            "returns None, not a Result, so it reports no affected entities and CacheInvalidation "
            "drops nothing after it; return Result.success(value, affected_entities="
        )
        assert out.endswith("1 problem(s) found\n")

    def test_no_authorization(self) -> None:
        """A command bus without Authorization is a problem."""
        problems = check(find_buses(load_container("tests.inspect_containers:NoAuthorizationContainer")))
        assert problems == [
            (
                "command_bus: a command bus without Authorization lets every caller run every command; "
                "add Authorization(rules={...}) to its behaviours"
            )
        ]

    def test_missing_rule(self) -> None:
        """A command without an authorization rule is a problem."""
        problems = check(find_buses(load_container("tests.inspect_containers:MissingRuleContainer")))
        expected = "command_bus: tests.inspect_containers.CancelOrder has no authorization rule "
        assert problems == [expected + "(it is denied to everyone); add one to the rules"]

    def test_unbuildable_bus(self) -> None:
        """A bus whose behaviours are in an impossible order is reported, not raised."""
        problems = check(find_buses(load_container("tests.inspect_containers:WrongOrderContainer")))
        assert problems == [
            (
                "command_bus cannot be built: Outer must sit outside Inner: "
                "list Outer before Inner in command_bus's behaviours"
            )
        ]

    def test_retry_inside_transaction(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Retry listed inside Transaction: the ConfigurationError is reported and check exits 1."""
        assert main(["check", "tests.inspect_containers:RetryInsideTransactionContainer"]) == 1
        out = capsys.readouterr().out
        assert out == (
            "problem: command_bus cannot be built: Retry must sit outside Transaction: "
            "list Retry before Transaction in command_bus's behaviours\n"
            "1 problem(s) found\n"
        )

    def test_message_classes(self) -> None:
        """Only classes defined in the module count, not those it imports."""
        names = [cls.__name__ for cls in message_classes(["tests.inspect_containers"])]
        assert names == ["CancelOrder", "ForgottenQuery", "GetOrder", "PlaceOrder"]

    def test_command_line(self) -> None:
        """`python -m cqrskit check` runs as a program and exits 1 on a broken container."""
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
        completed = subprocess.run(
            [sys.executable, "-m", "cqrskit", "check", "tests.inspect_containers:NoAuthorizationContainer"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert completed.returncode == 1, completed.stderr
        assert "without Authorization" in completed.stdout
