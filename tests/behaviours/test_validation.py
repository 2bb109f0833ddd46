"""Validation, including Hypothesis-generated bad input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from dependency_injector import containers, providers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqrskit import Command, CommandBus, OperationStatus, QueryBus
from cqrskit.behaviours import Validation
from tests.behaviours.policy_support import CONTEXT, CallNextStub, EchoHandler, GetName, Ping, Register

VALID = {"email": "ada@example.org", "password": "correct horse", "age": 36}

valid_emails = st.emails()
invalid_emails = st.text(max_size=40).filter(lambda text: "@" not in text)
valid_passwords = st.text(min_size=8, max_size=40)
invalid_passwords = st.text(max_size=7)
valid_ages = st.integers(min_value=0, max_value=150)
invalid_ages = st.integers(max_value=-1)

FIELDS = {
    "email": (valid_emails, invalid_emails),
    "password": (valid_passwords, invalid_passwords),
    "age": (valid_ages, invalid_ages),
}


@st.composite
def bad_registrations(draw: st.DrawFn) -> tuple[Register, frozenset[str]]:
    """A Register with a non-empty set of invalid fields, and the names of those fields."""
    bad = draw(st.sets(st.sampled_from(sorted(FIELDS)), min_size=1))
    values = {name: draw(FIELDS[name][name in bad]) for name in FIELDS}
    return Register(**values), frozenset(bad)


class Container(containers.DeclarativeContainer):
    """A container wiring Register and Ping through Validation."""

    handler = providers.Singleton(EchoHandler)
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict({Register: handler, Ping: handler}),
        behaviours=providers.List(providers.Singleton(Validation)),
    )


class TestValidation:
    """Validation called directly with a fake call_next."""

    async def test_valid_message_reaches_the_handler(self) -> None:
        """A valid message passes through to the rest of the pipeline."""
        call_next = CallNextStub()
        result = await Validation()(Register(**VALID), CONTEXT, call_next)
        assert result.is_success
        assert call_next.calls == 1

    async def test_invalid_message_carries_every_error(self) -> None:
        """Every field's error comes back, and the rest of the pipeline does not run."""
        call_next = CallNextStub()
        result = await Validation()(Register("nope", "short", -1), CONTEXT, call_next)
        assert result.status is OperationStatus.VALIDATION_ERROR
        assert dict(result.errors) == {
            "email": "must contain @",
            "password": "must be at least 8 characters",
            "age": "cannot be negative",
        }
        assert call_next.calls == 0

    @given(case=bad_registrations())
    @settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
    async def test_generated_bad_input_names_exactly_the_bad_fields(
        self, case: tuple[Register, frozenset[str]]
    ) -> None:
        """Any mix of invalid fields gives VALIDATION_ERROR naming exactly those fields."""
        message, bad = case
        call_next = CallNextStub()
        result = await Validation()(message, CONTEXT, call_next)
        assert result.status is OperationStatus.VALIDATION_ERROR
        assert set(result.errors) == bad
        assert call_next.calls == 0

    def test_applies_only_where_validate_is_overridden(self) -> None:
        """Types that keep Message.validate are left out; those that override it are not."""
        validation = Validation()
        assert validation.bind(Register) is not None
        assert validation.bind(Ping) is None
        assert validation.bind(GetName) is None

    def test_describe(self) -> None:
        """describe() names the validate method, or None."""
        assert Validation().describe(Register) == {"validate": "Register.validate"}
        assert Validation().describe(Ping) == {"validate": None}

    async def test_validate_returning_a_non_mapping_is_a_type_error(self) -> None:
        """A validate() that returns something other than a mapping is a programming error."""

        @attrs.frozen
        class Odd(Command[None]):
            def validate(self) -> Mapping[str, str]:
                return ["bad"]  # type: ignore[return-value]

        with pytest.raises(TypeError, match="mapping"):
            await Validation()(Odd(), CONTEXT, CallNextStub())

    def test_repr(self) -> None:
        """The repr is the constructor call."""
        assert repr(Validation()) == "Validation()"


class TestValidationOnABus:
    """Validation inside buses built from a DeclarativeContainer."""

    @given(case=bad_registrations())
    @settings(max_examples=100)
    async def test_generated_bad_input_never_fails(self, case: tuple[Register, frozenset[str]]) -> None:
        """Generated bad input always gives VALIDATION_ERROR naming the bad fields, never FAILED."""
        message, bad = case
        container = Container()
        result = await container.command_bus().execute(message)
        assert result.status is OperationStatus.VALIDATION_ERROR
        assert set(result.errors) == bad
        assert result.operation_id
        assert container.handler().calls == 0

    async def test_valid_input_succeeds(self) -> None:
        """A valid command reaches its handler."""
        container = Container()
        result = await container.command_bus().execute(Register(**VALID))
        assert result.is_success
        assert container.handler().calls == 1

    def test_left_out_for_types_without_validate(self) -> None:
        """The bus leaves Validation out where there is nothing to validate."""
        bus = Container().command_bus()
        assert bus.behaviours_for(Ping) == ()
        assert [type(b) for b in bus.behaviours_for(Register)] == [Validation]

    async def test_works_on_a_query_bus(self) -> None:
        """Validation serves queries as well as commands."""

        @attrs.frozen
        class Search(GetName):
            def validate(self) -> Mapping[str, Any]:
                return {"user_id": "must be positive"} if self.user_id <= 0 else {}

        bus = QueryBus({Search: EchoHandler()}, [Validation()])
        assert (await bus.execute(Search(0))).status is OperationStatus.VALIDATION_ERROR
        assert (await bus.execute(Search(1))).is_success
