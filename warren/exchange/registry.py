"""Exchange types by name, as RabbitMQ registers ``<<"direct">>`` and friends."""

from __future__ import annotations

from .direct import DirectExchange
from .fanout import FanoutExchange
from .federation_upstream import FederationUpstreamExchange
from .headers import HeadersExchange
from .interface import ExchangeType
from .topic import TopicExchange

EXCHANGE_TYPES: dict[str, type[ExchangeType]] = {
    cls.name: cls for cls in (DirectExchange, FanoutExchange, TopicExchange, HeadersExchange,
                              FederationUpstreamExchange)
}


def register(cls: type[ExchangeType]) -> None:
    """Add an exchange type from a layer above: the broker's ``x-delayed-message`` type
    (``broker/delayed.py``) registers itself this way, as RabbitMQ's plugin does."""
    EXCHANGE_TYPES[cls.name] = cls
