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
        # routing key -> the list ``route`` answers, made when a binding comes or goes, so a
        # publish allocates nothing here (callers only read it, as the topic type's answers)
        self._routes: dict[str, list[Any]] = {}

    def validate_binding(self, binding: Binding) -> None:
        pass

    def bind(self, binding: Binding) -> None:
        key = binding.routing_key
        found = self._by_key.get(key)
        if found is None:
            found = self._by_key[key] = {}
        found[binding] = binding.destination
        self._routes[key] = list(found.values())

    def unbind(self, binding: Binding) -> None:
        key = binding.routing_key
        found = self._by_key.get(key)
        if found is not None and found.pop(binding, None) is not None:
            if found:
                self._routes[key] = list(found.values())
            else:
                del self._by_key[key]
                del self._routes[key]

    def route(self, message: Message) -> list[Any]:
        found = self._routes.get(message.routing_key)
        return [] if found is None else found
