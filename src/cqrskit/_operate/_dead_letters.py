"""``python -m cqrskit dead-letters list|show|replay|purge``: dead letters from the command line."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from typing import TextIO

import structlog
from dependency_injector import containers

from cqrskit._operate._providers import ProcessNotStarted, provider_named
from cqrskit.events._dead_letters import DeadLetter


def dead_letter_json(dead: DeadLetter) -> dict[str, object]:
    """Return a dead letter as JSON-ready data: its id, name, reason, time, headers and payload."""
    envelope = dead.envelope
    try:
        payload: object = json.loads(envelope.payload)
    except ValueError:
        payload = envelope.payload.decode("utf-8", "replace")
    return {
        "message_id": envelope.message_id,
        "name": envelope.name,
        "queue": dead.queue,
        "reason": dead.reason,
        "dead_lettered_at": dead.dead_lettered_at,
        "headers": envelope.headers(),
        "payload": payload,
    }


async def dead_letters_command(  # noqa: PLR0911 - one exit per outcome
    container: containers.Container,
    action: str,
    *,
    queue: str | None,
    transport: str,
    consumer: str,
    message_ids: Sequence[str],
    names: Sequence[str],
    everything: bool,
    out: TextIO,
) -> int:
    """Run ``dead-letters list|show|replay|purge`` against the container's transport; return the status."""
    log = structlog.get_logger("cqrskit.dead_letters")
    try:
        store = provider_named(container, transport)()
        if queue is None:
            queue = provider_named(container, consumer)().queue
    except ProcessNotStarted as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if not all(hasattr(store, method) for method in ("dead_letters", "replay", "purge")):
        print(
            f"provider {transport!r} gives {type(store).__qualname__}, which keeps no dead letters",
            file=sys.stderr,
        )
        return 2
    assert queue is not None  # noqa: S101 - set above
    chosen_names = frozenset(names)

    def where(dead: DeadLetter) -> bool:
        return not chosen_names or dead.envelope.name in chosen_names

    ids = frozenset(message_ids) or None
    try:
        if action == "list":
            for dead in await store.dead_letters(queue):
                if (ids is None or dead.message_id in ids) and where(dead):
                    print(json.dumps(_summary(dead)), file=out)
            return 0
        if action == "show":
            shown = [d for d in await store.dead_letters(queue) if ids is None or d.message_id in ids]
            if not shown:
                print("no such dead letter", file=sys.stderr)
                return 1
            for dead in shown:
                print(json.dumps(dead_letter_json(dead), indent=2), file=out)
            return 0
        if ids is None and not chosen_names and not everything:
            print(f"{action} what? give --id, --name or --all", file=sys.stderr)
            return 2
        method = store.replay if action == "replay" else store.purge
        count = await method(queue, message_ids=ids, where=where if chosen_names else None)
        print(
            json.dumps({action + "ed" if action == "replay" else "purged": count, "queue": queue}), file=out
        )
        return 0
    finally:
        with contextlib.suppress(Exception):
            await store.close()
        log.debug("dead_letters_done", action=action)


def _summary(dead: DeadLetter) -> dict[str, object]:
    return {
        "message_id": dead.message_id,
        "name": dead.envelope.name,
        "key": dead.envelope.key,
        "reason": dead.reason,
        "dead_lettered_at": dead.dead_lettered_at,
        "correlation_id": dead.envelope.correlation_id,
    }
