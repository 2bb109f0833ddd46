"""An override made after a bus was built is refused, never silently ignored (`watch_overrides`).

A bus resolves its handlers and behaviours once, when it is built. These tests build real buses from a
real dependency-injector container, override a provider the bus was built from, and dispatch.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from dependency_injector import containers, providers

from cqrskit import (
    CallNext,
    Command,
    CommandBus,
    ConfigurationError,
    Context,
    Query,
    QueryBus,
    Result,
    StaleOverrideError,
    StreamQuery,
)
from cqrskit.events import Event, EventBus
from cqrskit.testing import ProviderWatch, override_handler, override_providers, watch_overrides

ROOT = Path(__file__).resolve().parents[1]


@attrs.frozen
class Rename(Command[str]):
    name: str


@attrs.frozen
class Greeting(Query[str]):
    pass


@attrs.frozen
class Names(StreamQuery[str]):
    pass


@attrs.frozen
class Renamed(Event):
    name: str


class Users:
    def __init__(self, label: str = "real") -> None:
        self.label = label
        self.seen: list[str] = []


class RenameHandler:
    def __init__(self, users: Users) -> None:
        self.users = users

    async def handle(self, command: Rename, context: Context) -> str:
        self.users.seen.append(command.name)
        return self.users.label


class GreetingHandler:
    def __init__(self, users: Users) -> None:
        self.users = users

    async def handle(self, query: Greeting, context: Context) -> str:
        return f"hello from {self.users.label}"


class NamesHandler:
    def __init__(self, users: Users) -> None:
        self.users = users

    async def handle(self, query: Names, context: Context) -> AsyncIterator[str]:
        yield self.users.label


class RenamedSubscriber:
    def __init__(self, users: Users) -> None:
        self.users = users

    async def handle(self, event: Renamed, context: Context) -> None:
        self.users.seen.append(event.name)


class Tagging:
    """A pass-through behaviour that a test can override with another."""

    def __init__(self, tag: str = "real") -> None:
        self.tag = tag

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        return await call_next(message, context)


class Container(containers.DeclarativeContainer):
    users = providers.Singleton(Users)
    tagging = providers.Singleton(Tagging)
    rename = providers.Factory(RenameHandler, users=users)
    command_bus = providers.Singleton(
        CommandBus, handlers=providers.Dict({Rename: rename}), behaviours=providers.List(tagging)
    )
    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict(
            {
                Greeting: providers.Factory(GreetingHandler, users=users),
                Names: providers.Factory(NamesHandler, users=users),
            }
        ),
    )
    event_bus = providers.Singleton(
        EventBus,
        handlers=providers.Dict({Renamed: providers.List(providers.Factory(RenamedSubscriber, users=users))}),
    )


class PerDispatch(containers.DeclarativeContainer):
    """The handler behind ``.provider``: the bus calls the factory per dispatch, so it sees overrides."""

    users = providers.Singleton(Users)
    rename = providers.Factory(RenameHandler, users=users)
    command_bus = providers.Singleton(CommandBus, handlers=providers.Dict({Rename: rename.provider}))


class TestAWatchedBusRefusesALateOverride:
    async def test_overriding_a_dependency_after_the_build(self) -> None:
        """A repository overridden after the bus was built: the dispatch raises and names both."""
        container = watch_overrides(Container())
        bus = container.command_bus()
        assert (await bus.execute(Rename("a"))).data == "real"
        with container.users.override(Users("fake")):
            with pytest.raises(StaleOverrideError) as raised:
                await bus.execute(Rename("b"))
        assert (raised.value.bus, raised.value.provider) == ("container.command_bus", "container.users")
        assert "container.command_bus.reset()" in str(raised.value)
        assert isinstance(raised.value, ConfigurationError)

    async def test_overriding_the_handler_provider_after_the_build(self) -> None:
        """The handler's own factory overridden late is refused just the same."""
        container = watch_overrides(Container())
        bus = container.command_bus()
        with container.rename.override(providers.Factory(RenameHandler, users=Users("fake"))):
            with pytest.raises(StaleOverrideError, match=r"container\.rename was overridden"):
                await bus.execute(Rename("b"))

    async def test_overriding_a_behaviour_after_the_build(self) -> None:
        """A behaviour provider is part of what the bus was built from."""
        container = watch_overrides(Container())
        bus = container.command_bus()
        with container.tagging.override(Tagging("fake")):
            with pytest.raises(StaleOverrideError, match=r"container\.tagging"):
                await bus.execute(Rename("b"))

    async def test_the_query_bus_and_a_stream_refuse_it_too(self) -> None:
        """execute and stream on a query bus built before the override both raise."""
        container = watch_overrides(Container())
        queries = container.query_bus()
        with container.users.override(Users("fake")):
            with pytest.raises(StaleOverrideError, match=r"container\.query_bus"):
                await queries.execute(Greeting())
            with pytest.raises(StaleOverrideError):
                await queries.stream(Names())

    async def test_the_event_bus_refuses_it_too(self) -> None:
        """An event bus built before the override refuses to deliver."""
        container = watch_overrides(Container())
        events = container.event_bus()
        with container.users.override(Users("fake")):
            with pytest.raises(StaleOverrideError, match=r"container\.event_bus"):
                await events.publish(Renamed("x"))

    async def test_removing_the_override_a_bus_was_built_with_is_refused(self) -> None:
        """A bus built inside an override block no longer matches the container once the block ends."""
        container = watch_overrides(Container())
        with container.users.override(Users("fake")):
            bus = container.command_bus()
            assert (await bus.execute(Rename("a"))).data == "fake"
        with pytest.raises(StaleOverrideError, match="an override of it removed"):
            await bus.execute(Rename("b"))

    async def test_resetting_the_bus_after_the_override_honours_it(self) -> None:
        """The fix the error names: reset the bus, and the next one is built with the override."""
        container = watch_overrides(Container())
        container.command_bus()
        fake = Users("fake")
        with container.users.override(fake):
            container.command_bus.reset()
            assert (await container.command_bus().execute(Rename("a"))).data == "fake"
        assert fake.seen == ["a"]

    async def test_an_override_made_before_the_build_is_used(self) -> None:
        """Overriding first and building after is the normal order: nothing to refuse."""
        container = watch_overrides(Container())
        with container.users.override(Users("fake")):
            assert (await container.command_bus().execute(Rename("a"))).data == "fake"


