"""The one behaviour every exchange type implements (RabbitMQ's ``rabbit_exchange_type``).

An exchange type owns the routing structure of one exchange: it is told about each binding
(``bind``/``unbind``), may refuse a binding up front (``validate_binding``), and answers
``route`` with the destinations a message goes to. It knows nothing of queues' contents,
permissions or protocols; a destination is whatever object the binding names (a queue or an
exchange), compared by identity.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Protocol

from ..model.message import Message
from .sharded_map import grown


#: ``Binding.key``: source, destination kind and name, routing key, frozen arguments
BindingKey = tuple[str, str, str, str, Any]


@dataclass(frozen=True, slots=True, eq=False)
class Binding:
    """source exchange -> destination (queue or exchange), with a key and arguments."""

    source: str
    destination: Any            # a Queue or an Exchange (each has .name and .kind)
    routing_key: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> BindingKey:
        """Identity of a binding as RabbitMQ defines it (same args = same binding)."""
        return (self.source, self.destination.kind, self.destination.name, self.routing_key,
                freeze(self.arguments))


def freeze(value: Any) -> Any:
    """Binding arguments as a hashable key: equal arguments, equal keys (RabbitMQ compares a
    binding's arguments as a whole, whatever the order of a table's fields)."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


class BindingSet:
    """Bindings in insertion order (by shard past ``SPLIT_AT``), found by identity or by
    ``Binding.key`` in O(1).

    An exchange keeps one for the bindings it is the source of and one for the
    exchange-to-exchange bindings into it; a queue keeps one for the bindings into it. Iterating
    yields the bindings; ``list(s)`` before changing it while walking it.
    """

    __slots__ = ("_by_key", "_keys")

    def __init__(self) -> None:
        # split into shards past SPLIT_AT entries (sharded_map.py: no resize of a million)
        self._by_key: MutableMapping[BindingKey, Binding] = {}
        # identity -> key (insertion ordered, by shard once split)
        self._keys: MutableMapping[Binding, BindingKey] = {}

    def find(self, key: BindingKey) -> Binding | None:
        return self._by_key.get(key)

    def add(self, binding: Binding, key: BindingKey | None = None) -> None:
        if key is None:
            key = binding.key
        self._by_key[key] = binding
        self._keys[binding] = key
        self._by_key = grown(self._by_key)
        self._keys = grown(self._keys)

    def discard(self, binding: Binding) -> bool:
        key = self._keys.pop(binding, None)
        if key is None:
            return False
        if self._by_key.get(key) is binding:
            del self._by_key[key]
        return True

    def __contains__(self, binding: object) -> bool:
        return binding in self._keys

    def __iter__(self) -> Iterator[Binding]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __repr__(self) -> str:
        return f"BindingSet({list(self._keys)!r})"


class ExchangeType(Protocol):
    """What the registry holds and ``Exchange.impl`` is: one exchange's routing structure.

    A type that needs its vhost (``broker/delayed.py``) also has ``attach(vhost, exchange)``,
    called when the exchange is declared or recovered, and ``cancel_all()``, called when it is
    deleted; the vhost calls them only where they exist."""

    name: ClassVar[str]

    def __init__(self, arguments: dict[str, Any]) -> None: ...

    def validate_binding(self, binding: Binding) -> None:
        """Raise PreconditionFailed when the binding can never be valid for this type."""

    def bind(self, binding: Binding) -> None: ...

    def unbind(self, binding: Binding) -> None: ...

    def route(self, message: Message) -> list[Any]:
        """Destinations (queues or exchanges) for ``message``; duplicates allowed. The list
        may be the type's cached answer, shared by every publish with the same key: callers
        read it and never change it (a type makes a new list when its bindings change)."""
