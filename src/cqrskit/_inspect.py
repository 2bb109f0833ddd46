"""The route inspector behind ``python -m cqrskit routes|check``.

It builds the buses a dependency-injector container declares, prints every route with its handler and
behaviour chain, and finds wiring problems a bus cannot see on its own: message classes nobody routes,
a command bus without authorization, a message without an authorization rule.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TextIO

import attrs
from dependency_injector import containers, providers

from cqrskit._bus import CommandBus
from cqrskit._errors import ConfigurationError
from cqrskit._messages import Command, Message, Query
from cqrskit._names import qualified_name

__all__ = [
    "BusReport",
    "check",
    "find_buses",
    "find_processes",
    "load_container",
    "message_classes",
    "print_processes",
    "print_routes",
]


@attrs.frozen
class BusReport:
    """One bus a container declares: its provider's name, and the bus or the error building it raised."""

    name: str
    bus: Any = None
    error: BaseException | None = None


def _qualified(obj: object) -> str:
    """Name a class or function; an instance by its class."""
    return qualified_name(obj if isinstance(obj, type) or inspect.isfunction(obj) else type(obj))


def load_container(spec: str) -> containers.Container:
    """Import ``"package.module:Name"`` and return the container instance it names.

    A `DeclarativeContainer` class is instantiated; an instance, or a zero-argument factory returning
    one, is used as it is.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected 'package.module:Container', got {spec!r}")
    # By name: the module is the user's, known only when they type it (tests/architecture.py allows it).
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if isinstance(target, type) and issubclass(target, containers.DeclarativeContainer):
        return target()
    if isinstance(target, containers.Container):
        return target
    if callable(target):
        built = target()
        if isinstance(built, containers.Container):
            return built
    raise TypeError(f"{spec} is not a dependency-injector container or a factory returning one")


def _provides_bus(provider: providers.Provider[Any]) -> bool:
    # Any bus: CommandBus, QueryBus, EventBus (which the core does not import), or one of your own,
    # told by the two things the listing reads from it.
    provides = getattr(provider, "provides", None)
    return isinstance(provides, type) and all(hasattr(provides, name) for name in ("routes", "behaviours"))


def find_buses(container: containers.Container) -> list[BusReport]:
    """Build every provider of `container` whose product is a CommandBus, QueryBus or EventBus.

    Providers are found by what they build (``providers.Singleton(CommandBus, ...)``), top level first
    by name, then nested containers. A bus that refuses its configuration is reported with the error
    instead of raising.
    """
    reports: list[BusReport] = []
    for name, provider in _named_providers(container):
        if not _provides_bus(provider):
            continue
        try:
            reports.append(BusReport(name, bus=provider()))
        except Exception as exc:  # noqa: BLE001 - a bus that cannot be built is what we report
            reports.append(BusReport(name, error=exc))
    return reports


def _provides_process(provider: providers.Provider[Any]) -> bool:
    # A cqrskit.processes.ProcessManager (which this module does not import: it needs SQLAlchemy), told
    # by what the listing reads from it.
    provides = getattr(provider, "provides", None)
    return isinstance(provides, type) and all(
        hasattr(provides, name) for name in ("describe", "reactions", "instance")
    )


def find_processes(container: containers.Container) -> list[BusReport]:
    """Build every process manager `container` declares; one that cannot be built comes with its error."""
    reports: list[BusReport] = []
    for name, provider in _named_providers(container):
        if not _provides_process(provider):
            continue
        try:
            reports.append(BusReport(name, bus=provider()))
        except Exception as exc:  # noqa: BLE001 - a process that cannot be built is what we report
            reports.append(BusReport(name, error=exc))
    return reports


def print_processes(reports: Iterable[BusReport], out: TextIO) -> None:
    """Write each process manager: what starts it, what it reacts to, its deadlines, what it may send."""
    for report in reports:
        if report.error is not None:
            out.write(f"{report.name}: cannot be built: {report.error}\n\n")
            continue
        manager = report.bus
        out.write(f"{report.name} (ProcessManager {manager.name!r})\n")
        for label, value in manager.describe().items():
            shown = ", ".join(value) if isinstance(value, list | tuple) else str(value)
            out.write(f"    {label}: {shown or 'none'}\n")
        out.write("\n")


def _named_providers(container: containers.Container, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, provider in container.providers.items():
        if isinstance(provider, providers.Container):
            yield from _named_providers(provider(), f"{prefix}{name}.")
        elif isinstance(provider, providers.DependenciesContainer):
            continue
        else:
            yield f"{prefix}{name}", provider


def _handler_name(value: object) -> str:
    if isinstance(value, providers.Provider):
        provides = getattr(value, "provides", None)
        target = _qualified(provides) if provides is not None else repr(value)
        return f"{target} (new per dispatch)"
    if isinstance(value, Mapping):  # an EventBus route: subscribers by name
        shown = []
        for name, item in value.items():
            target = _handler_name(item)
            shown.append(target if name == target else f"{name} ({target})")
        return ", ".join(shown) or "none"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ", ".join(_handler_name(item) for item in value) or "none"
    return _qualified(value)


def _behaviour_line(behaviour: object, message_type: type) -> str:
    name = type(behaviour).__name__ if not inspect.isfunction(behaviour) else behaviour.__qualname__
    describe = getattr(behaviour, "describe", None)
    if describe is None:
        return name
    settings: Mapping[str, object] = describe(message_type)
    if not settings:
        return name
    shown = ", ".join(f"{key}={_setting(value)}" for key, value in settings.items())
    return f"{name}({shown})"


_LONGEST_SETTING = 72


def _setting(value: object) -> str:
    if isinstance(value, type) or inspect.isfunction(value):
        return value.__qualname__
    text = value if isinstance(value, str) else str(value)
    # Only an object's own repr is cut short (its start says what it is); a setting in words, such as
    # an authorization rule, is the point of the listing and is shown whole.
    if text.startswith("<") and len(text) > _LONGEST_SETTING:
        text = text[: _LONGEST_SETTING - 3] + "..."
    return repr(text) if isinstance(value, str) else text


def _chain(bus: Any, message_type: type) -> tuple[object, ...]:
    behaviours_for = getattr(bus, "behaviours_for", None)
    if behaviours_for is None:
        return tuple(getattr(bus, "behaviours", ()))
    chain: tuple[object, ...] = behaviours_for(message_type)
    return chain


def print_routes(reports: Iterable[BusReport], out: TextIO) -> None:
    """Write every route of every bus: the handler, then the behaviours outermost first."""
    for report in reports:
        if report.error is not None:
            out.write(f"{report.name}: cannot be built: {report.error}\n\n")
            continue
        bus = report.bus
        routes: Mapping[type, object] = bus.routes
        noun = "route" if len(routes) == 1 else "routes"
        out.write(f"{report.name} ({type(bus).__name__}, {len(routes)} {noun})\n")
        for message_type in sorted(routes, key=_qualified):
            out.write(f"  {_qualified(message_type)}\n")
            route = routes[message_type]
            label = "subscribers" if isinstance(route, Mapping | Sequence) else "handler"
            out.write(f"    {label}: {_handler_name(route)}\n")
            chain = _chain(bus, message_type)
            if not chain:
                out.write("    behaviours: none\n")
                continue
            out.write("    behaviours (outermost first):\n")
            out.writelines(
                f"      {position}. {_behaviour_line(behaviour, message_type)}\n"
                for position, behaviour in enumerate(chain, start=1)
            )
        out.write("\n")


def message_classes(module_names: Iterable[str]) -> list[type]:
    """Return the Command and Query subclasses defined in the named modules (not merely imported)."""
    found: list[type] = []
    for module_name in module_names:
        # By name: the user's modules, typed on the command line (tests/architecture.py allows it).
        module = importlib.import_module(module_name)
        found.extend(
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, (Command, Query))
            and value not in (Command, Query, Message)
            and value.__module__ == module.__name__
        )
    return sorted(found, key=_qualified)


def _is_authorization(behaviour: object) -> bool:
    # By name as well as by type: the inspector must not need cqrskit.behaviours (or its extras) to
    # recognise an Authorization, and a subclass named otherwise is still found through its bases.
    return any(cls.__name__ == "Authorization" for cls in type(behaviour).__mro__)


def _missing_rule(authorization: object, message_type: type) -> str | None:
    """Return why `message_type` lacks a rule of its own on `authorization`, or None when it has one."""
    rules = getattr(authorization, "_rules", getattr(authorization, "rules", None))
    if not isinstance(rules, Mapping) or message_type in rules:
        return None
    rule_for = getattr(authorization, "rule_for", None)
    fallback = rule_for(message_type) if rule_for is not None else None
    describe = getattr(fallback, "describe", None)
    text = describe() if describe is not None else "denied to everyone"
    if text == "denied to everyone":
        return "it is denied to everyone"
    return f"the default rule applies: {text}"


def check(reports: Sequence[BusReport], module_names: Iterable[str] = ()) -> list[str]:
    """Return one line per wiring problem; an empty list means the container is sound.

    Problems: a bus that cannot be built (Retry inside Transaction, a bad mapping), a command bus
    without Authorization, a message on a bus with Authorization but no rule of its own (it would be
    denied to everyone), and a Command or Query subclass defined in `module_names` that no bus routes.
    """
    problems: list[str] = []
    routed: set[type] = set()
    for report in reports:
        if report.error is not None:
            kind = "wiring" if isinstance(report.error, ConfigurationError) else type(report.error).__name__
            problems.append(f"{report.name}: cannot be built ({kind}): {report.error}")
            continue
        bus = report.bus
        routes: Mapping[type, object] = bus.routes
        routed.update(routes)
        authorizations = [b for b in getattr(bus, "behaviours", ()) if _is_authorization(b)]
        if isinstance(bus, CommandBus) and not authorizations:
            problems.append(
                f"{report.name}: a command bus without Authorization lets every caller run every command"
            )
        for authorization in authorizations:
            for message_type in sorted(routes, key=_qualified):
                why = _missing_rule(authorization, message_type)
                if why is not None:
                    problems.append(
                        f"{report.name}: {_qualified(message_type)} has no authorization rule ({why})"
                    )
    problems.extend(
        f"{_qualified(message_type)} has no route on any bus"
        for message_type in message_classes(module_names)
        if message_type not in routed
    )
    return problems
