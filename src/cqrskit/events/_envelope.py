"""`Envelope`: a message on its way through the outbox and the broker, and turning it back into one."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs
import cattrs
from cattrs.preconf.json import make_converter

from cqrskit._context import Context, Principal
from cqrskit.events._event import Event, key_text, message_name
from cqrskit.events._trace import current_trace_context

__all__ = ["Envelope", "default_converter", "envelope_for"]


@functools.cache
def default_converter() -> cattrs.Converter:
    """Return the cattrs converter messages travel through unless you give your own.

    It is cattrs' JSON converter (datetimes as ISO strings, sets as lists) that also writes UUIDs and
    Decimals as strings and reads them back.
    """
    converter = make_converter()
    converter.register_unstructure_hook(uuid.UUID, str)
    converter.register_structure_hook(uuid.UUID, _to_uuid)
    converter.register_unstructure_hook(Decimal, str)
    converter.register_structure_hook(Decimal, _to_decimal)
    return converter


def _to_uuid(value: Any, _: type) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _to_decimal(value: Any, _: type) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


@attrs.frozen
class Envelope:
    """One message in transit: its id, the name it is routed by, its JSON payload, and where it came from.

    `message_id` is unique per message and is what the consumer's inbox dedupes on; `key` is the
    ordering key (None when order does not matter); `created_at` is the UNIX time it was recorded;
    `trace_context` holds the W3C trace context (``traceparent``, ``tracestate``) of the span that
    recorded it, when OpenTelemetry was tracing (docs/operations.md describes the whole format);
    `tenant` is the tenant of the dispatch that recorded it (None: no tenant), and the receiving side
    dispatches with it. Build one from an event or a command with `from_event`.
    """

    message_id: str
    name: str
    payload: bytes
    key: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    principal: Principal | None = None
    created_at: float = 0.0
    trace_context: Mapping[str, str] | None = attrs.field(default=None, hash=False)
    tenant: str | None = None

    @classmethod
    def from_event(
        cls,
        message: Any,
        context: Context | None = None,
        *,
        converter: cattrs.Converter | None = None,
        names: Mapping[type, str] | None = None,
    ) -> Envelope:
        """Wrap an event or a command for transit, as `OutboxPublisher` and `CommandSender` do.

        It gets a new message id, the name it is routed by (`names`, else `message_name`), its JSON
        payload (through `converter`, default `default_converter`), its ordering key, the context's
        correlation id, operation id (as causation id), principal and tenant, and the current trace
        context.
        """
        return envelope_for(message, context, converter=converter, names=names)

    def headers(self) -> dict[str, Any]:
        """Everything but the id, name and payload, as JSON-ready values (``tenant`` only when set)."""
        principal = None
        if self.principal is not None:
            p = self.principal
            principal = {
                "id": p.id,
                "permissions": sorted(p.permissions),
                "roles": sorted(p.roles),
                "is_admin": p.is_admin,
            }
        headers = {
            "key": self.key,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "principal": principal,
            "created_at": self.created_at,
            "trace_context": dict(self.trace_context) if self.trace_context else None,
        }
        if self.tenant is not None:  # absent without a tenant: such envelopes read as they always did
            headers["tenant"] = self.tenant
        return headers

    @classmethod
    def from_parts(cls, message_id: str, name: str, payload: bytes, headers: Mapping[str, Any]) -> Envelope:
        """Rebuild an envelope from its id, name, payload and `headers()`."""
        principal = headers.get("principal")
        return cls(
            message_id=message_id,
            name=name,
            payload=payload,
            key=headers.get("key"),
            correlation_id=headers.get("correlation_id"),
            causation_id=headers.get("causation_id"),
            principal=Principal(
                str(principal["id"]),
                principal.get("permissions", ()),
                principal.get("roles", ()),
                bool(principal.get("is_admin", False)),
            )
            if isinstance(principal, Mapping)
            else None,
            created_at=float(headers.get("created_at") or 0.0),
            trace_context=_trace_context(headers.get("trace_context")),
            tenant=_tenant(headers.get("tenant")),
        )

    def context(self) -> Context:
        """Return the context the receiving side dispatches with: its principal, correlation id, tenant."""
        return Context(
            principal=self.principal,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            tenant=self.tenant,
        )


def _tenant(value: object) -> str | None:
    return None if value is None else str(value)


def _trace_context(value: object) -> dict[str, str] | None:
    if not isinstance(value, Mapping):
        return None
    return {str(k): str(v) for k, v in value.items()} or None


def envelope_for(
    message: Any,
    context: Context | None,
    *,
    converter: cattrs.Converter | None = None,
    names: Mapping[type, str] | None = None,
) -> Envelope:
    """Wrap `message` (an event or a command) for transit, with the publishing dispatch's ids."""
    converter = converter or default_converter()
    payload = json.dumps(converter.unstructure(message), separators=(",", ":")).encode()
    key = key_text(message.ordering_key()) if isinstance(message, Event) else None
    return Envelope(
        message_id=uuid.uuid4().hex,
        name=message_name(type(message), names),
        payload=payload,
        key=key,
        correlation_id=context.correlation_id if context is not None else None,
        causation_id=context.operation_id if context is not None else None,
        principal=context.principal if context is not None else None,
        created_at=time.time(),
        trace_context=current_trace_context(),
        tenant=context.tenant if context is not None else None,
    )


def open_envelope(envelope: Envelope, message_type: type, converter: cattrs.Converter | None = None) -> Any:
    """Turn `envelope`'s payload back into an instance of `message_type`."""
    converter = converter or default_converter()
    return converter.structure(json.loads(envelope.payload), message_type)
