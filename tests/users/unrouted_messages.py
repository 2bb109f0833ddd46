"""A message module for the inspector's check: one command no bus of the example routes."""

from __future__ import annotations

import attrs

from cqrskit import Command


@attrs.frozen
class ResetPassword(Command[None]):
    """Defined here, routed nowhere: `python -m cqrskit check --modules` must name it."""

    email: str
