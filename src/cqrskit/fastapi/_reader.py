"""The dependencies that turn a request into a message: `payload` (the JSON body) and `from_url`.

Each is a `MessageReader`: FastAPI calls it for the request, and `install` reads what it holds (the
message type, which fields come from the path, the query string, the server) to declare the request
body, the parameters and the responses in the OpenAPI document. Every request body goes through
`MessageReader.__call__` and then `structure`: the one place where a body's values are checked.
"""

# No "from __future__ import annotations": FastAPI reads __call__'s annotations at runtime.

import enum
import re
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence, Set
from typing import Any, Generic, TypeVar

import attrs
import cattrs
from fastapi import Request
from starlette.responses import Response

from cqrskit._context import Context
from cqrskit._errors import ConfigurationError
from cqrskit._messages import Message
from cqrskit._results import Result
from cqrskit.fastapi._converter import UnparsedNumber, strict_converter
from cqrskit.fastapi._errors import PayloadError
from cqrskit.fastapi._naming import wire_name
from cqrskit.fastapi._payload import DEFAULT_MAX_BODY_BYTES, WHOLE_BODY, parse_json, structure
from cqrskit.fastapi._requests import read_body
from cqrskit.fastapi._responses import result_response

__all__ = ["MessageReader", "ServerField", "from_url", "payload"]

T = TypeVar("T")

ServerField = Callable[[Request], Awaitable[object]]
"""Fills a message field on the server: an ``async def (request)`` returning the field's JSON value."""

_INTEGER = re.compile(r"[-+]?[0-9]+")
_NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
_FROM_PATH = "comes from the URL path; leave it out of the body"
_FROM_SERVER = "is set by the server; leave it out of the body"


def _text_value(type_: Any, text: str) -> object:  # noqa: PLR0911 - one return per kind of value
    """Turn one URL parameter into the JSON value `structure` expects for `type_` (or leave it text).

    Text that does not fit stays text, so that `structure` names the field with its usual message.
    """
    origin = typing.get_origin(type_)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(type_):
            if option is not type(None):
                value = _text_value(option, text)
                if value is not text:
                    return value
        return text
    if type_ is bool:
        return {"true": True, "false": False}.get(text, text)
    if type_ is int or (isinstance(type_, type) and issubclass(type_, enum.IntEnum)):
        try:
            return int(text) if _INTEGER.fullmatch(text) else text
        except ValueError:  # more digits than Python parses: structure refuses it, naming the field
            return UnparsedNumber(text)
    if type_ is float:
        return float(text) if _NUMBER.fullmatch(text) else text
    return text


def _is_list(type_: Any) -> bool:
    origin = typing.get_origin(type_)
    return isinstance(origin, type) and issubclass(origin, (Sequence, Set)) and origin is not str


def _item_type(type_: Any) -> Any:
    arguments = typing.get_args(type_)
    return arguments[0] if arguments else Any


@attrs.frozen
class _UrlField:
    attribute: str
    wire: str
    type: Any
    is_list: bool

    def value(self, texts: Sequence[str]) -> object:
        if self.is_list:
            item = _item_type(self.type)
            return [_text_value(item, text) for text in texts]
        return _text_value(self.type, texts[-1])


