"""`Authorization`: who may dispatch which message type, decided before anything else runs.

The rules it applies live in `cqrskit.behaviours._authorization_rules` and are re-exported here and from
`cqrskit.behaviours`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from cqrskit._context import Context
from cqrskit._contracts import CallNext, Step
from cqrskit._errors import DETAIL, ConfigurationError
from cqrskit._logs import library_logger
from cqrskit._results import Result
from cqrskit._stages import Stage
from cqrskit._status import OperationStatus
from cqrskit.behaviours._authorization_rules import (
    ALLOW,
    DENY,
    UNAUTHENTICATED,
    UNAUTHORIZED,
    AuthorizationRule,
)

__all__ = ["Authorization"]

# The refusals say nothing about the rule: which permission was missing is logged at debug only.
_UNAUTHENTICATED_ERRORS = MappingProxyType({DETAIL: "authentication is required"})
_UNAUTHORIZED_ERRORS = MappingProxyType({DETAIL: "you are not allowed to do this"})

_Check = Callable[[Any, Context], OperationStatus]


def _require_rule(rule: object, where: str) -> AuthorizationRule:
    if isinstance(rule, type):
        raise ConfigurationError(
            f"{where} is the class {rule.__qualname__}; give an instance: {rule.__qualname__}()"
        )
    if not (callable(getattr(rule, "check", None)) and callable(getattr(rule, "describe", None))):
        raise ConfigurationError(
            f"{where} must be an AuthorizationRule (RequirePermissions(...), Authenticated(), Public(), "
            f"DENY, or an object with check(message, context) and describe()), got {rule!r}"
        )
    return rule  # type: ignore[return-value]  # checked just above


class Authorization:
    """Refuses a dispatch its caller may not make: UNAUTHENTICATED or UNAUTHORIZED, before any work.

    Its place is `Stage.AUTHORIZATION`: inside Logging, Metrics, Audit and Timeout (so refusals are
    recorded) and outside Validation (a caller who may not act learns nothing about which fields are
    wrong). `rules` maps each message type to its rule; a type with no rule gets `default`, which
    is `DENY`: a bus fails closed. Refusals carry a generic text; the rule that refused, and the
    principal, are logged at debug::

        Authorization(
            {
                CreateUser: RequirePermissions("user:create"),
                UpdateUser: RequirePermissions("user:update", resource_field="user_id", allow_owner=True),
                GetUser: Authenticated(),
                Health: Public(),
            }
        )
    """

    stage = Stage.AUTHORIZATION

    def __init__(
        self,
        rules: Mapping[type[Any], AuthorizationRule],
        default: AuthorizationRule = DENY,
        *,
        logger: Any = None,
    ) -> None:
        if not isinstance(rules, Mapping):
            raise ConfigurationError(f"Authorization's rules must map message types to rules, got {rules!r}")
        checked: dict[type, AuthorizationRule] = {}
        for message_type, rule in rules.items():
            if not isinstance(message_type, type):
                raise ConfigurationError(
                    f"Authorization's rules are keyed by message type, got {message_type!r}"
                )
            checked[message_type] = _require_rule(rule, f"the rule for {message_type.__qualname__}")
        self._rules: Mapping[type, AuthorizationRule] = MappingProxyType(checked)
        self._default = _require_rule(default, "Authorization's default")
        # The rule of each type is resolved here, once: a dispatch is one dict lookup and one call.
        self._checks: dict[type, _Check] = {t: r.check for t, r in checked.items()}
        self._default_check: _Check = self._default.check
        self._logger = logger if logger is not None else library_logger("cqrskit")

    @property
    def configured_types(self) -> frozenset[type]:
        """The message types with a setting of their own here (the route inspector checks they are routed)."""
        return frozenset(self._rules)

    def rule_for(self, message_type: type) -> AuthorizationRule:
        """Return the rule for `message_type`: its own, or the default."""
        return self._rules.get(message_type, self._default)

    def bind(self, message_type: type) -> Step:
        """Return the check of `message_type`'s rule, looked up now.

        A rule that cannot work with that type raises `ConfigurationError` here.
        """
        rule = self.rule_for(message_type)
        check_message_type = getattr(rule, "check_message_type", None)
        if check_message_type is not None:
            check_message_type(message_type)
        return functools.partial(
            _authorized, self._checks.get(message_type, self._default_check), self._refuse
        )

    def describe(self, message_type: type) -> Mapping[str, object]:
        """Return the rule for `message_type` in words, and whether it is the default."""
        self.bind(message_type)
        return {"rule": self.rule_for(message_type).describe(), "default": message_type not in self._rules}

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Run the rest of the pipeline when the rule allows the caller; refuse otherwise.

        A bus never calls this: it runs what `bind` returned. It is here for a direct call.
        """
        return await self.bind(type(message))(message, context, call_next)

    def _refuse(self, message: Any, context: Context, decision: object) -> Result[Any]:
        status = UNAUTHENTICATED if decision is UNAUTHENTICATED else UNAUTHORIZED
        principal = context.principal
        self._logger.debug(
            "authorization_refused",
            message_type=type(message).__qualname__,
            operation_id=context.operation_id,
            principal_id=None if principal is None else principal.id,
            status=str(status),
            rule=self.rule_for(type(message)).describe(),
        )
        errors = _UNAUTHENTICATED_ERRORS if status is UNAUTHENTICATED else _UNAUTHORIZED_ERRORS
        return Result.failure(status, errors)

    def __repr__(self) -> str:
        rules = ", ".join(f"{t.__qualname__}: {r!r}" for t, r in self._rules.items())
        return f"Authorization({{{rules}}}, default={self._default!r})"


async def _authorized(
    check: Callable[[Any, Context], object],
    refuse: Callable[[Any, Context, object], Result[Any]],
    message: Any,
    context: Context,
    call_next: CallNext,
) -> Result[Any]:
    decision = check(message, context)
    if decision is ALLOW:
        return await call_next(message, context)
    return refuse(message, context, decision)
