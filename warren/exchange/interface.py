"""The one behaviour every exchange type implements (RabbitMQ's ``rabbit_exchange_type``).

An exchange type owns the routing structure of one exchange: it is told about each binding
(``bind``/``unbind``), may refuse a binding up front (``validate_binding``), and answers
``route`` with the destinations a message goes to. It knows nothing of queues' contents,
permissions or protocols; a destination is whatever object the binding names (a queue or an
exchange), compared by identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Protocol

from ..broker.message import Message


@dataclass(frozen=True, slots=True, eq=False)
class Binding:
    """source exchange -> destination (queue or exchange), with a key and arguments."""

    source: str
    destination: Any            # a Queue or an Exchange (each has .name and .kind)
    routing_key: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str, tuple]:
        """Identity of a binding as RabbitMQ defines it (same args = same binding)."""
        return (self.source, self.destination.kind, self.destination.name, self.routing_key,
                _freeze(self.arguments))


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


class ExchangeType(Protocol):
    name: ClassVar[str]

    def __init__(self, arguments: dict[str, Any]) -> None: ...

    def validate_binding(self, binding: Binding) -> None:
        """Raise PreconditionFailed when the binding can never be valid for this type."""

    def bind(self, binding: Binding) -> None: ...

    def unbind(self, binding: Binding) -> None: ...

    def route(self, message: Message) -> Iterable[Any]:
        """Destinations (queues or exchanges) for ``message``; duplicates allowed."""