class MessageReader(Generic[T]):
    """A FastAPI dependency that reads a `message_type` from the request; made by `payload` or `from_url`.

    `respond` renders the endpoint's `Result` the way the OpenAPI document declares it. Its attributes
    are read by `install` to declare the request body, the parameters and the responses.
    """

    def __init__(
        self,
        message_type: type[T],
        *,
        from_body: bool,
        path_params: Iterable[str] = (),
        server_fields: Mapping[str, ServerField] | None = None,
        envelope: str | None = None,
        response_envelope: str | None = None,
        answers: type[Message[Any]] | None = None,
        naming: Callable[[str], str] | None = None,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        converter: cattrs.Converter | None = None,
        bus: Callable[[Request], Awaitable[Any]] | None = None,
        context: Callable[[Request], Awaitable[Context]] | None = None,
    ) -> None:
        self.message_type: type[T] = message_type
        self.bus = bus
        self.context = context
        if not attrs.has(message_type):
            raise ConfigurationError(f"{message_type.__qualname__} is not an attrs class")
        self.from_body = from_body
        self.path_params = tuple(path_params)
        self.server_fields: Mapping[str, ServerField] = dict(server_fields or {})
        self.envelope = envelope
        self.response_envelope = response_envelope
        self.answers = answers
        self.naming = naming
        self.max_bytes = max_bytes
        self.converter = converter if converter is not None else _converter_for(naming)
        hints = typing.get_type_hints(message_type)
        names = {field.name for field in attrs.fields(message_type)}
        unknown = sorted((set(self.path_params) | set(self.server_fields)) - names)
        if unknown:
            raise ConfigurationError(f"{message_type.__qualname__} has no field {', '.join(unknown)}")
        self.url_fields = tuple(
            _UrlField(field.name, wire_name(field, naming), hints[field.name], _is_list(hints[field.name]))
            for field in attrs.fields(message_type)
            if field.init
            and field.name not in self.server_fields
            and (not from_body or field.name in self.path_params)
        )
        self._wires = {field.name: wire_name(field, naming) for field in attrs.fields(message_type)}
        self._from_url = frozenset(field.wire for field in self.url_fields)
        # The body's keys for the fields the client must not send, by their names on the wire.
        self._refused = {
            wire_name(field, naming): _FROM_PATH if field.name in self.path_params else _FROM_SERVER
            for field in attrs.fields(message_type)
            if field.name in self.path_params or field.name in self.server_fields
        }

    async def __call__(self, request: Request) -> T:
        """Read the message from `request`, or raise `PayloadError` naming every bad field."""
        data: dict[str, Any]
        if self.from_body:
            decoded = parse_json(await read_body(request, max_bytes=self.max_bytes), max_bytes=self.max_bytes)
            data = self._unwrap(decoded)
        else:
            data = {}
        if self.url_fields:
            self._read_url(request, data)
        for attribute, fill in self.server_fields.items():
            data[self._wires[attribute]] = await fill(request)
        if self.envelope is None:
            return structure(data, self.message_type, converter=self.converter)
        try:
            return structure(data, self.message_type, converter=self.converter)
        except PayloadError as error:
            # Paths name the keys the client sent, so inside an envelope they start with it.
            raise PayloadError(
                {self._in_envelope(path): text for path, text in error.errors.items()}
            ) from None

    def _in_envelope(self, path: str) -> str:
        if path == WHOLE_BODY:
            return str(self.envelope)
        if path in self._from_url:  # a path or query parameter is named as it is, outside the body
            return path
        return f"{self.envelope}{path}" if path.startswith("[") else f"{self.envelope}.{path}"

    def _unwrap(self, decoded: object) -> dict[str, Any]:
        if self.envelope is not None:
            if not isinstance(decoded, dict) or set(decoded) != {self.envelope}:
                raise PayloadError({self.envelope: f"send the fields inside {{{self.envelope!r}: {{...}}}}"})
            decoded = decoded[self.envelope]
            prefix = f"{self.envelope}."
        else:
            prefix = ""
        if not isinstance(decoded, dict):
            raise PayloadError({self.envelope or WHOLE_BODY: "expected a JSON object"})
        repeated = {f"{prefix}{key}": text for key, text in self._refused.items() if key in decoded}
        if repeated:
            raise PayloadError(repeated)
        return decoded

    def _read_url(self, request: Request, data: dict[str, Any]) -> None:
        path, query = request.path_params, request.query_params
        for field in self.url_fields:
            # A path parameter may be named like the attribute or like its wire name.
            in_path = field.attribute if field.attribute in path else field.wire
            if field.attribute in self.path_params or in_path in path:
                if in_path not in path:
                    raise ConfigurationError(
                        f"{type(self).__name__}({self.message_type.__qualname__}) takes {field.wire!r} "
                        f"from the URL path, but the route {request.url.path!r} has no such parameter"
                    )
                data[field.wire] = field.value([path[in_path]])
            elif field.wire in query:
                data[field.wire] = field.value(query.getlist(field.wire))

    async def execute(self, message: T, request: Request) -> Result[Any]:
        """Dispatch `message` on this reader's `bus` with the `context` it builds for `request`.

        The bus and the context come from the two ``async def (request)`` functions given to `payload`
        or `from_url` (for example ``from_container("query_bus")`` and
        ``context_dependency(from_request=...)``), called here directly: an endpoint that takes only
        its message and the request spares FastAPI resolving two more dependencies per request,
        about a third of what the HTTP layer adds to a cached read::

            @app.get("/users/{user_id}")
            async def get_user(query: Annotated[GetUser, Depends(read)], request: Request) -> Response:
                return read.respond(await read.execute(query, request))
        """
        if self.bus is None or self.context is None:
            raise ConfigurationError(
                f"{self!r} was made without bus= and context=; give both to call execute()"
            )
        bus = await self.bus(request)
        return await bus.execute(message, await self.context(request))  # type: ignore[no-any-return]

    def respond(
        self,
        result: Result[Any],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Return the response for `result` as the OpenAPI document declares it for this endpoint.

        The data is written with this reader's `naming` and wrapped in its `response_envelope`; a
        failure is the usual problem.
        """
        if result.is_failure or (self.response_envelope is None and self.naming is None):
            return result_response(result, status=status, headers=headers)
        return result_response(
            result, status=status, headers=headers, naming=self.naming, envelope=self.response_envelope
        )

    def __repr__(self) -> str:
        source = "payload" if self.from_body else "from_url"
        return f"{source}({self.message_type.__qualname__})"


_CONVERTERS: dict[Callable[[str], str] | None, cattrs.Converter] = {}


def _converter_for(naming: Callable[[str], str] | None) -> cattrs.Converter:
    converter = _CONVERTERS.get(naming)
    if converter is None:
        converter = _CONVERTERS[naming] = strict_converter(naming=naming)
    return converter


def payload(
    message_type: type[T],
    *,
    path_params: Iterable[str] = (),
    server_fields: Mapping[str, ServerField] | None = None,
    envelope: str | None = None,
    response_envelope: str | None = None,
    answers: type[Message[Any]] | None = None,
    naming: Callable[[str], str] | None = None,
    max_bytes: int = DEFAULT_MAX_BODY_BYTES,
    converter: cattrs.Converter | None = None,
    bus: Callable[[Request], Awaitable[Any]] | None = None,
    context: Callable[[Request], Awaitable[Context]] | None = None,
) -> MessageReader[T]:
    """Return a FastAPI dependency that reads the JSON body into a `message_type`.

    The body is decoded with NaN refused and at most `max_bytes` read, then structured with
    `structure` (strict, every error collected). Fields named in `path_params` are taken from the URL
    path instead of the body (a body that repeats one is refused). Errors raise `PayloadError` or
    `PayloadTooLargeError`, which the handlers `install` adds answer with a problem::

        Update = Annotated[UpdateUser, Depends(payload(UpdateUser, path_params=["user_id"]))]

        @app.patch("/users/{user_id}")
        async def update_user(command: Update, bus: Commands, context: RequestContext): ...

    `install` declares the body in the OpenAPI document from `message_type`'s fields. Options for APIs
    shaped otherwise:

    - `server_fields` maps a field to an ``async def (request)`` giving its value (the caller's id, a
      value from the path); a body that sends that field is refused;
    - `envelope` reads the fields from ``{"<envelope>": {...}}``; `response_envelope` wraps the data
      `respond` writes the same way;
    - `answers` names the query whose result the endpoint answers with, when it is not the command's
      own (see `execute_then_query`), so that the document declares that result;
    - `naming` (for example `camel_case`) names the fields on the wire, in the body and in `respond`;
    - `bus` and `context` (``async def (request)`` functions such as ``from_container("command_bus")``
      and ``context_dependency(from_request=...)``) let `MessageReader.execute` dispatch the message
      without FastAPI resolving them as dependencies.
    """
    return MessageReader(
        message_type,
        from_body=True,
        path_params=path_params,
        server_fields=server_fields,
        envelope=envelope,
        response_envelope=response_envelope,
        answers=answers,
        naming=naming,
        max_bytes=max_bytes,
        converter=converter,
        bus=bus,
        context=context,
    )


def from_url(
    message_type: type[T],
    *,
    server_fields: Mapping[str, ServerField] | None = None,
    response_envelope: str | None = None,
    naming: Callable[[str], str] | None = None,
    converter: cattrs.Converter | None = None,
    bus: Callable[[Request], Awaitable[Any]] | None = None,
    context: Callable[[Request], Awaitable[Context]] | None = None,
) -> MessageReader[T]:
    """Return a FastAPI dependency that builds a `message_type` from the URL: path, then query string.

    A field named like a path parameter of the route comes from the path; every other field from the
    query parameter of its name (a list field from a repeated parameter), and keeps its default when
    the parameter is absent. Numbers and ``true``/``false`` are read from their text; everything then
    goes through `structure` like a body, so a wrong value is a 422 naming the parameter::

        Find = Annotated[FindUsers, Depends(from_url(FindUsers))]

        @app.get("/users")
        async def find_users(query: Find, bus: Queries, context: RequestContext): ...

    `install` declares every field as a path or query parameter in the OpenAPI document. `bus` and
    `context` are as for `payload`.
    """
    return MessageReader(
        message_type,
        from_body=False,
        server_fields=server_fields,
        response_envelope=response_envelope,
        naming=naming,
        converter=converter,
        bus=bus,
        context=context,
    )
