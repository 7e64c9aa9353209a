"""``direct``: deliver to every binding whose key equals the routing key (a dict lookup)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, ClassVar

from ..model.message import Message
from .interface import Binding
from .sharded_map import grown

#: ``_routes``' entry for a key several bindings share once one came or went: ``route`` makes
#: the list at the next publish on the key. Made at each bind, it was a copy of all of them
#: per bind (N queues bound to one key: O(N) each, 0.9 ms a bind at 50,000)
_STALE: list[Any] = []


class DirectExchange:
    name: ClassVar[str] = "direct"

    def __init__(self, arguments: dict[str, Any] | None = None) -> None:
        # routing key -> its binding, or {binding: destination} when several share the key:
        # bind and unbind are dict operations however many there are, and the usual key with
        # one binding costs no dict of its own (at 1M keys, 1M fewer objects for the cyclic
        # collector to scan and some 200 MB less)
        self._by_key: MutableMapping[str, Binding | dict[Binding, Any]] = {}
        # routing key -> the list ``route`` answers, made when a binding comes or goes, so a
        # publish allocates nothing here (callers only read it, as the topic type's answers)
        self._routes: MutableMapping[str, list[Any]] = {}
        # both split past SPLIT_AT keys (sharded_map.py: no resize of a million at one bind)

    def validate_binding(self, binding: Binding) -> None:
        pass

    def bind(self, binding: Binding) -> None:
        key = binding.routing_key
        found = self._by_key.get(key)
        if found is None:
            self._by_key[key] = binding
            self._routes[key] = [binding.destination]
            self._by_key = grown(self._by_key)
            self._routes = grown(self._routes)
            return
        if not isinstance(found, dict):
            if found is binding:
                return
            found = self._by_key[key] = {found: found.destination}
        found[binding] = binding.destination
        self._routes[key] = _STALE

    def unbind(self, binding: Binding) -> None:
        key = binding.routing_key
        found = self._by_key.get(key)
        if found is None:
            return
        if not isinstance(found, dict):
            if found is binding:
                del self._by_key[key]
                del self._routes[key]
            return
        if found.pop(binding, None) is None:
            return
        if len(found) == 1:
            ((last, destination),) = found.items()
            self._by_key[key] = last
            self._routes[key] = [destination]
        else:
            self._routes[key] = _STALE

    def route(self, message: Message) -> list[Any]:
        found = self._routes.get(message.routing_key)
        if found is None:
            return []
        if found is _STALE:
            key = message.routing_key
            shared = self._by_key[key]
            assert isinstance(shared, dict)   # a key with one binding is never stale
            found = self._routes[key] = list(shared.values())
        return found
