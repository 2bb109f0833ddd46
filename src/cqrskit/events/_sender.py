"""`CommandSender`: fire-and-forget commands to worker processes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import cattrs

from cqrskit._context import Context
from cqrskit._messages import Command
from cqrskit.events._envelope import envelope_for

if TYPE_CHECKING:
    from cqrskit.events._transport import Transport

__all__ = ["CommandSender"]


class CommandSender:
    """Posts commands to the broker for a worker process, whose `Consumer` runs them into a `CommandBus`.

    ``await sender.send(command, context)`` returns once the broker has confirmed the message; the
    command's `Result` never comes back (fire-and-forget). On the worker, a failure is logged and,
    after the consumer's retries, the message is dead-lettered. The worker's queue must exist
    (its consumer has started once) before you send, or the broker drops the message. To send a
    command only when your own transaction commits, publish an event through the outbox instead
    and have the worker subscribe to it.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        names: Mapping[type, str] | None = None,
        converter: cattrs.Converter | None = None,
    ) -> None:
        self._transport = transport
        self._names = names
        self._converter = converter

    async def send(self, command: Command[Any], context: Context | None = None) -> str:
        """Send `command` with the caller's principal and correlation id; return its message id."""
        envelope = envelope_for(command, context, converter=self._converter, names=self._names)
        await self._transport.publish([envelope])
        return envelope.message_id

    def __repr__(self) -> str:
        return f"CommandSender({self._transport!r})"
