"""Unit tests of cqrskit._context: Context, Principal and the dispatch context of a task."""

from __future__ import annotations

import attrs
import pytest

from cqrskit import Context, Principal


class TestPrincipal:
    def test_defaults(self) -> None:
        """A principal built from an id alone holds no permissions or roles and is not an admin."""
        principal = Principal("u1")
        assert principal.id == "u1"
        assert principal.permissions == frozenset()
        assert principal.roles == frozenset()
        assert principal.is_admin is False

    def test_iterables_become_frozensets(self) -> None:
        """Permissions and roles given as lists are stored as frozensets."""
        principal = Principal("u1", permissions=["a", "b"], roles=("admin",))
        assert principal.permissions == frozenset({"a", "b"})
        assert isinstance(principal.roles, frozenset)

    def test_immutable(self) -> None:
        """Assigning a field of a principal raises."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            Principal("u1").id = "u2"  # type: ignore[misc]

    def test_equality(self) -> None:
        """Two principals with the same fields are equal and hash alike."""
        assert Principal("u1", frozenset({"x"})) == Principal("u1", frozenset({"x"}))
        assert hash(Principal("u1")) == hash(Principal("u1"))


class TestContext:
    def test_defaults(self) -> None:
        """A context built with no arguments carries no principal and no ids."""
        context = Context()
        assert context.principal is None
        assert context.correlation_id is None
        assert context.causation_id is None
        assert context.idempotency_key is None
        assert context.operation_id is None
        assert context.tenant is None

    def test_fields(self) -> None:
        """Every keyword given is readable back as a property."""
        principal = Principal("u1")
        context = Context(principal=principal, correlation_id="c", causation_id="x", idempotency_key="k")
        assert context.principal is principal
        assert (context.correlation_id, context.causation_id, context.idempotency_key) == ("c", "x", "k")

    @pytest.mark.parametrize(
        "field", ["principal", "correlation_id", "causation_id", "idempotency_key", "operation_id", "tenant"]
    )
    def test_assigning_a_field_raises(self, field: str) -> None:
        """Every public field of a context is read-only."""
        context = Context()
        with pytest.raises(AttributeError):
            setattr(context, field, "x")

    def test_no_new_attributes(self) -> None:
        """A context is slotted, so no attribute can be added to it."""
        with pytest.raises(AttributeError):
            Context().extra = 1  # type: ignore[attr-defined]

    def test_child_keeps_principal_and_correlation_and_sets_causation(self) -> None:
        """child() keeps principal and correlation id and sets causation id to the parent's operation id."""
        principal = Principal("u1")
        parent = Context(principal, "corr", "cause", "key", "op-1")
        child = parent.child()
        assert child.principal is principal
        assert child.correlation_id == "corr"
        assert child.causation_id == "op-1"
        assert child.idempotency_key is None
        assert child.operation_id is None

    def test_child_keeps_the_tenant(self) -> None:
        """A dispatch caused by another acts for the same tenant."""
        assert Context(tenant="acme", operation_id="op-1").child().tenant == "acme"

    def test_equality_and_hash(self) -> None:
        """Contexts with equal fields are equal and hash alike."""
        assert Context(correlation_id="c") == Context(correlation_id="c")
        assert hash(Context(correlation_id="c")) == hash(Context(correlation_id="c"))
        assert Context(correlation_id="c") != Context(correlation_id="d")

    def test_repr_names_every_field(self) -> None:
        """The repr shows each public field by name."""
        text = repr(Context(correlation_id="c"))
        assert "correlation_id='c'" in text
        assert "operation_id=None" in text
        assert "tenant=None" in text


class TestDispatchContext:
    def test_without_a_context(self) -> None:
        """With no context given the dispatch context carries the operation id as its correlation id."""
        from cqrskit._context import dispatch_context

        context = dispatch_context(None, "op-1")
        assert (context.operation_id, context.correlation_id, context.principal) == ("op-1", "op-1", None)

    def test_keeps_the_given_fields(self) -> None:
        """A given context keeps its fields and gains the operation id."""
        from cqrskit._context import dispatch_context

        principal = Principal("u1")
        context = dispatch_context(Context(principal, "corr", "cause", "key"), "op-2")
        assert context == Context(principal, "corr", "cause", "key", "op-2")

    def test_keeps_the_tenant(self) -> None:
        """The tenant of the given context is the tenant of the dispatch."""
        from cqrskit._context import dispatch_context

        assert dispatch_context(Context(tenant="acme"), "op-3").tenant == "acme"
