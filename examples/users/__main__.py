"""Serve the user service with uvicorn: ``python -m examples.users [--port 8000] [--workers 1]``."""

from __future__ import annotations

import argparse

import uvicorn


def main() -> None:
    """Run the service until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m examples.users", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="several need PostgreSQL and Redis")
    arguments = parser.parse_args()
    uvicorn.run(
        "examples.users.app:create_app",
        factory=True,
        host=arguments.host,
        port=arguments.port,
        workers=arguments.workers,
        access_log=False,
    )


if __name__ == "__main__":
    main()
