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
        assert main(["routes", "tests.inspect_containers:WrongOrderContainer"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("command_bus: cannot be built:")
        assert "must sit outside" in out

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
        """A sound container passes when the modules hold only routed messages."""
        container = load_container("tests.inspect_containers:GoodContainer")
        assert check(find_buses(container)) == []
        assert main(["check", "tests.inspect_containers:GoodContainer"]) == 0
        assert capsys.readouterr().out == "ok: 2 buses, 3 routes, no wiring problems\n"

    def test_unrouted_message(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A Query subclass in the given modules with no route is a problem."""
        status = main(
            ["check", "tests.inspect_containers:GoodContainer", "--modules", "tests.inspect_containers"]
        )
        assert status == 1
        out = capsys.readouterr().out
        assert "problem: tests.inspect_containers.ForgottenQuery has no route on any bus\n" in out
        assert out.endswith("1 problem(s) found\n")

    def test_no_authorization(self) -> None:
        """A command bus without Authorization is a problem."""
        problems = check(find_buses(load_container("tests.inspect_containers:NoAuthorizationContainer")))
        assert problems == [
            "command_bus: a command bus without Authorization lets every caller run every command"
        ]

    def test_missing_rule(self) -> None:
        """A command without an authorization rule is a problem."""
        problems = check(find_buses(load_container("tests.inspect_containers:MissingRuleContainer")))
        expected = "command_bus: tests.inspect_containers.CancelOrder has no authorization rule "
        assert problems == [expected + "(it is denied to everyone)"]

    def test_unbuildable_bus(self) -> None:
        """A bus whose behaviours are in an impossible order is reported, not raised."""
        problems = check(find_buses(load_container("tests.inspect_containers:WrongOrderContainer")))
        assert len(problems) == 1
        assert problems[0].startswith("command_bus: cannot be built (wiring): ")

    def test_retry_inside_transaction(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Retry listed inside Transaction: the ConfigurationError is reported and check exits 1."""
        assert main(["check", "tests.inspect_containers:RetryInsideTransactionContainer"]) == 1
        out = capsys.readouterr().out
        assert out.startswith("problem: command_bus: cannot be built (wiring): ")
        assert "Retry" in out

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
