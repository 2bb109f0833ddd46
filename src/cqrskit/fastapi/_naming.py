"""Names on the wire: a field's JSON key when it differs from the attribute's name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["WIRE_NAME_METADATA", "camel_case", "wire_name"]

WIRE_NAME_METADATA = "wire_name"
"""The attrs field metadata key that names one field on the wire.

For example ``attrs.field(metadata={"wire_name": "createdAt"})``. It wins over the naming rule given to
`payload`, `from_url` or `to_json`.
"""


def camel_case(name: str) -> str:
    """Return `name` in lower camel case: ``"created_at"`` becomes ``"createdAt"``.

    Pass it as ``naming=camel_case`` for an API whose JSON keys are camelCase while your attributes are
    snake_case.
    """
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def wire_name(field: Any, naming: Callable[[str], str] | None) -> str:
    """Return the JSON key of an attrs `field`: its ``wire_name`` metadata, else ``naming(name)``."""
    given = field.metadata.get(WIRE_NAME_METADATA)
    if given is not None:
        return str(given)
    return naming(field.name) if naming is not None else str(field.name)
