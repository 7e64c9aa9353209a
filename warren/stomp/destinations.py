"""STOMP destination names -> where a SEND goes and what a SUBSCRIBE reads, as RabbitMQ maps them.

RabbitMQ's STOMP plugin (``rabbit_routing_parser`` / "Destinations" in its docs) is the model,
plus ActiveMQ's habit of writing bare names:

==========================  =========================================  =========================================
destination                 SEND                                        SUBSCRIBE
==========================  =========================================  =========================================
``/queue/q``                default exchange, key ``q`` (declares q:    queue ``q`` (declared durable, shared,
                            durable, not exclusive, not auto-delete,    not auto-delete unless the frame's
                            if missing)                                 ``durable``/``auto-delete``/``exclusive``
                                                                        headers say otherwise)
``/topic/k``                ``amq.topic``, key ``k``                    a private queue bound to ``amq.topic``
                                                                        with ``k``; durable and kept while the
                                                                        subscriber is away when the frame names a
                                                                        durable subscription
``/exchange/x/k``           exchange ``x``, key ``k`` (``/exchange/x``  a private queue bound to ``x`` with ``k``
                            means key "")
``/amq/queue/q``            default exchange, key ``q`` (q must exist)  existing queue ``q`` (ERROR if missing)
``/temp-queue/t``           a private reply queue of this session       that same private queue
``/reply-queue/q``          default exchange, key ``q``                 existing queue ``q``
``q`` (no leading ``/``)    as ``/queue/q`` (ActiveMQ users' habit)     as ``/queue/q``
==========================  =========================================  =========================================

Names are taken verbatim after the prefix (RabbitMQ also leaves ``%`` alone in them). As in
RabbitMQ, a name after the prefix must not be empty and must not contain ``/`` (``/queue/a/b``
is invalid; ``/exchange/x/k`` has at most the exchange and the key), and the ERROR body says
``'<rest>' is not a valid <type> destination`` with the text after ``/<type>``. Anything else
starting with ``/`` is an invalid destination.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .codec import StompError

__all__ = ["Destination", "Kind", "parse_destination", "destination_header"]


class Kind(enum.Enum):
    QUEUE = "/queue/"
    TOPIC = "/topic/"
    EXCHANGE = "/exchange/"
    AMQ_QUEUE = "/amq/queue/"
    TEMP_QUEUE = "/temp-queue/"
    REPLY_QUEUE = "/reply-queue/"


_PREFIXES = tuple((kind.value, kind) for kind in Kind)


@dataclass(frozen=True, slots=True)
class Destination:
    """A parsed destination: its kind, the queue or exchange name, and the routing key."""

    text: str          # as the client wrote it (echoed in MESSAGE frames of temp queues)
    kind: Kind
    name: str          # queue name (queue kinds), exchange name (EXCHANGE), key (TOPIC)
    routing_key: str   # key a SEND publishes with
    #: the exchange a SEND goes to; worked out once, as destinations are cached and every
    #: SEND asks (an Enum member's lookup costs some 100 ns on Python 3.11)
    exchange: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        kind = self.kind
        object.__setattr__(self, "exchange", "amq.topic" if kind is Kind.TOPIC
                           else self.name if kind is Kind.EXCHANGE else "")


#: parsed destinations by text (a publisher names the same few over and over); bounded in
#: number and in the length of what is kept (AMQP names are at most 255 characters)
_CACHE_LIMIT = 4096
_CACHED_LENGTH = 300
_parsed: dict[str, Destination] = {}


def parse_destination(text: str | None, command: str = "SEND") -> Destination:
    """Parse the ``destination`` header of a *command* frame; StompError (in RabbitMQ's
    words) when it is missing or names nothing. Valid ones are remembered: a Destination is
    immutable and depends on the text alone."""
    if text is None:
        raise StompError("Missing destination",
                         f'"{command}" must include a \'destination\' header\n')
    destination = _parsed.get(text)
    if destination is None:
        destination = _parse(text)
        if len(text) <= _CACHED_LENGTH:
            if len(_parsed) >= _CACHE_LIMIT:
                _parsed.clear()
            _parsed[text] = destination
    return destination


def _parse(text: str) -> Destination:
    if not text.startswith("/"):
        if not text:
            raise StompError("Invalid destination", "empty destination")
        return Destination(text, Kind.QUEUE, text, text)
    for prefix, kind in _PREFIXES:
        if text.startswith(prefix) or text == prefix[:-1]:
            rest = text[len(prefix):]
            if kind is Kind.EXCHANGE:
                exchange, _, key = rest.partition("/")
                if exchange and "/" not in key:
                    return Destination(text, kind, exchange, key)
            elif rest and "/" not in rest:
                return Destination(text, kind, rest, rest)
            raise StompError(
                "Invalid destination",
                f"'{text[len(prefix) - 1:]}' is not a valid {kind.name.lower().replace('_', ' ')}"
                " destination\n")
    # RabbitMQ's words for a destination of no known type
    raise StompError(
        "Unknown destination",
        f"'{text}' is not a valid destination.\nValid destination types are: /temp-queue, "
        "/exchange, /topic, /queue, /amq/queue, /reply-queue/.\n",
    )


def destination_header(exchange: str, routing_key: str) -> str:
    """The ``destination`` of a MESSAGE frame for a message published to exchange/key.

    RabbitMQ's rule: the default exchange is ``/queue/key``, ``amq.topic`` is ``/topic/key``,
    any other exchange ``/exchange/x/key`` (``/exchange/x`` when the key is empty).
    """
    if exchange == "":
        return "/queue/" + routing_key
    if exchange == "amq.topic":
        return "/topic/" + routing_key
    if not routing_key:
        return "/exchange/" + exchange      # as RabbitMQ: no trailing '/' for an empty key
    return f"/exchange/{exchange}/{routing_key}"
