"""Unit tests of cqrskit.events._envelope: what travels through the outbox and the broker, and back."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import attrs
from hypothesis import given
from hypothesis import strategies as st

from cqrskit import AffectedEntity, Command, Context, Principal
from cqrskit.events import Envelope, Event, message_name
from cqrskit.events._envelope import envelope_for, open_envelope


@attrs.frozen
class Line:
    sku: str
    quantity: int


@attrs.frozen
class OrderPlaced(Event):
    order_id: uuid.UUID
    total: Decimal
    at: dt.datetime
    lines: tuple[Line, ...]
    note: str | None = None

    def ordering_key(self) -> AffectedEntity:
        return AffectedEntity("order", str(self.order_id), "created")


@attrs.frozen
class ShipOrder(Command[None]):
    order_id: uuid.UUID


texts = st.text(max_size=20)
principals = st.builds(
    Principal,
    texts,
    st.frozensets(texts, max_size=3),
    st.frozensets(texts, max_size=3),
    st.booleans(),
)


class TestEnvelope:
    """An envelope survives its trip through outbox rows and broker headers unchanged."""

    @given(
        st.builds(
            Envelope,
            message_id=texts,
            name=texts,
            payload=st.binary(max_size=50),
            key=st.none() | texts,
            correlation_id=st.none() | texts,
            causation_id=st.none() | texts,
            principal=st.none() | principals,
            created_at=st.floats(min_value=0, max_value=4e9),
            tenant=st.none() | texts,
        )
    )
    def test_headers_round_trip(self, envelope: Envelope) -> None:
        """Rebuilding from id, name, payload and JSON headers gives the same envelope."""
        headers = json.loads(json.dumps(envelope.headers()))
        assert Envelope.from_parts(envelope.message_id, envelope.name, envelope.payload, headers) == envelope

    def test_an_event_round_trips_with_rich_types(self) -> None:
        """UUIDs, Decimals, datetimes and nested attrs classes come back as themselves."""
        event = OrderPlaced(
            uuid.uuid4(),
            Decimal("12.30"),
            dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
            (Line("a", 1), Line("b", 2)),
        )
        envelope = envelope_for(event, None)
        assert open_envelope(envelope, OrderPlaced) == event
        assert envelope.key == f"order:{event.order_id}"
        assert envelope.name == "OrderPlaced"

    def test_the_envelope_carries_the_publishing_dispatch(self) -> None:
        """Correlation id and principal travel; the publishing operation becomes the causation id."""
        context = Context(principal=Principal("ada"), correlation_id="corr", operation_id="op-9")
        envelope = envelope_for(ShipOrder(uuid.uuid4()), context)
        assert (envelope.correlation_id, envelope.causation_id, envelope.principal) == (
            "corr",
            "op-9",
            Principal("ada"),
        )
        assert envelope.key is None
        received = envelope.context()
        assert (received.principal, received.correlation_id, received.causation_id) == (
            Principal("ada"),
            "corr",
            "op-9",
        )

    def test_the_tenant_travels_and_comes_back_in_the_context(self) -> None:
        """The publishing dispatch's tenant is in the headers, and the receiving context has it."""
        context = Context(principal=Principal("ada"), operation_id="op-9", tenant="acme")
        envelope = envelope_for(ShipOrder(uuid.uuid4()), context)
        assert envelope.headers()["tenant"] == "acme"
        headers = json.loads(json.dumps(envelope.headers()))
        rebuilt = Envelope.from_parts(envelope.message_id, envelope.name, envelope.payload, headers)
        assert rebuilt.context().tenant == "acme"

    def test_without_a_tenant_the_headers_are_as_before(self) -> None:
        """No tenant: no ``tenant`` header at all, and an envelope without one reads as no tenant."""
        envelope = envelope_for(ShipOrder(uuid.uuid4()), Context(operation_id="op-9"))
        assert "tenant" not in envelope.headers()
        assert Envelope.from_parts("m", "n", b"{}", {}).context().tenant is None

    def test_each_envelope_has_its_own_id(self) -> None:
        """Two envelopes of equal events still have distinct message ids."""
        event = ShipOrder(uuid.UUID(int=1))
        assert envelope_for(event, None).message_id != envelope_for(event, None).message_id


class TestMessageName:
    """A message travels under its class name unless a names mapping says otherwise."""

    def test_default_and_explicit_names(self) -> None:
        """The class name by default; the mapping's entry when there is one."""
        assert message_name(ShipOrder) == "ShipOrder"
        assert message_name(ShipOrder, {ShipOrder: "orders.ship"}) == "orders.ship"
        assert message_name(OrderPlaced, {ShipOrder: "orders.ship"}) == "OrderPlaced"
