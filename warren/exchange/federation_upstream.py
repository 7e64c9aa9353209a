"""``x-federation-upstream``: the internal exchange a federation downstream declares here.

A downstream broker that federates exchange X from this one declares, on this broker, an
internal exchange of this type bound to X for the keys it wants, and a queue bound to it that
it consumes. The exchange is a fanout that drops what must not travel on, so a federation
ring or mesh stays loop-free without the downstream ever seeing the message
(``rabbit_federation_upstream_exchange``): a message whose ``x-received-from`` header already
lists ``x-max-hops`` brokers, or lists the downstream itself (its ``cluster-name`` and
``vhost``), goes nowhere.

Declaring one checks its arguments as RabbitMQ does (``x-max-hops`` a number,
``x-downstream-name`` and ``x-downstream-vhost`` strings), with RabbitMQ's words.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..model.errors import PreconditionFailed
from ..model.message import Message
from .fanout import FanoutExchange

#: the header federation links write on every message they move (newest entry first)
ROUTING_HEADER = "x-received-from"


class FederationUpstreamExchange(FanoutExchange):
    name: ClassVar[str] = "x-federation-upstream"

    def __init__(self, arguments: dict[str, Any] | None = None) -> None:
        super().__init__(arguments)
        args = arguments or {}
        _check(args, "x-max-hops", (int,), "long")
        _check(args, "x-downstream-name", (str, bytes), "longstr")
        _check(args, "x-downstream-vhost", (str, bytes), "longstr")
        self.max_hops = int(args["x-max-hops"])
        self.downstream_name = _text(args["x-downstream-name"])
        self.downstream_vhost = _text(args["x-downstream-vhost"])

    def route(self, message: Message) -> list[Any]:
        if should_forward(message.headers, self.max_hops, self.downstream_name,
                          self.downstream_vhost):
            return super().route(message)
        return []


def should_forward(headers: dict[str, Any] | None, max_hops: int, name: str,
                   vhost: str) -> bool:
    """``rabbit_federation_util:should_forward``: fewer hops than ``max_hops`` so far, and
    never back to a broker (cluster name and vhost) the message already passed."""
    trail = (headers or {}).get(ROUTING_HEADER)
    if not isinstance(trail, list):
        return True
    return len(trail) < max_hops and not already_seen(name, vhost, trail)


def already_seen(name: str, vhost: str, trail: list[Any]) -> bool:
    for entry in trail:
        if isinstance(entry, dict) and _text(entry.get("cluster-name")) == name \
                and _text(entry.get("vhost")) == vhost:
            return True
    return False


def _check(args: dict[str, Any], key: str, types: tuple[type, ...], type_name: str) -> None:
    # RabbitMQ: rabbit_federation_util:validate_arg, a precondition_failed
    if key not in args:
        raise PreconditionFailed(f"Argument {key} missing")
    value = args[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise PreconditionFailed(f"Argument {key} must be of type {type_name}")


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