class TestWhatIsHonoured:
    async def test_a_handler_behind_provider_sees_a_late_override(self) -> None:
        """With ``.provider`` in the map the bus resolves per dispatch, so the override is honoured."""
        container = watch_overrides(PerDispatch())
        bus = container.command_bus()
        assert (await bus.execute(Rename("a"))).data == "real"
        with container.users.override(Users("fake")):
            assert (await bus.execute(Rename("b"))).data == "fake"
        assert (await bus.execute(Rename("c"))).data == "real"

    async def test_override_providers_rebuilds_the_bus(self) -> None:
        """override_providers resets the buses, so the bus it gives is watched and current."""
        container = watch_overrides(Container())
        stale = container.command_bus()
        with override_providers(container, users=Users("fake")):
            assert (await container.command_bus().execute(Rename("a"))).data == "fake"
            with pytest.raises(StaleOverrideError):
                await stale.execute(Rename("b"))
        assert (await container.command_bus().execute(Rename("c"))).data == "real"

    async def test_override_handler_rebuilds_the_bus(self) -> None:
        """override_handler resets the buses built from the maps it changes."""
        container = Container()
        container.command_bus()

        class Fixed:
            async def handle(self, command: Rename, context: Context) -> str:
                return "fixed"

        with override_handler(container, Rename, Fixed()):
            assert (await container.command_bus().execute(Rename("a"))).data == "fixed"
        assert (await container.command_bus().execute(Rename("b"))).data == "real"


