"""``fanout``: every bound destination gets every message; keys are ignored."""

from __future__ import annotations

from typing import Any, ClassVar

from .interface import Binding


class FanoutExchange:
    name: ClassVar[str] = "fanout"

    def __init__(self, arguments: dict[str, Any] | None = None) -> None:
        self._bindings: list[Binding] = []
        self._destinations: list[Any] = []

    def validate_binding(self, binding: Binding) -> None:
        pass

    def bind(self, binding: Binding) -> None:
        self._bindings.append(binding)
        self._destinations = [b.destination for b in self._bindings]

    def unbind(self, binding: Binding) -> None:
        if binding in self._bindings:
            self._bindings.remove(binding)
            self._destinations = [b.destination for b in self._bindings]

    def route(self, message) -> list[Any]:
        return self._destinations
