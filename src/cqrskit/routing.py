"""One declaration per message: its handler with its rule, cache policy, timeout, retry and isolation.

A `Route` is plain data; `Routes` is an ordered, checked collection of them from which you derive the
handler map a bus takes and the per-message table each behaviour takes. Nothing registers itself:
the routes are a value in your container module, and the buses and behaviours are still built from
explicit tables, which you may keep writing by hand instead.

This module sits above `cqrskit.behaviours` and `cqrskit.caching` (it names their settings' types)
and names no integration: an isolation level is a string that you hand to
``cqrskit.sqlalchemy.Transaction(isolation=routes.isolation())``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from cqrskit._errors import ConfigurationError
from cqrskit._messages import Command, Query, StreamQuery
from cqrskit._names import qualified_name
from cqrskit.behaviours._authorization_rules import AuthorizationRule
from cqrskit.behaviours._retry import RetryPolicy
from cqrskit.caching._policy import CachePolicy

__all__ = ["Route", "Routes"]


@attrs.frozen
class Route:
    """Everything about one message type, in one place.

    `handler` is what the bus's handler map holds for `message` (in a container, usually
    ``providers.Factory(Handler, ...)``, or ``providers.Factory(...).provider`` for a handler built
    per dispatch). The others are optional and go to the behaviour that reads them:

    - `rule`: the `Authorization` rule (``RequirePermissions("user:create")``);
    - `cache`: the `QueryCache` policy, queries only;
    - `timeout`: seconds for `Timeout` (None: the behaviour's default);
    - `retry`: the `Retry` policy (None: the behaviour's default);
    - `isolation`: the `Transaction` isolation level, commands only (``"SERIALIZABLE"``).
    """

    message: type
    handler: object
    rule: AuthorizationRule | None = None
    cache: CachePolicy[Any] | None = None
    timeout: float | None = None
    retry: RetryPolicy | None = None
    isolation: str | None = None

    def __attrs_post_init__(self) -> None:
        message: Any = self.message  # checked at run time: a container may hand anything in
        if not (isinstance(message, type) and issubclass(message, Command | Query | StreamQuery)):
            raise ConfigurationError(
                f"a Route's message is a Command, Query or StreamQuery subclass, not {message!r}"
            )
        name = qualified_name(message)
        if self.cache is not None and not issubclass(message, Query):
            raise ConfigurationError(f"{name} is not a Query: only a query's Route takes a cache policy")
        if self.isolation is not None and not issubclass(message, Command):
            raise ConfigurationError(f"{name} is a query: only a command's Route takes an isolation level")
        timeout: object = self.timeout  # checked at run time: the annotation is what a checker enforces
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise ConfigurationError(f"the timeout of {name}'s Route is positive seconds, got {timeout!r}")
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise ConfigurationError(f"the retry of {name}'s Route is a RetryPolicy, got {self.retry!r}")
        if self.cache is not None and not isinstance(self.cache, CachePolicy):
            raise ConfigurationError(f"the cache of {name}'s Route is a CachePolicy, got {self.cache!r}")


class Routes:
    """The routes of one bus (or of several), each message type once, in the order given.

    Build the bus and its behaviours from it in your container::

        COMMANDS = Routes(
            Route(CreateUser, handler=providers.Factory(CreateUserHandler, users=users),
                  rule=RequirePermissions("user:create"), timeout=2.0, isolation="SERIALIZABLE"),
        )
        command_bus = providers.Singleton(
            CommandBus,
            handlers=providers.Dict(COMMANDS.handlers()),
            behaviours=providers.List(
                providers.Singleton(Timeout, per_message=COMMANDS.timeouts()),
                providers.Singleton(Authorization, rules=COMMANDS.rules()),
                providers.Singleton(Transaction, database=database, isolation=COMMANDS.isolation()),
            ),
        )

    A message type given twice is a `ConfigurationError`. ``Routes(*users, *orders)`` joins the routes
    of several feature modules.
    """

    __slots__ = ("_routes",)

    def __init__(self, *routes: Route) -> None:
        seen: set[type] = set()
        for route in routes:
            if not isinstance(route, Route):
                raise ConfigurationError(f"Routes takes Route(...) values, got {route!r}")
            if route.message in seen:
                raise ConfigurationError(
                    f"{qualified_name(route.message)} has two Routes: declare each message once"
                )
            seen.add(route.message)
        self._routes = routes

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def handlers(self) -> dict[type, object]:
        """Return the handler map: message type to handler (``providers.Dict(routes.handlers())``)."""
        return {route.message: route.handler for route in self._routes}

    def rules(self) -> dict[type, AuthorizationRule]:
        """Return `Authorization`'s rules: every route that has one."""
        return {route.message: route.rule for route in self._routes if route.rule is not None}

    def cache_policies(self) -> dict[type, CachePolicy[Any]]:
        """Return `QueryCache`'s policies: every query route that has one."""
        return {route.message: route.cache for route in self._routes if route.cache is not None}

    def timeouts(self) -> dict[type, float | None]:
        """Return `Timeout`'s ``per_message`` table: every route that sets its own seconds."""
        return {route.message: route.timeout for route in self._routes if route.timeout is not None}

    def retry_policies(self) -> dict[type, RetryPolicy]:
        """Return `Retry`'s ``per_message`` table: every route with a policy of its own."""
        return {route.message: route.retry for route in self._routes if route.retry is not None}

    def isolation(self) -> dict[type, str]:
        """Return `Transaction`'s ``isolation`` table: every command route with a level of its own."""
        return {route.message: route.isolation for route in self._routes if route.isolation is not None}

    def __repr__(self) -> str:
        return f"Routes({', '.join(qualified_name(route.message) for route in self._routes)})"
