"""The errors `cqrskit.fastapi` raises when a request body cannot become a message."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cqrskit._errors import CqrsKitError

__all__ = ["PayloadError", "PayloadTooLargeError"]


class PayloadError(CqrsKitError, ValueError):
    """A request body could not become a message; `errors` maps each field path to what is wrong.

    Field paths name nested fields with dots and list items with indexes (``"address.zip"``,
    ``"items[2].name"``); ``"$"`` (`WHOLE_BODY`) stands for the body as a whole. `cqrskit.fastapi`
    answers it with a 422 problem.
    """

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__(dict(errors))
        self.errors: Mapping[str, str] = MappingProxyType(dict(errors))


class PayloadTooLargeError(CqrsKitError, ValueError):
    """A request body is longer than the `limit` in bytes the endpoint accepts (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is longer than {limit} bytes")
        self.limit = limit
