from __future__ import annotations

from uuid import UUID

import attrs
import pytest

from cqrskit import Command, Message, Query


@attrs.frozen
class CreateUser(Command[UUID]):
    email: str

    def validate(self) -> dict[str, str]:
        return {} if "@" in self.email else {"email": "must contain @"}


@attrs.frozen
class GetUser(Query[str]):
    user_id: UUID


class TestCommand:
    def test_a_command_is_a_message(self) -> None:
        """A Command subclass is a Message and not a Query."""
        assert issubclass(CreateUser, Message)
        assert issubclass(CreateUser, Command)
        assert not issubclass(CreateUser, Query)

    def test_a_frozen_command_refuses_assignment(self) -> None:
        """A frozen attrs command cannot be changed after it is built."""
        command = CreateUser("a@example.com")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            command.email = "b@example.com"  # type: ignore[misc]


class TestQuery:
    def test_a_query_is_a_message(self) -> None:
        """A Query subclass is a Message and not a Command."""
        assert issubclass(GetUser, Message)
        assert not issubclass(GetUser, Command)


class TestValidate:
    def test_the_default_is_valid(self) -> None:
        """A message that does not override validate() reports no errors."""
        assert dict(GetUser(UUID(int=1)).validate()) == {}

    def test_an_override_names_the_bad_fields(self) -> None:
        """An overriding validate() returns field name to error text."""
        assert CreateUser("nope").validate() == {"email": "must contain @"}
        assert CreateUser("a@example.com").validate() == {}
