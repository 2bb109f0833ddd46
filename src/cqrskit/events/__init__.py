"""Domain events, and scaling out across processes with an outbox, a broker and an inbox.

`Event`, `EventBus`, `EventPublisher`, `InProcessPublisher`, `CommandSender`, `Transport`,
`Delivery`, `Envelope`, `DeadLetter`, `DeadLetters`, `DeadLetterHook` and `Observer` need nothing
beyond cqrskit itself. `OutboxPublisher`, `OutboxRelay`, `OutboxBacklog`, `Consumer`, `LocalTransport`,
`Idempotency`, `create_event_tables`, `CommandScheduler`, `ScheduleRunner` and `ScheduleForwarder`
need SQLAlchemy (extra ``postgres`` or ``sqlalchemy``), `RabbitMQTransport` needs aio-pika (extra
``rabbitmq``), `NatsTransport` nats-py (extra ``nats``) and `EventMetrics` prometheus-client (extra
``prometheus``); they are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cqrskit.events._bus import EventBus
from cqrskit.events._dead_letter_hooks import DeadLetterHook
from cqrskit.events._dead_letters import DeadLetter, DeadLetters
from cqrskit.events._envelope import Envelope
from cqrskit.events._event import Event, message_name
from cqrskit.events._observer import NO_OBSERVER, Observer
from cqrskit.events._publishers import EventPublisher, InProcessPublisher
from cqrskit.events._sender import CommandSender
from cqrskit.events._transport import Delivery, Transport

if TYPE_CHECKING:
    from cqrskit.events._consumer import Consumer
    from cqrskit.events._due_commands import ScheduleForwarder, ScheduleRunner
    from cqrskit.events._idempotency import Idempotency
    from cqrskit.events._local import LocalTransport
    from cqrskit.events._metrics import EventMetrics
    from cqrskit.events._nats import NatsTransport
    from cqrskit.events._outbox import OutboxPublisher
    from cqrskit.events._rabbitmq import RabbitMQTransport
    from cqrskit.events._relay import OutboxBacklog, OutboxRelay
    from cqrskit.events._scheduling import CommandScheduler
    from cqrskit.events._tables import create_event_tables

__all__ = [
    "NO_OBSERVER",
    "CommandScheduler",
    "CommandSender",
    "Consumer",
    "DeadLetter",
    "DeadLetterHook",
    "DeadLetters",
    "Delivery",
    "Envelope",
    "Event",
    "EventBus",
    "EventMetrics",
    "EventPublisher",
    "Idempotency",
    "InProcessPublisher",
    "LocalTransport",
    "NatsTransport",
    "Observer",
    "OutboxBacklog",
    "OutboxPublisher",
    "OutboxRelay",
    "RabbitMQTransport",
    "ScheduleForwarder",
    "ScheduleRunner",
    "Transport",
    "create_event_tables",
    "message_name",
]


def __getattr__(name: str) -> object:  # noqa: PLR0911 - one return per lazily imported name
    """Import the parts that need an optional extra (SQLAlchemy, aio-pika, nats-py) on first use."""
    # Plain import statements, not importlib strings: the import graph stays readable by tools.
    if name == "CommandScheduler":
        from cqrskit.events._scheduling import CommandScheduler

        return CommandScheduler
    if name in ("ScheduleForwarder", "ScheduleRunner"):
        from cqrskit.events import _due_commands

        return getattr(_due_commands, name)
    if name == "Consumer":
        from cqrskit.events._consumer import Consumer

        return Consumer
    if name == "Idempotency":
        from cqrskit.events._idempotency import Idempotency

        return Idempotency
    if name == "EventMetrics":
        from cqrskit.events._metrics import EventMetrics

        return EventMetrics
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
    if name == "OutboxBacklog":
        from cqrskit.events._relay import OutboxBacklog

        return OutboxBacklog
    if name == "RabbitMQTransport":
        from cqrskit.events._rabbitmq import RabbitMQTransport

        return RabbitMQTransport
    if name == "create_event_tables":
        from cqrskit.events._tables import create_event_tables

        return create_event_tables
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
