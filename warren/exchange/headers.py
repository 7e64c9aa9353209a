"""``headers``: match on message headers; ``x-match`` all / any / all-with-x / any-with-x.

As RabbitMQ: binding arguments whose names start with ``x-`` are ignored for matching unless
the ``-with-x`` variants are used; a binding argument with a void value (None) matches when the
header is present with any value; otherwise values must be equal.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..model.errors import PreconditionFailed
from ..model.message import Message
from .interface import Binding

_MODES = ("all", "any", "all-with-x", "any-with-x")


class HeadersExchange:
    name: ClassVar[str] = "headers"

    def __init__(self, arguments: dict[str, Any] | None = None) -> None:
        # binding -> (match all?, with x-?, wanted pairs): bind and unbind are dict operations
        self._bindings: dict[Binding, tuple[bool, bool, list[tuple[str, Any]]]] = {}

    def validate_binding(self, binding: Binding) -> None:
        mode = binding.arguments.get("x-match", "all")
        if isinstance(mode, bytes):
            mode = mode.decode()
        if mode not in _MODES:
            raise PreconditionFailed(
                f"Invalid x-match field value {mode!r}; expected all, any, all-with-x, or "
                "any-with-x")

    def bind(self, binding: Binding) -> None:
        mode = binding.arguments.get("x-match", "all")
        if isinstance(mode, bytes):
            mode = mode.decode()
        with_x = mode.endswith("-with-x")
        wanted = [(k, v) for k, v in binding.arguments.items()
                  if k != "x-match" and (with_x or not k.startswith("x-"))]
        self._bindings[binding] = (mode.startswith("all"), with_x, wanted)

    def unbind(self, binding: Binding) -> None:
        self._bindings.pop(binding, None)

    def route(self, message: Message) -> list[Any]:
        if not self._bindings:
            return []
        headers = message.headers
        out = []
        for binding, (match_all, _with_x, wanted) in self._bindings.items():
            if _matches(headers, match_all, wanted):
                out.append(binding.destination)
        return out


def _matches(headers: dict[str, Any], match_all: bool, wanted: list[tuple[str, Any]]) -> bool:
    if match_all:
        for k, v in wanted:
            if k not in headers or (v is not None and headers[k] != v):
                return False
        return True
    for k, v in wanted:
        if k in headers and (v is None or headers[k] == v):
            return True
    return False
