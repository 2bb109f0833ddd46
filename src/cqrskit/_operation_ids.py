"""Operation ids: unique across processes and restarts, cheap to make.

Each process draws a random prefix once (and again in a forked child), then counts. Making an id is one
`next()` and one string join: no `uuid4()` per dispatch.
"""

from __future__ import annotations

import itertools
import os
import secrets

__all__ = ["new_operation_id"]


def _fresh_prefix() -> str:
    # 64 random bits: two processes draw the same prefix with negligible probability.
    return secrets.token_hex(8) + "-"


_prefix = _fresh_prefix()
_counter = itertools.count(1)


def new_operation_id() -> str:
    """Return an id no other dispatch, in this or any other process, has had."""
    return _prefix + str(next(_counter))


def _reseed() -> None:
    global _prefix, _counter  # noqa: PLW0603 - a forked child must not repeat its parent's ids
    _prefix = _fresh_prefix()
    _counter = itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)
