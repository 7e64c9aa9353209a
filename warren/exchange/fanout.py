"""``fanout``: every bound destination gets every message; keys are ignored."""

from __future__ import annotations

from typing import Any, ClassVar

from ..model.message import Message
from .interface import Binding


class FanoutExchange:
    name: ClassVar[str] = "fanout"

    def __init__(self, arguments: dict[str, Any] | None = None) -> None:
        self._bindings: dict[Binding, Any] = {}          # binding -> destination
        self._destinations: list[Any] | None = []        # rebuilt on the first route after a change

    def validate_binding(self, binding: Binding) -> None:
        pass

    def bind(self, binding: Binding) -> None:
        self._bindings[binding] = binding.destination
        self._destinations = None

    def unbind(self, binding: Binding) -> None:
        if self._bindings.pop(binding, None) is not None:
            self._destinations = None

    def route(self, message: Message) -> list[Any]:
        if self._destinations is None:
            self._destinations = list(self._bindings.values())
        return self._destinations
