"""Exchange types by name, as RabbitMQ registers ``<<"direct">>`` and friends."""

from __future__ import annotations

from .direct import DirectExchange
from .fanout import FanoutExchange
from .headers import HeadersExchange
from .topic import TopicExchange

EXCHANGE_TYPES: dict[str, type] = {
    cls.name: cls for cls in (DirectExchange, FanoutExchange, TopicExchange, HeadersExchange)
}


def register(cls: type) -> None:
    """Add an exchange type (the delayed-message type registers itself this way)."""
    EXCHANGE_TYPES[cls.name] = cls


from . import delayed  # noqa: E402,F401  (registers x-delayed-message)
from . import federation_upstream  # noqa: E402  (x-federation-upstream, for downstreams)

register(federation_upstream.FederationUpstreamExchange)
