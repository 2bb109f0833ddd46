"""Logging: the application configures structlog (cqrskit never does)."""

from __future__ import annotations

import logging
import sys

import structlog

from examples.users.settings import Settings


def configure_logging(settings: Settings) -> None:
    """Log one line per event to stderr: readable on a terminal, JSON when ``USERS_LOG_JSON=1``."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(settings.log_level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
