from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

import cqrskit
import cqrskit.scope
import cqrskit.testing
from cqrskit import (
    Behaviour,
    CallNext,
    Command,
    CommandBus,
    Context,
    Handler,
    HandlerFactory,
    Result,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
CORE_MODULES = [cqrskit, cqrskit.testing, cqrskit.scope]


def public_names(module: ModuleType) -> list[str]:
    return list(module.__all__)


class TestPublicNames:
    @pytest.mark.parametrize("module", CORE_MODULES, ids=lambda m: m.__name__)
    def test_every_name_is_importable(self, module: ModuleType) -> None:
        """Every name a core module lists in __all__ exists on it."""
        for name in public_names(module):
            assert hasattr(module, name), name

    @pytest.mark.parametrize("module", CORE_MODULES, ids=lambda m: m.__name__)
    def test_every_class_and_function_has_a_docstring(self, module: ModuleType) -> None:
        """Every public class and function of a core module has a docstring."""
        for name in public_names(module):
            value = getattr(module, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                assert inspect.getdoc(value), name

    @pytest.mark.parametrize("module", CORE_MODULES, ids=lambda m: m.__name__)
    def test_every_name_appears_in_the_docs(self, module: ModuleType) -> None:
        """Every public name of a core module is mentioned in the docs."""
        text = "\n".join(page.read_text(encoding="utf-8") for page in DOCS.rglob("*.md"))
        missing = [name for name in public_names(module) if f"`{name}" not in text and f"{name}(" not in text]
        assert missing == []


def event_modules() -> list[ModuleType]:
    import cqrskit.behaviours.idempotency
    import cqrskit.events

    return [cqrskit.events, cqrskit.behaviours.idempotency]


class TestEventsPublicNames:
    """cqrskit.events and Idempotency: every public name importable, documented in code and in docs."""

    @pytest.mark.parametrize("module", event_modules(), ids=lambda m: m.__name__)
    def test_every_name_is_importable(self, module: ModuleType) -> None:
        """Every name listed in __all__ exists, the lazily imported ones included."""
        for name in public_names(module):
            assert getattr(module, name) is not None, name

    @pytest.mark.parametrize("module", event_modules(), ids=lambda m: m.__name__)
    def test_every_class_function_and_method_has_its_own_docstring(self, module: ModuleType) -> None:
        """Public classes, functions, methods and properties carry a docstring of their own."""
        missing = []
        for name in public_names(module):
            value = getattr(module, name)
            if not (inspect.isclass(value) or inspect.isfunction(value)):
                continue
            if not value.__doc__:
                missing.append(name)
            if inspect.isclass(value):
                for attribute, member in vars(value).items():
                    function = member.fget if isinstance(member, property) else member
                    function = getattr(function, "__func__", function)
                    if not attribute.startswith("_") and callable(function) and not function.__doc__:
                        missing.append(f"{name}.{attribute}")
        assert missing == []

    @pytest.mark.parametrize("module", event_modules(), ids=lambda m: m.__name__)
    def test_every_name_appears_in_the_docs(self, module: ModuleType) -> None:
        """Every public name is mentioned in the docs."""
        text = "\n".join(page.read_text(encoding="utf-8") for page in DOCS.rglob("*.md"))
        missing = [name for name in public_names(module) if f"`{name}" not in text and f"{name}(" not in text]
        assert missing == []


@attrs.frozen
class Ping(Command[str]):
    pass


class PingHandler:
    async def handle(self, command: Ping, context: Context) -> str:
        return "pong"


class TestProtocols:
    async def test_handler_protocol(self) -> None:
        """A plain class satisfies Handler; a bus takes it as annotated."""
        handler: Handler[Ping, str] = PingHandler()
        assert (await CommandBus({Ping: handler}).execute(Ping())).data == "pong"

    async def test_handler_factory(self) -> None:
        """A HandlerFactory is any zero-argument callable returning a handler."""
        factory: HandlerFactory = PingHandler
        assert (await CommandBus({Ping: factory}).execute(Ping())).data == "pong"

    async def test_behaviour_and_call_next(self) -> None:
        """An object typed as Behaviour gets a CallNext that runs the rest of the pipeline."""

        class Upper:
            async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
                result = await call_next(message, context)
                return Result.success(str(result.data).upper())

        behaviour: Behaviour = Upper()
        assert (await CommandBus({Ping: PingHandler()}, [behaviour]).execute(Ping())).data == "PONG"
