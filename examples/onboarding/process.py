"""The onboarding process: a welcome task for a new user, and a deadline to activate the account."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import attrs

from cqrskit.processes import Deadline, Reaction, Send, Step, continues, deadline, starts
from examples.onboarding.messages import (
    ActivationDeadline,
    CancelWelcomeTask,
    CreateWelcomeTask,
    DisableAccount,
    UserActivated,
    UserCreated,
)

OnboardingCommand = CreateWelcomeTask | CancelWelcomeTask | DisableAccount
"""Every command the onboarding process may send."""


@attrs.frozen
class OnboardingState:
    user_id: str
    task_id: str
    activated: bool = False


class Onboarding:
    """A created user gets a welcome task; without activation in time, the account is disabled and the
    task cancelled (the compensation of creating it)."""

    def __init__(self, activation_delay: dt.timedelta) -> None:
        self._activation_delay = activation_delay

    def reactions(self) -> Sequence[Reaction[OnboardingState, OnboardingCommand]]:
        return (
            starts(UserCreated, lambda event: event.user_id, self.created),
            continues(UserActivated, lambda event: event.user_id, self.activated),
            deadline(ActivationDeadline, lambda command: command.user_id, self.expired),
        )

    async def created(self, event: UserCreated) -> Step[OnboardingState, OnboardingCommand]:
        task_id = f"welcome-{event.user_id}"
        return Step(
            OnboardingState(user_id=event.user_id, task_id=task_id),
            send=[Send(CreateWelcomeTask(task_id, event.user_id), compensation=CancelWelcomeTask(task_id))],
            deadlines=[Deadline(ActivationDeadline(event.user_id), after=self._activation_delay)],
        )

    async def activated(
        self, event: UserActivated, state: OnboardingState
    ) -> Step[OnboardingState, OnboardingCommand]:
        return Step(attrs.evolve(state, activated=True), complete=True)  # the deadline is cancelled

    async def expired(
        self, command: ActivationDeadline, state: OnboardingState
    ) -> Step[OnboardingState, OnboardingCommand]:
        # Disable the account, then run the compensations: the welcome task is cancelled.
        return Step(state, send=[DisableAccount(state.user_id)], compensate=True)
