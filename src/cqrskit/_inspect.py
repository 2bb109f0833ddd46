"""The route inspector behind ``python -m cqrskit routes|check``.

It builds the buses a dependency-injector container declares, prints every route with its handler and
behaviour chain, and finds wiring problems a bus cannot see on its own: message classes nobody routes,
a command bus without authorization, a message without an authorization rule, a setting (rule, cache
policy, timeout, retry policy, isolation level) for a type no bus routes, and a command whose handler
cannot report what it changed on a bus that invalidates a cache.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TextIO

import attrs
from dependency_injector import containers, providers

from cqrskit._bus import CommandBus
from cqrskit._errors import ConfigurationError
from cqrskit._messages import Command, Message, Query
from cqrskit._names import qualified_name
from cqrskit._pipeline import BehaviourOrderError
from cqrskit._results import Result

__all__ = [
    "BusReport",
    "build_error",
    "check",
    "container_messages",
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
            out.write(f"{build_error(report)}\n\n")
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


def build_error(report: BusReport) -> str:
    """Say in one sentence why the bus of `report` cannot be built, naming it by its provider."""
    error = report.error
    if isinstance(error, BehaviourOrderError):
        reason = error.sentence(report.name)
    elif isinstance(error, ConfigurationError):
        reason = str(error)
    else:
        reason = f"{type(error).__name__}: {error}"
    return f"{report.name} cannot be built: {reason}"


def _is_message_class(value: object) -> bool:
    return (
        isinstance(value, type)
        and issubclass(value, (Command, Query))
        and value not in (Command, Query, Message)
        and not value.__module__.startswith("cqrskit.")
        and not getattr(value, "__parameters__", ())  # a generic base of messages, not a message
    )


def message_classes(module_names: Iterable[str]) -> list[type]:
    """Return the Command and Query subclasses defined in the named modules (not merely imported)."""
    found: list[type] = []
    for module_name in module_names:
        # By name: the user's modules, typed on the command line (tests/architecture.py allows it).
        module = importlib.import_module(module_name)
        found.extend(
            value
            for value in vars(module).values()
            if _is_message_class(value) and value.__module__ == module.__name__
        )
    return sorted(found, key=_qualified)


def container_messages(module_name: str) -> list[type]:
    """Return the message classes the container's module knows of, for `check` to find unrouted ones.

    Those it defines or imports, and every other Command or Query subclass defined in the modules those
    come from: a new command written next to the others in ``messages.py`` is found even when nobody
    imported it into the container's module, which is the usual way to forget its route.
    """
    module = sys.modules.get(module_name)  # imported by `load_container`
    if module is None:
        return []
    seen = [value for value in vars(module).values() if _is_message_class(value)]
    sources = {value.__module__ for value in seen} - {module_name}
    found = {*seen, *message_classes(sorted(sources))}
    return sorted(found, key=_qualified)


def _is_authorization(behaviour: object) -> bool:
    # By name as well as by type: the inspector must not need cqrskit.behaviours (or its extras) to
    # recognise an Authorization, and a subclass named otherwise is still found through its bases.
    return _named(behaviour, "Authorization")


def _named(behaviour: object, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(behaviour).__mro__)


def _missing_rule(authorization: object, message_type: type) -> str | None:
    """Return why `message_type` lacks a rule of its own on `authorization`, or None when it has one."""
    configured = getattr(authorization, "configured_types", None)
    if configured is None or message_type in configured:
        return None
    rule_for = getattr(authorization, "rule_for", None)
    fallback = rule_for(message_type) if rule_for is not None else None
    describe = getattr(fallback, "describe", None)
    text = describe() if describe is not None else "denied to everyone"
    if text == "denied to everyone":
        return "it is denied to everyone"
    return f"the default rule applies: {text}"


# What each behaviour's per-message table holds, to name it in a problem.
_SETTINGS = {
    "Authorization": "an authorization rule",
    "QueryCache": "a cache policy",
    "Timeout": "a timeout",
    "Retry": "a retry policy",
    "Transaction": "an isolation level",
}


def _setting_name(behaviour: object) -> str:
    for cls in type(behaviour).__mro__:
        if cls.__name__ in _SETTINGS:
            return _SETTINGS[cls.__name__]
    return "a setting"


def _handler_class(route: object) -> type | None:
    """Return the class whose ``handle`` serves `route` (the object's, or the provider's product)."""
    value: object = route
    for _ in range(4):  # a Delegate (``.provider``) wraps a Factory, which names the class
        provides = getattr(value, "provides", None)
        if provides is None or isinstance(value, type):
            break
        value = provides
    if isinstance(value, type):
        return value
    if inspect.isfunction(value) or inspect.ismethod(value) or value is None:
        return None  # a factory function: what it returns is not known before it runs
    return type(value)


def _cannot_report(handler: type) -> str | None:
    """Say why `handler`'s results cannot carry affected entities, or None when they can."""
    handle = getattr(handler, "handle", None)
    if handle is None:
        return None
    try:
        returned = typing.get_type_hints(handle).get("return", inspect.Signature.empty)
    except (NameError, TypeError, AttributeError):
        text = str(inspect.signature(handle).return_annotation)
        return None if text.startswith("Result") or ".Result" in text else f"returns {text}"
    if returned is inspect.Signature.empty:
        return "has no return annotation"
    if returned is Result or typing.get_origin(returned) is Result:
        return None
    return f"returns {_type_text(returned)}, not a Result"


