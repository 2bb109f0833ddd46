"""`Event`: the base class of domain events, and the names events travel under."""

from __future__ import annotations

from collections.abc import Mapping

from cqrskit._messages import Message
from cqrskit._results import AffectedEntity

__all__ = ["Event", "message_name"]


class Event(Message[None]):
    """Something that happened; subscribers react to it and return nothing.

    Subclass it as a frozen attrs class::

        @attrs.frozen
        class UserCreated(Event):
            user_id: str
            email: str

            def ordering_key(self) -> str:
                return f"user:{self.user_id}"

    Events with the same `ordering_key` leave the outbox in the order their transactions committed.
    """

    __slots__ = ()

    def ordering_key(self) -> str | AffectedEntity | None:
        """Return the aggregate key whose events must stay in order, or None when order does not matter.

        Override it; an `AffectedEntity` counts as the key ``"<kind>:<id>"``. The default, None,
        lets relays publish the event in any order relative to others.
        """
        return None


def key_text(key: str | AffectedEntity | None) -> str | None:
    """Return the ordering key as text (``"kind:id"`` for an `AffectedEntity`)."""
    if key is None or isinstance(key, str):
        return key
    return f"{key.kind}:{key.id}"


def message_name(message_type: type, names: Mapping[type, str] | None = None) -> str:
    """Return the name `message_type` travels under: its entry in `names`, else its class name.

    The name is the broker's routing key and what a `Consumer`'s ``types`` mapping is keyed by.
    """
    if names is not None:
        name = names.get(message_type)
        if name is not None:
            return name
    return message_type.__name__
