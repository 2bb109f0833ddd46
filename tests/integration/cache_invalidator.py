"""Run as a separate process by the Redis cache tests: invalidate one entity through a real CommandBus.

Usage: ``python tests/integration/cache_invalidator.py REDIS_URL NAMESPACE KIND ID``
"""

from __future__ import annotations

import asyncio
import sys

import attrs

from cqrskit import AffectedEntity, Command, CommandBus, Context, Result
from cqrskit.caching import CacheInvalidation, redis_cache


@attrs.frozen
class Touch(Command[None]):
    kind: str
    id: str


class TouchHandler:
    async def handle(self, command: Touch, context: Context) -> Result[None]:
        return Result.success(None, affected_entities=[AffectedEntity(command.kind, command.id, "updated")])


async def main(url: str, namespace: str, kind: str, entity_id: str) -> None:
    cache = redis_cache(url, namespace=namespace)
    try:
        bus = CommandBus({Touch: TouchHandler()}, [CacheInvalidation(cache)])
        result = await bus.execute(Touch(kind, entity_id))
        result.unwrap()
    finally:
        await cache.close()
    print("invalidated", kind, entity_id)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
