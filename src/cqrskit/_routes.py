"""Joining the handler maps of several feature modules into one."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from cqrskit._errors import ConfigurationError

__all__ = ["merge_routes"]


def merge_routes(*mappings: Mapping[type[Any], object]) -> Mapping[type, object]:
    """Return one read-only handler map holding every route of `mappings`.

    A message type mapped by two of them is a `ConfigurationError`: a route is declared once. In a
    container::

        handlers = providers.Callable(merge_routes, users.routes, orders.routes)
    """
    merged: dict[type, object] = {}
    for mapping in mappings:
        for message_type, handler in mapping.items():
            if message_type in merged:
                raise ConfigurationError(
                    f"{getattr(message_type, '__qualname__', message_type)} is routed twice: "
                    f"to {merged[message_type]!r} and to {handler!r}"
                )
            merged[message_type] = handler
    return MappingProxyType(merged)
