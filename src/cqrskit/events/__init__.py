"""Domain events, and scaling out across processes with an outbox, a broker and an inbox.

`Event`, `EventBus`, `EventPublisher`, `InProcessPublisher`, `CommandSender`, `Transport`,
`Delivery` and `Envelope` need nothing beyond cqrskit itself. `OutboxPublisher`, `OutboxRelay`,
`Consumer` and `create_event_tables` need SQLAlchemy (extra ``postgres`` or ``sqlalchemy``), and
`RabbitMQTransport` needs aio-pika (extra ``rabbitmq``); they are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cqrskit._lazy import lazy_exports
from cqrskit.events._bus import EventBus
from cqrskit.events._envelope import Envelope
from cqrskit.events._event import Event, message_name
from cqrskit.events._publishers import EventPublisher, InProcessPublisher
from cqrskit.events._sender import CommandSender
from cqrskit.events._transport import Delivery, Transport

if TYPE_CHECKING:
    from cqrskit.events._consumer import Consumer
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
    "InProcessPublisher",
    "OutboxPublisher",
    "OutboxRelay",
    "RabbitMQTransport",
    "Transport",
    "create_event_tables",
    "message_name",
]

_LAZY = {
    "Consumer": "cqrskit.events._consumer",
    "OutboxPublisher": "cqrskit.events._outbox",
    "OutboxRelay": "cqrskit.events._relay",
    "RabbitMQTransport": "cqrskit.events._rabbitmq",
    "create_event_tables": "cqrskit.events._tables",
}


__getattr__ = lazy_exports(__name__, _LAZY)
