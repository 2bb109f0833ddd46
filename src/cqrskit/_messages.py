"""The two kinds of message: commands change state, queries read it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

__all__ = ["Command", "Message", "Query", "StreamQuery"]

R_co = TypeVar("R_co", covariant=True)

_NO_ERRORS: Mapping[str, str] = {}


class Message(Generic[R_co]):
    """Base of every message; `R_co` is what its handler returns.

    You do not subclass this directly: subclass `Command` or `Query`.
    """

    __slots__ = ()

    def validate(self) -> Mapping[str, str]:
        """Return field name to error text for every invalid field; empty means valid.

        Override it on your message class; the `Validation` behaviour calls it.
        """
        return _NO_ERRORS


class Command(Message[R_co]):
    """A request to change state, answered by exactly one handler.

    Subclass it as a frozen attrs class; the type argument is what the handler returns::

        @attrs.frozen
        class CreateUser(Command[UUID]):
            email: str
    """

    __slots__ = ()


class Query(Message[R_co]):
    """A request to read state, answered by exactly one handler without side effects.

    Subclass it as a frozen attrs class; the type argument is what the handler returns::

        @attrs.frozen
        class GetUser(Query[UserDto]):
            user_id: UUID
    """

    __slots__ = ()


class StreamQuery(Message[R_co]):
    """A request to read many items that its handler yields one by one instead of returning them all.

    Subclass it as a frozen attrs class; the type argument is the type of one item. Its handler's
    ``handle`` is an async generator, and you run it with ``await query_bus.stream(query, context)``,
    which gives a `Result` whose data is a `Stream` of items::

        @attrs.frozen
        class ExportUsers(StreamQuery[UserDto]):
            pass
    """

    __slots__ = ()
