"""``direct``: deliver to every binding whose key equals the routing key (a dict lookup)."""

from __future__ import annotations

from typing import Any, ClassVar

from ..model.message import Message
from .interface import Binding


class DirectExchange:
    name: ClassVar[str] = "direct"

    def __init__(self, arguments: dict[str, Any] | None = None) -> None:
        # routing key -> {binding: destination}: bind and unbind are dict operations, however
        # many bindings share a key
        self._by_key: dict[str, dict[Binding, Any]] = {}

    def validate_binding(self, binding: Binding) -> None:
        pass

    def bind(self, binding: Binding) -> None:
        found = self._by_key.get(binding.routing_key)
        if found is None:
            found = self._by_key[binding.routing_key] = {}
        found[binding] = binding.destination

    def unbind(self, binding: Binding) -> None:
        found = self._by_key.get(binding.routing_key)
        if found is not None and found.pop(binding, None) is not None and not found:
            del self._by_key[binding.routing_key]

    def route(self, message: Message) -> list[Any]:
        found = self._by_key.get(message.routing_key)
        if not found:
            return []
        return list(found.values())