def _type_text(value: object) -> str:
    if value is type(None):
        return "None"
    return value.__qualname__ if isinstance(value, type) else str(value).replace("typing.", "")


def check(
    reports: Sequence[BusReport], module_names: Iterable[str] = (), messages: Iterable[type] = ()
) -> list[str]:
    """Return one line per wiring problem; an empty list means the container is sound.

    Problems: a bus that cannot be built (Retry inside Transaction, a bad mapping), a command bus
    without Authorization, a message on a bus with Authorization but no rule of its own (it would be
    denied to everyone), a rule, cache policy, timeout, retry policy or isolation level for a type no
    bus routes, a command on a bus with CacheInvalidation whose handler is not declared to return a
    `Result` (so it cannot report what it changed), and a message class in `messages` or defined in
    `module_names` that no bus routes.
    """
    problems: list[str] = []
    routed: set[type] = set()
    built = [report for report in reports if report.error is None]
    problems.extend(build_error(report) for report in reports if report.error is not None)
    for report in built:
        routed.update(report.bus.routes)
    for report in built:
        bus = report.bus
        routes: Mapping[type, object] = bus.routes
        behaviours = tuple(getattr(bus, "behaviours", ()))
        authorizations = [b for b in behaviours if _is_authorization(b)]
        if isinstance(bus, CommandBus) and not authorizations:
            problems.append(
                f"{report.name}: a command bus without Authorization lets every caller run every "
                "command; add Authorization(rules={...}) to its behaviours"
            )
        for authorization in authorizations:
            for message_type in sorted(routes, key=_qualified):
                why = _missing_rule(authorization, message_type)
                if why is not None:
                    problems.append(
                        f"{report.name}: {_qualified(message_type)} has no authorization rule ({why}); "
                        "add one to the rules"
                    )
        if len(built) == len(reports):
            problems.extend(_unrouted_settings(report.name, behaviours, routed))
        problems.extend(_silent_commands(report.name, bus, routes))
    if len(built) < len(reports):
        # What the broken bus would route is unknown: saying "no route" for its types would mislead.
        return problems
    found = {*messages, *message_classes(module_names)}
    problems.extend(
        f"{_qualified(message_type)} has no route on any bus: add it to a bus's handlers"
        for message_type in sorted(found, key=_qualified)
        if message_type not in routed
    )
    return problems


def _unrouted_settings(bus_name: str, behaviours: Sequence[object], routed: set[type]) -> Iterator[str]:
    for behaviour in behaviours:
        configured = getattr(behaviour, "configured_types", None)
        if not configured:
            continue
        for message_type in sorted(set(configured) - routed, key=_qualified):
            yield (
                f"{bus_name}: {type(behaviour).__name__} has {_setting_name(behaviour)} for "
                f"{_qualified(message_type)}, which no bus routes: route it, or remove the entry"
            )


def _silent_commands(bus_name: str, bus: Any, routes: Mapping[type, object]) -> Iterator[str]:
    for message_type in sorted(routes, key=_qualified):
        if not any(_named(b, "CacheInvalidation") for b in _chain(bus, message_type)):
            continue
        handler = _handler_class(routes[message_type])
        why = None if handler is None else _cannot_report(handler)
        if why is not None and handler is not None:
            yield (
                f"{bus_name}: {_qualified(message_type)}'s handler {handler.__qualname__}.handle {why}, "
                "so it reports no affected entities and CacheInvalidation drops nothing after it; "
                "return Result.success(value, affected_entities=[AffectedEntity(kind, id, change)]) "
                "(Result[None] for a command that changes nothing cached)"
            )
