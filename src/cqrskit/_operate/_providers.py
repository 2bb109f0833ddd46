"""Taking relays, consumers and other parts from the container by provider name."""

from __future__ import annotations

from typing import Any

from dependency_injector import containers


class ProcessNotStarted(Exception):  # noqa: N818 - a signal inside this package
    """A provider that is missing or provides the wrong thing: exit status 2."""


def provider_named(container: containers.Container, name: str) -> Any:
    """Return the provider `name` of `container`; `ProcessNotStarted` when it has none."""
    provider = getattr(container, name, None)
    if provider is None:
        raise ProcessNotStarted(f"the container has no provider named {name!r}")
    return provider
