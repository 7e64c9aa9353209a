"""``direct``: deliver to every binding whose key equals the routing key (a dict lookup)."""

from __future__ import annotations

from typing import Any, ClassVar

from .interface import Binding


class DirectExchange:
    name: ClassVar[str] = "direct"

    def __init__(self, arguments: dict[str, Any] | None = None) -> None:
        self._by_key: dict[str, list[Binding]] = {}

    def validate_binding(self, binding: Binding) -> None:
        pass

    def bind(self, binding: Binding) -> None:
        self._by_key.setdefault(binding.routing_key, []).append(binding)

    def unbind(self, binding: Binding) -> None:
        found = self._by_key.get(binding.routing_key)
        if found and binding in found:
            found.remove(binding)
            if not found:
                del self._by_key[binding.routing_key]

    def route(self, message) -> list[Any]:
        found = self._by_key.get(message.routing_key)
        if not found:
            return []
        if len(found) == 1:
            return [found[0].destination]
        return [b.destination for b in found]
