"""What a process is made of: its reactions to messages, and the `Step` each reaction decides."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import attrs

from cqrskit._messages import Command

__all__ = [
    "Deadline",
    "ProcessDefinition",
    "Reaction",
    "ReactionKind",
    "Send",
    "Step",
    "continues",
    "deadline",
    "starts",
]

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)
C = TypeVar("C", bound=Command[Any])
C_co = TypeVar("C_co", bound=Command[Any], covariant=True)
M = TypeVar("M")


@attrs.frozen
class Send(Generic[C_co]):
    """A command a step sends, with the command that undoes it should the process compensate later."""

    command: C_co
    compensation: C_co | None = None


@attrs.frozen
class Deadline:
    """A command the process sends to itself at `at` (an aware datetime or UNIX time) or `after` a delay.

    Route the command to the process manager on the command bus and react to it with `deadline`.
    One deadline of each command type is pending per instance: setting it again moves it. Deadlines
    still pending when the process completes or compensates are cancelled.
    """

    command: Command[Any]
    at: dt.datetime | float | None = None
    after: float | dt.timedelta | None = None


@attrs.frozen
class Step(Generic[S_co, C_co]):
    """What one reaction decides: the new state, the commands to send, deadlines, and how it ends.

    - `send`: commands (or `Send` with a compensation), run in this order after the step commits.
    - `deadlines`: `Deadline` commands to itself; `cancel`: deadline command types to cancel.
    - `complete`: the process has reached its goal; later messages for it are ignored.
    - `compensate`: the process failed: after `send`, the compensations of every command sent so
      far run, last sent first, and the process ends as compensated.
    """

    state: S_co
    send: Sequence[C_co | Send[C_co]] = ()
    deadlines: Sequence[Deadline] = ()
    cancel: Sequence[type[Command[Any]]] = ()
    complete: bool = False
    compensate: bool = False


class ReactionKind(enum.Enum):
    """Whether a reaction starts an instance, moves a running one on, or handles its deadline."""

    STARTS = "starts"
    CONTINUES = "continues"
    DEADLINE = "deadline"


@attrs.frozen
class Reaction(Generic[S_co, C_co]):
    """One message a process reacts to; made by `starts`, `continues` or `deadline`."""

    message_type: type
    kind: ReactionKind
    key: Callable[[Any], str]
    handler: Callable[..., Awaitable[Step[S_co, C_co]]]


def starts(
    message_type: type[M], key: Callable[[M], str], handle: Callable[[M], Awaitable[Step[S, C]]]
) -> Reaction[S, C]:
    """React to `message_type` by starting the instance `key(message)` with ``handle(message)``.

    A second start message for an instance that exists is ignored.
    """
    return Reaction(message_type, ReactionKind.STARTS, key, handle)


def continues(
    message_type: type[M], key: Callable[[M], str], handle: Callable[[M, S], Awaitable[Step[S, C]]]
) -> Reaction[S, C]:
    """React to `message_type` in the running instance `key(message)`: ``handle(message, state)``.

    A message for an instance that does not exist, or has ended, is ignored.
    """
    return Reaction(message_type, ReactionKind.CONTINUES, key, handle)


def deadline(
    command_type: type[M], key: Callable[[M], str], handle: Callable[[M, S], Awaitable[Step[S, C]]]
) -> Reaction[S, C]:
    """React to the deadline `command_type` (set with `Deadline`) of the running instance `key(command)`."""
    return Reaction(command_type, ReactionKind.DEADLINE, key, handle)


class ProcessDefinition(Protocol[S_co, C_co]):
    """A plain class that says what a process reacts to: ``def reactions(self) -> Sequence[Reaction[S, C]]``.

    `S` is the state (an attrs class), `C` the commands it may send (a union). Give it to a
    `ProcessManager` in the container.
    """

    def reactions(self) -> Sequence[Reaction[S_co, C_co]]:
        """Return every reaction of the process."""
        ...
