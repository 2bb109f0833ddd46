"""cqrskit's own loggers: structlog's, quiet below warning until you configure structlog.

structlog prints every level when nobody has configured it, so a library that logs its debug and info
events through the default would print them on every request of a service whose own logging runs at
warning. `library_logger` gives cqrskit's components a logger that, while ``structlog.is_configured()``
is False, drops everything below warning; from the first ``structlog.configure(...)`` call on (even
``structlog.configure()`` with no arguments, and `structlog.testing.capture_logs`), it is structlog's
own lazy logger and follows your configuration entirely.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["LibraryLogger", "library_logger"]

_WARNING_AND_UP = structlog.make_filtering_bound_logger(logging.WARNING)


class LibraryLogger:
    """A logger for one of cqrskit's names: structlog's when configured, warnings and up until then.

    Like the proxy ``structlog.get_logger()`` returns, it is resolved on each use, so configuration
    done after a bus was built applies to it.
    """

    __slots__ = ("_configured", "_name", "_quiet")

    def __init__(self, name: str) -> None:
        self._name = name
        self._configured: Any = structlog.get_logger(name)
        # The same processors and logger factory as structlog's default, filtered at warning.
        self._quiet: Any = structlog.wrap_logger(
            None, wrapper_class=_WARNING_AND_UP, logger_factory_args=(name,)
        )

    @property
    def name(self) -> str:
        """The logger's name, such as ``"cqrskit.cache"``."""
        return self._name

    def bind(self, **values: Any) -> Any:
        """Return a bound logger as structlog is configured now (quiet below warning if it is not)."""
        return (self._configured if structlog.is_configured() else self._quiet).bind(**values)

    def __getattr__(self, method: str) -> Any:
        # debug, info, warning, error, exception, is_enabled_for, ...: asked of the logger as of now.
        return getattr(self.bind(), method)

    def __repr__(self) -> str:
        return f"library_logger({self._name!r})"


def library_logger(name: str) -> LibraryLogger:
    """Return cqrskit's logger called `name` (see the module's docstring for when it is quiet)."""
    return LibraryLogger(name)