class TestWatchOverrides:
    def test_it_resets_a_bus_built_before_it(self) -> None:
        """A bus built unwatched is dropped, so every bus the container gives from now on is watched."""
        container = Container()
        unwatched = container.command_bus()
        watch_overrides(container)
        assert container.command_bus() is not unwatched
        assert isinstance(container.command_bus.kwargs["watch"], ProviderWatch)

    def test_calling_it_twice_changes_nothing(self) -> None:
        """The watch is installed once; the bus built after the first call stays."""
        container = watch_overrides(Container())
        bus = container.command_bus()
        watch = container.command_bus.kwargs["watch"]
        assert watch_overrides(container) is container
        assert container.command_bus() is bus
        assert container.command_bus.kwargs["watch"] is watch

    def test_it_watches_what_the_bus_is_built_from(self) -> None:
        """The watch names the container's providers and describes the anonymous ones."""
        container = watch_overrides(Container())
        watched = container.query_bus.kwargs["watch"].providers
        assert "container.users" in watched
        assert "the Factory of tests.test_override_watch.GreetingHandler" in watched
        assert "container.command_bus" not in watched

    def test_a_delegated_handler_is_not_watched(self) -> None:
        """What the bus calls per dispatch (behind ``.provider``) is left out of the watch."""
        container = watch_overrides(PerDispatch())
        assert "container.rename" not in container.command_bus.kwargs["watch"].providers

    async def test_an_unwatched_bus_keeps_what_it_was_built_with(self) -> None:
        """Without a watch the bus is dependency-injector's plain singleton: it keeps its handler."""
        container = Container()
        bus = container.command_bus()
        with container.users.override(Users("fake")):
            assert (await bus.execute(Rename("a"))).data == "real"


PLUGIN_TEST = """
import attrs
import pytest
from dependency_injector import containers, providers

from cqrskit import Command, CommandBus, Context


@attrs.frozen
class Ping(Command[str]):
    pass


class Answer:
    text = "real"


class PingHandler:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    async def handle(self, command: Ping, context: Context) -> str:
        return self.answer.text


class Container(containers.DeclarativeContainer):
    answer = providers.Singleton(Answer)
    command_bus = providers.Singleton(
        CommandBus, handlers=providers.Dict({Ping: providers.Factory(PingHandler, answer=answer)})
    )


@pytest.fixture
def container():
    return Container()


@pytest.fixture
def bus(container):
    return container.command_bus()  # built before the test overrides


async def test_late_override(container, bus):
    fake = Answer()
    fake.text = "fake"
    container.answer.override(fake)
    result = await bus.execute(Ping())
    assert result.data == "fake"
"""


class TestThePytestPlugin:
    def run_pytest(self, tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "test_late.py").write_text(textwrap.dedent(PLUGIN_TEST), encoding="utf-8")
        return subprocess.run(  # noqa: S603 - our own interpreter running pytest on a file we wrote
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "asyncio_mode=auto",
                *options,
                "test_late.py",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def test_a_fixture_container_is_watched(self, tmp_path: Path) -> None:
        """Under pytest, a late override on a fixture's container fails the dispatch with the error."""
        run = self.run_pytest(tmp_path)
        assert run.returncode == 1, run.stdout + run.stderr
        assert "StaleOverrideError: container.answer was overridden" in run.stdout

    def test_without_the_plugin_the_override_is_silently_ignored(self, tmp_path: Path) -> None:
        """With the plugin turned off the bus answers with the real dependency: the override is lost."""
        run = self.run_pytest(tmp_path, "-p", "no:cqrskit")
        assert run.returncode == 1, run.stdout + run.stderr
        assert "StaleOverrideError" not in run.stdout
        assert "assert 'real' == 'fake'" in run.stdout
