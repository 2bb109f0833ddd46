"""`Validation`: refuse a message whose `validate()` reports errors, before the handler runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cqrskit._context import Context
from cqrskit._contracts import CallNext
from cqrskit._messages import Message
from cqrskit._results import Result
from cqrskit._stages import Stage
from cqrskit._status import OperationStatus

__all__ = ["Validation"]

_VALIDATION_ERROR = OperationStatus.VALIDATION_ERROR
_NO_VALIDATION = Message.validate


class Validation:
    """Refuses an invalid message with VALIDATION_ERROR before the handler runs.

    It calls ``message.validate()``; when that reports errors the dispatch returns VALIDATION_ERROR
    carrying every field's message, and the handler does not run.

    Its place is `Stage.VALIDATION`: inside Authorization (an unauthorized caller learns nothing about
    which fields are wrong) and outside Retry and Transaction (an invalid message opens no transaction
    and is never retried). A message type that does not override `Message.validate` has nothing to
    check, so the bus leaves Validation out of its pipeline. Define the checks on the message::

        @attrs.frozen
        class CreateUser(Command[UUID]):
            email: str

            def validate(self) -> Mapping[str, str]:
                return {} if "@" in self.email else {"email": "must contain @"}
    """

    stage = Stage.VALIDATION

    def bind(self, message_type: type) -> Validation | None:
        """Stay in the pipeline of a type that overrides `Message.validate`; leave the others (None)."""
        validate = getattr(message_type, "validate", _NO_VALIDATION)
        return None if validate is _NO_VALIDATION else self

    def describe(self, message_type: type) -> Mapping[str, object]:
        """Return which ``validate`` method checks `message_type`, or None."""
        if self.bind(message_type) is None:
            return {"validate": None}
        return {"validate": f"{message_type.__qualname__}.validate"}

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Return VALIDATION_ERROR when `message` is invalid, else run the rest of the pipeline."""
        errors = message.validate()
        if errors:
            return _refusal(message, errors)
        return await call_next(message, context)

    def __repr__(self) -> str:
        return "Validation()"


def _refusal(message: object, errors: object) -> Result[Any]:
    if not isinstance(errors, Mapping):
        raise TypeError(
            f"{type(message).__qualname__}.validate() returned {type(errors).__name__}; "
            "it must return a mapping of field name to error text"
        )
    return Result.failure(_VALIDATION_ERROR, {str(field): str(text) for field, text in errors.items()})
