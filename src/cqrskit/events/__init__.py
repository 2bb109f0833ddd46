"""Domain events, and scaling out across processes with an outbox, a broker and an inbox.

`Event`, `EventBus`, `EventPublisher`, `InProcessPublisher`, `CommandSender`, `Transport`,
`Delivery` and `Envelope` need nothing beyond cqrskit itself. `OutboxPublisher`, `OutboxRelay`,
`Consumer`, `LocalTransport`, `Idempotency` and `create_event_tables` need SQLAlchemy (extra ``postgres`` or
``sqlalchemy``), `RabbitMQTransport` needs aio-pika (extra ``rabbitmq``) and `NatsTransport`
nats-py (extra ``nats``); they are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cqrskit.events._bus import EventBus
from cqrskit.events._envelope import Envelope
from cqrskit.events._event import Event, message_name
from cqrskit.events._publishers import EventPublisher, InProcessPublisher
from cqrskit.events._sender import CommandSender
from cqrskit.events._transport import Delivery, Transport

if TYPE_CHECKING:
    from cqrskit.events._consumer import Consumer
    from cqrskit.events._idempotency import Idempotency
    from cqrskit.events._local import LocalTransport
    from cqrskit.events._nats import NatsTransport
    from cqrskit.events._outbox import OutboxPublisher
    from cqrskit.events._rabbitmq import RabbitMQTransport
    from cqrskit.events._relay import OutboxRelay
    from cqrskit.events._tables import create_event_tables

__all__ = [
    "CommandSender",
    "Consumer",
    "Delivery",
    "Envelope",
    "Event",
    "EventBus",
    "EventPublisher",
    "Idempotency",
    "InProcessPublisher",
    "LocalTransport",
    "NatsTransport",
    "OutboxPublisher",
    "OutboxRelay",
    "RabbitMQTransport",
    "Transport",
    "create_event_tables",
    "message_name",
]


def __getattr__(name: str) -> object:  # noqa: PLR0911 - one return per lazily imported name
    """Import the parts that need an optional extra (SQLAlchemy, aio-pika, nats-py) on first use."""
    # Plain import statements, not importlib strings: the import graph stays readable by tools.
    if name == "Consumer":
        from cqrskit.events._consumer import Consumer

        return Consumer
    if name == "Idempotency":
        from cqrskit.events._idempotency import Idempotency

        return Idempotency
    if name == "LocalTransport":
        from cqrskit.events._local import LocalTransport

        return LocalTransport
    if name == "NatsTransport":
        from cqrskit.events._nats import NatsTransport

        return NatsTransport
    if name == "OutboxPublisher":
        from cqrskit.events._outbox import OutboxPublisher

        return OutboxPublisher
    if name == "OutboxRelay":
        from cqrskit.events._relay import OutboxRelay

        return OutboxRelay
    if name == "RabbitMQTransport":
        from cqrskit.events._rabbitmq import RabbitMQTransport

        return RabbitMQTransport
    if name == "create_event_tables":
        from cqrskit.events._tables import create_event_tables

        return create_event_tables
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
