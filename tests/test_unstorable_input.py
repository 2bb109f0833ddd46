"""`parse_json` and `structure` refuse what no database stores, naming the field; fields may opt in."""

from __future__ import annotations

import decimal

import attrs
import pytest

from cqrskit import Command
from cqrskit.fastapi import PayloadError, parse_json, structure


@attrs.frozen
class Note(Command[None]):
    text: str
    count: int = 0
    raw: str = attrs.field(default="", metadata={"allow_control_characters": True})
    big: int = attrs.field(default=0, metadata={"allow_big_integers": True})
    tags: tuple[str, ...] = ()
    amount: decimal.Decimal = decimal.Decimal(0)


OUT_OF_RANGE = "an integer out of range (signed 64-bit)"


def errors_for(body: bytes) -> dict[str, str]:
    with pytest.raises(PayloadError) as raised:
        structure(parse_json(body), Note)
    return dict(raised.value.errors)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"text": "a", "count": ' + b"7" * 4301 + b"}", {"count": "a number with too many digits"}),
        (b'{"text": ' + b"7" * 5000 + b"}", {"text": "a number with too many digits"}),
        (b'{"text": "a\\ud800"}', {"text": "not valid Unicode text (a lone surrogate)"}),
        (b'{"text": "a\\u0000"}', {"text": "control character U+0000 not allowed"}),
        (b'{"text": "a\\u001b"}', {"text": "control character U+001B not allowed"}),
        (b'{"text": "a\\u0085"}', {"text": "control character U+0085 not allowed"}),
        (
            b'{"text": "a", "count": 9223372036854775808}',
            {"count": "an integer out of range (signed 64-bit)"},
        ),
        (
            b'{"text": "a", "count": -9223372036854775809}',
            {"count": "an integer out of range (signed 64-bit)"},
        ),
        (b'{"text": "a", "tags": ["ok", "b\\u0000"]}', {"tags[1]": "control character U+0000 not allowed"}),
        (b'{"text": "a", "raw": "\\udc00"}', {"raw": "not valid Unicode text (a lone surrogate)"}),
    ],
)
def test_refused_naming_the_field(body: bytes, expected: dict[str, str]) -> None:
    assert errors_for(body) == expected


def test_allowed_values() -> None:
    note = structure(
        parse_json(
            b'{"text": "tab\\tnew\\nline\\r", "count": 9223372036854775807, "raw": "\\u0000\\u001b",'
            b' "big": 99999999999999999999, "amount": ' + b"1" * 4400 + b"}"
        ),
        Note,
    )
    assert note.text == "tab\tnew\nline\r"
    assert note.count == 2**63 - 1
    assert note.raw == "\x00\x1b"
    assert note.big == 99999999999999999999
    assert note.amount == decimal.Decimal("1" * 4400)


def test_an_ordinary_body_parses_as_before() -> None:
    assert structure(parse_json(b'{"text": "h\\u00e9llo", "count": -3}'), Note) == Note("héllo", -3)
