"""Unit tests of cqrskit.behaviours._redaction: which fields are sensitive and how they are hidden."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from cqrskit.behaviours._redaction import REDACTED, field_plan, redacted_fields, sensitive_fields

REQUEST_ID = uuid.UUID(int=1)


@attrs.frozen
class Card:
    number: str = attrs.field(metadata={"sensitive": True}, repr=True)
    holder: str = "A. Person"


@attrs.frozen
class Pay:
    amount: int
    cards: tuple[Card, ...] = ()
    by_name: dict[str, Card] = attrs.field(factory=dict)
    token: str = attrs.field(default="", metadata={"sensitive": True}, repr=False)
    note: str | None = None
    request_id: uuid.UUID = REQUEST_ID


@dataclasses.dataclass(frozen=True)
class Login:
    user: str
    password: str = dataclasses.field(metadata={"sensitive": True})


class Plain:
    def __init__(self) -> None:
        self.hidden = "not declared"


class TestRedaction:
    """The one place that turns a message into fields a log, span or audit record may show."""

    def test_sensitive_fields_become_stars_and_others_stay(self) -> None:
        """Sensitive top-level fields read "***" whatever their repr; the rest are kept."""
        fields = redacted_fields(Pay(10, token="tok-123"))  # noqa: S106 - test data
        assert fields["token"] == REDACTED
        assert fields["amount"] == 10
        assert fields["request_id"] == uuid.UUID(int=1)

    def test_nested_values_are_redacted(self) -> None:
        """Sensitive fields inside value objects in tuples and dicts are redacted too."""
        fields = redacted_fields(Pay(10, cards=(Card("4111"),), by_name={"main": Card("5500")}))
        assert fields["cards"] == [{"number": REDACTED, "holder": "A. Person"}]
        assert fields["by_name"] == {"main": {"number": REDACTED, "holder": "A. Person"}}

    def test_dataclasses_are_understood(self) -> None:
        """A dataclass field's metadata marks it sensitive the same way."""
        assert redacted_fields(Login("alice", "pw")) == {"user": "alice", "password": REDACTED}

    def test_a_type_without_declared_fields_shows_nothing(self) -> None:
        """Without declared fields nothing says what is safe, so nothing is shown."""
        assert redacted_fields(Plain()) == {}
        assert field_plan(Plain).fields == ()

    def test_the_plan_is_worked_out_once_per_type(self) -> None:
        """The same plan object comes back for a type: per-type work is not redone per dispatch."""
        assert field_plan(Pay) is field_plan(Pay)
        assert sensitive_fields(Pay) == ("token",)

    @given(secret=st.text(min_size=1), holder=st.text())
    def test_no_generated_secret_survives(self, secret: str, holder: str) -> None:
        """Whatever the secret, it is nowhere in the redacted fields' values."""
        fields: dict[str, Any] = redacted_fields(Pay(1, cards=(Card(secret, holder),), token=secret))
        assert fields["token"] == REDACTED
        assert fields["cards"][0]["number"] == REDACTED
