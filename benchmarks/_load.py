"""A small HTTP/1.1 load generator for loopback benchmarks, run in its own process.

``python -m benchmarks._load HOST PORT METHOD PATH SECONDS CONCURRENCY [BODY_TEMPLATE]`` keeps
CONCURRENCY keep-alive connections busy for SECONDS and prints one JSON line: completed requests, the
status codes seen, and the elapsed time. A BODY_TEMPLATE may contain ``{n}``, replaced by a number no
other request of the run uses (for POSTs that must be unique). Plain asyncio streams, no HTTP library:
the generator must cost far less than the server it measures.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections import Counter


async def _worker(
    host: str,
    port: int,
    request_for: object,
    deadline: float,
    counts: Counter[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < deadline:
            writer.write(request_for())  # type: ignore[operator]
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            counts[status] += 1
    finally:
        writer.close()


async def run(
    host: str, port: int, method: str, path: str, *, seconds: float, concurrency: int, template: str | None
) -> dict[str, object]:
    """Load the server and return what happened."""
    numbers = itertools.count()
    prefix = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer admin-token\r\n"

    def request_for() -> bytes:
        if template is None:
            return (prefix + "\r\n").encode()
        body = template.replace("{n}", str(next(numbers))).encode()
        head = prefix + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    counts: Counter[int] = Counter()
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(*(_worker(host, port, request_for, deadline, counts) for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    return {"requests": sum(counts.values()), "statuses": dict(counts), "elapsed": elapsed}


def main() -> None:
    """Parse the arguments, run, print the JSON line."""
    host, port, method, path, seconds, concurrency, *rest = sys.argv[1:]
    template = rest[0] if rest else None
    outcome = asyncio.run(
        run(
            host,
            int(port),
            method,
            path,
            seconds=float(seconds),
            concurrency=int(concurrency),
            template=template,
        )
    )
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
