"""Every public name is importable, documented (class, function and method docstrings) and in the docs."""

from __future__ import annotations

import inspect
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

import cqrskit
import cqrskit.behaviours
import cqrskit.caching
import cqrskit.events
import cqrskit.events.conformance
import cqrskit.fastapi
import cqrskit.health
import cqrskit.processes
import cqrskit.routing
import cqrskit.scope
import cqrskit.sqlalchemy
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
from cqrskit.caching import CacheInvalidation, CachePolicy, QueryCache

DOCS = Path(__file__).resolve().parent.parent / "docs"
# Modules whose classes' public methods and properties must also be named in the docs.
METHOD_MODULES = [cqrskit.sqlalchemy, cqrskit.caching]
CACHING_BEHAVIOURS = [CacheInvalidation, CachePolicy, QueryCache]
PUBLIC_MODULES = [
    cqrskit,
    cqrskit.behaviours,
    cqrskit.caching,
    cqrskit.events,
    cqrskit.events.conformance,
    cqrskit.fastapi,
    cqrskit.processes,
    cqrskit.health,
    cqrskit.routing,
    cqrskit.scope,
    cqrskit.sqlalchemy,
    cqrskit.testing,
]


def public_names(module: ModuleType) -> list[str]:
    return list(module.__all__)


class TestPublicNames:
    @pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
    def test_every_name_is_importable(self, module: ModuleType) -> None:
        """Every name a public module lists in __all__ exists on it."""
        for name in public_names(module):
            assert hasattr(module, name), name

    @pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
    def test_every_class_and_function_has_a_docstring(self, module: ModuleType) -> None:
        """Every public class and function of a public module has a docstring."""
        for name in public_names(module):
            value = getattr(module, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                assert inspect.getdoc(value), name

    @pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
    def test_every_public_method_has_a_docstring(self, module: ModuleType) -> None:
        """Every public method and property a public class defines has a docstring."""
        undocumented = []
        for name in public_names(module):
            value = getattr(module, name)
            if not inspect.isclass(value):
                continue
            for attribute, member in vars(value).items():
                if attribute.startswith("_") and attribute != "__call__":
                    continue
                target = member.fget if isinstance(member, property) else member
                if isinstance(target, classmethod | staticmethod):
                    target = target.__func__
                if inspect.isfunction(target) and not inspect.getdoc(target):
                    undocumented.append(f"{name}.{attribute}")
        assert undocumented == []

    @pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
    def test_every_name_appears_in_the_docs(self, module: ModuleType) -> None:
        """Every public name of a public module is mentioned in the docs."""
        text = "\n".join(page.read_text(encoding="utf-8") for page in DOCS.rglob("*.md"))
        # Written `Name`, `Name(...)` or with its module, `cqrskit.sqlalchemy.Name`.
        forms = ("`{}", "{}(", ".{}`")
        missing = [
            name for name in public_names(module) if not any(form.format(name) in text for form in forms)
        ]
        assert missing == []


class TestOnePathPerName:
    def test_the_public_modules_are_these(self) -> None:
        """Every module without an underscore in its path is one of the public modules listed here."""
        found = {"cqrskit"} | {
            info.name
            for info in pkgutil.walk_packages(cqrskit.__path__, "cqrskit.")
            if not any(part.startswith("_") for part in info.name.split("."))
        }
        assert found == {module.__name__ for module in PUBLIC_MODULES}

    def test_each_public_object_has_one_import_path(self) -> None:
        """No object is exported by two public modules: each public name has one path."""
        paths: dict[int, list[str]] = {}
        for module in PUBLIC_MODULES:
            for name in public_names(module):
                paths.setdefault(id(getattr(module, name)), []).append(f"{module.__name__}.{name}")
        assert [found for found in paths.values() if len(found) > 1] == []


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


def public_members(cls: type) -> list[tuple[str, Any]]:
    """The methods and properties `cls` itself defines whose names do not start with an underscore."""
    members = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            members.append((name, value.fget))
        elif inspect.isfunction(value) or isinstance(value, (classmethod, staticmethod)):
            members.append((name, value))
    return members


def classes_to_check() -> list[type]:
    found = [
        value
        for module in METHOD_MODULES
        for value in (getattr(module, name) for name in public_names(module))
        if inspect.isclass(value) and not issubclass(value, BaseException)
    ]
    return [*found, *CACHING_BEHAVIOURS]


class TestPublicMembers:
    """The classes of cqrskit.sqlalchemy and cqrskit.caching, and the caching behaviours."""

    @pytest.mark.parametrize("cls", classes_to_check(), ids=lambda c: c.__qualname__)
    def test_every_method_and_property_has_a_docstring(self, cls: type) -> None:
        """Each public method and property says what it does."""
        undocumented = [name for name, member in public_members(cls) if not inspect.getdoc(member)]
        assert undocumented == []

    @pytest.mark.parametrize("cls", classes_to_check(), ids=lambda c: c.__qualname__)
    def test_every_method_and_property_appears_in_the_docs(self, cls: type) -> None:
        """Each public method and property is named in the docs."""
        text = "\n".join(page.read_text(encoding="utf-8") for page in DOCS.rglob("*.md"))
        missing = [
            name
            for name, _ in public_members(cls)
            if not any(form in text for form in (f"`{name}", f".{name}", f"{name}("))
        ]
        assert missing == []
