"""The ``user_stats`` read model, kept up with the user events by one projection in either mode.

- Embedded (the default): the command bus's `InProcessPublisher` hands the events to the event bus
  right after the command commits; `UserStatsProjection` sends `ApplyUserStatsChange` on the stats
  bus, whose `Transaction` opens a transaction of its own.
- Scaled out (``USERS_BROKER_URL``): the events go through the outbox and the broker to the worker's
  `Consumer`, which runs the same projection inside its transaction (with the inbox row); the stats
  bus's `Transaction` joins it as a savepoint.

Either way the stats bus's `CacheInvalidation` drops `GetUserStats`'s cached results once the
transaction that moved the counters has committed. The command's own invalidation could not do it:
it comes before the read model changed (in the scaled-out mode, long before).
"""

from __future__ import annotations

from cqrskit import AffectedEntity, CommandBus, Context, Principal, Result
from examples.users.events import UserCreated, UserDeleted, UserEvent
from examples.users.messages import ApplyUserStatsChange
from examples.users.repositories import UserStatsRepository

USER_STATS = "user_stats"
"""The entity kind the stats command reports, and `GetUserStats`'s cache tag."""

PROJECTION = Principal("users.user-stats-projection", permissions={"user_stats:write"})
"""Who the projection acts as: itself, not the caller whose command raised the event."""


def _activity(is_active: bool) -> str:
    return "active" if is_active else "inactive"


def stats_change(event: UserEvent) -> dict[str, int]:
    """Return how `event` moves the counters: counter name to delta, zero deltas left out."""
    changes: dict[str, int] = {}

    def add(counter: str, delta: int) -> None:
        changes[counter] = changes.get(counter, 0) + delta

    if isinstance(event, UserCreated):
        add(_activity(event.is_active), 1)
        add(f"role:{event.role}", 1)
    elif isinstance(event, UserDeleted):
        add(_activity(event.was_active), -1)
        add(f"role:{event.role}", -1)
    else:
        add(_activity(event.was_active), -1)
        add(_activity(event.is_active), 1)
        add(f"role:{event.previous_role}", -1)
        add(f"role:{event.role}", 1)
    return {counter: delta for counter, delta in changes.items() if delta}


class UserStatsProjection:
    """Event subscriber: moves the ``user_stats`` counters for each user event, through the stats bus.

    It sends `ApplyUserStatsChange` as the `PROJECTION` principal, in the event's correlation, and
    returns that command's Result: a failure makes the consumer roll back and retry (or dead-letter)
    the event. An event that moves no counter (a new name, say) sends nothing.
    """

    def __init__(self, stats_bus: CommandBus) -> None:
        self.stats_bus = stats_bus

    async def handle(self, event: UserEvent, context: Context) -> Result[None]:
        """Turn the event into counter deltas and apply them."""
        changes = stats_change(event)
        if not changes:
            return Result.success(None)
        own = Context(
            principal=PROJECTION, correlation_id=context.correlation_id, causation_id=context.operation_id
        )
        return await self.stats_bus.execute(ApplyUserStatsChange(tuple(sorted(changes.items()))), own)


class ApplyUserStatsChangeHandler:
    """Adds the deltas to the counters, in the open transaction; reports the read model as changed."""

    def __init__(self, stats: UserStatsRepository) -> None:
        self.stats = stats

    async def handle(self, command: ApplyUserStatsChange, context: Context) -> Result[None]:
        """Apply the deltas; `CacheInvalidation` turns the affected entity into a dropped cache tag."""
        await self.stats.apply(command.changes)
        return Result.success(None, affected_entities=[AffectedEntity(USER_STATS, "*", "updated")])


def stats_tags(query: object) -> list[tuple[str, object]]:
    """`GetUserStats`'s cache tag: the read model, which only the projection's commands invalidate."""
    return [(USER_STATS, "*")]
