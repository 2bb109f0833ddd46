from __future__ import annotations

from dependency_injector import providers

from cqrskit.behaviours import Audit, Logging, Metrics, Tracing
from tests.behaviours.observed_app import Connect, ObservedContainer, Register


class TestDescribe:
    """describe(message_type) tells the route inspector each behaviour's settings for one type."""

    def test_every_behaviour_in_a_chain_describes_itself(self) -> None:
        """Each observability behaviour in Register's chain returns its settings for Register."""
        bus = ObservedContainer().command_bus()
        described = {type(b).__name__: dict(b.describe(Register)) for b in bus.behaviours_for(Register)}  # type: ignore[attr-defined]
        assert described["Tracing"] == {"span_name": "command Register", "record_fields": False}
        assert described["Logging"]["redacted_fields"] == ("password",)
        assert described["Metrics"]["message_type_label"] == "Register"
        assert described["Audit"] == {
            "sink": "MemoryAuditSink()",
            "audited": True,
            "redacted_fields": ("password",),
        }

    def test_per_message_settings_leave_audit_out_of_other_types(self) -> None:
        """Audit limited to Register is in Register's chain and absent from Connect's."""
        container = ObservedContainer()
        container.audit.override(
            providers.Singleton(Audit, sink=container.audit_sink, message_types=[Register])
        )
        bus = container.command_bus()
        assert [type(b) for b in bus.behaviours_for(Register)] == [Tracing, Logging, Metrics, Audit]
        assert [type(b) for b in bus.behaviours_for(Connect)] == [Tracing, Logging, Metrics]
