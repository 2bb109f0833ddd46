"""Serve the user service with uvicorn: ``python -m examples.users [--port 8000] [--workers 1]``.

With ``USERS_BROKER_URL`` set (``amqp://...`` for RabbitMQ or ``nats://...`` for NATS JetStream) it
also starts the events worker, ``python -m examples.users.worker``, and stops it when the server ends.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import uvicorn


def main() -> None:
    """Run the service until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m examples.users", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="several need PostgreSQL and Redis")
    arguments = parser.parse_args()
    worker = None
    if os.environ.get("USERS_BROKER_URL"):
        worker = subprocess.Popen([sys.executable, "-m", "examples.users.worker"])
    try:
        uvicorn.run(
            "examples.users.app:create_app",
            factory=True,
            host=arguments.host,
            port=arguments.port,
            workers=arguments.workers,
            access_log=False,
        )
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)


if __name__ == "__main__":
    main()
