"""``x-delayed-message``: RabbitMQ's delayed-message plugin as an exchange type.

An exchange declared with type ``x-delayed-message`` and argument ``x-delayed-type`` (any other
registered type) routes like that type, except that a message whose ``x-delay`` header is a
positive integer is held for that many milliseconds first. As in the plugin:

- a missing or non-integer ``x-delay``, or one <= 0, routes at once;
- a held message routes to nothing at publish time, so a ``mandatory`` publisher gets a
  ``basic.return`` (and the exchange's alternate exchange, if any, gets a copy) - the plugin
  documents that it does not support ``mandatory``;
- when the delay is over the message is published again through the same exchange with
  ``x-delay`` negated (consumers see ``-delay``), which routes it at once through the
  underlying type, its exchange-to-exchange bindings and alternate exchange.

Persistence (the simplest robust way the store offers): a persistent message held by a durable
exchange is written as a runtime *parameter* (``broker.save_definition("parameter", ...)``)
holding the message record (base64) and the absolute due time; the parameter is deleted when
the message is released. On recovery the exchange finds its parameters in ``broker.parameters``
and re-arms the timers; messages that fell due while the broker was down are released as soon
as the reactor runs (after every queue has been recovered). Definitions share the store's group
commit, so the window between a publisher confirm and durability is one reactor turn, as for
definitions; a message is held in memory once, not in any queue, so it shows in no queue count.
Transient messages, and messages held by transient exchanges, are kept in memory only.

The type lives in the broker, not among the exchange types it builds on: it publishes through
its vhost and persists through the broker's parameters, so it sits above both and adds itself
to the exchange registry when the broker is loaded (``vhost.py`` imports it).
"""

from __future__ import annotations

import base64
import logging
import secrets
from typing import TYPE_CHECKING, Any, ClassVar

from ..exchange.interface import Binding
from ..exchange.registry import EXCHANGE_TYPES, register
from ..model.errors import PreconditionFailed
from ..model.message import Message
from ..store.interface import resource_key

if TYPE_CHECKING:
    from ..exchange.exchange import Exchange
    from .vhost import VirtualHost

log = logging.getLogger("warren.broker.delayed")

#: prefix of the runtime-parameter keys that hold persisted delayed messages
PARAMETER_PREFIX = resource_key("x-delayed-message", "")


def delay_of(message: Message) -> int | None:
    """The plugin's rule: only a positive integer ``x-delay`` delays."""
    value = message.headers.get("x-delay")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


class DelayedMessageExchange:
    name: ClassVar[str] = "x-delayed-message"

    def __init__(self, arguments: dict[str, Any] | None = None) -> None:
        arguments = arguments or {}
        inner = arguments.get("x-delayed-type")
        if isinstance(inner, bytes):
            inner = inner.decode("utf-8", "replace")
        if inner == self.name:
            raise PreconditionFailed(
                "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'")
        cls = EXCHANGE_TYPES.get(inner) if isinstance(inner, str) else None
        if cls is None:
            raise PreconditionFailed(
                "Invalid argument, 'x-delayed-type' must be an existing exchange type")
        self.inner = cls(arguments)           # routing once the delay is over
        self.vhost: VirtualHost | None = None  # set by attach(); None: delays are ignored
        self.exchange: Exchange | None = None
        self.pending: dict[str, Any] = {}      # key -> IDelayedCall of each held message

    # ------------------------------------------------------------------ the type interface
    def validate_binding(self, binding: Binding) -> None:
        self.inner.validate_binding(binding)

    def bind(self, binding: Binding) -> None:
        self.inner.bind(binding)

    def unbind(self, binding: Binding) -> None:
        self.inner.unbind(binding)

    def route(self, message: Message) -> list[Any]:
        delay = delay_of(message)
        if delay is None or self.vhost is None:
            return list(self.inner.route(message))
        self._hold(message, delay)
        return []

    # ------------------------------------------------------------------ holding
    def attach(self, vhost: "VirtualHost", exchange: "Exchange") -> None:
        """Called when the exchange is declared or recovered: re-arm persisted messages."""
        self.vhost = vhost
        self.exchange = exchange
        broker = vhost.broker
        mine = self._parameter_prefix()
        for key, value in list(broker.parameters.items()):
            if not key.startswith(mine) or key in self.pending:
                continue
            try:
                record = base64.b64decode(value["record"])
                message = Message.from_record(record, broker.codec, 0)
                due = float(value["due"])
            except (KeyError, TypeError, ValueError):
                log.warning("dropping unreadable delayed message %r", key)
                self._forget(key)
                continue
            self._arm(key, message, due)

    def _attached(self) -> tuple[VirtualHost, Exchange]:
        """The vhost and exchange ``attach`` gave: nothing is held before it."""
        if self.vhost is None or self.exchange is None:
            raise RuntimeError("x-delayed-message exchange used before attach()")
        return self.vhost, self.exchange

    def _parameter_prefix(self) -> str:
        vh, ex = self._attached()
        return resource_key("x-delayed-message", vh.name, ex.name, "")

    def _hold(self, message: Message, delay: int) -> None:
        vh, ex = self._attached()
        broker = vh.broker
        due = broker.clock.seconds() + delay / 1000.0
        key = self._parameter_prefix() + secrets.token_hex(8)
        if message.persistent and ex.durable:
            value = {"vhost": vh.name, "exchange": ex.name, "due": due,
                     "record": base64.b64encode(message.to_record()).decode("ascii")}
            broker.parameters[key] = value
            broker.save_definition("parameter", key, value)
        self._arm(key, message, due)

    def _arm(self, key: str, message: Message, due: float) -> None:
        clock = self._attached()[0].broker.clock
        delay = max(0.0, due - clock.seconds())
        self.pending[key] = clock.callLater(delay, self._release, key, message)

    def _release(self, key: str, message: Message) -> None:
        self.pending.pop(key, None)
        self._forget(key)
        vh, ex = self._attached()
        if vh.exchanges.get(ex.name) is not ex:
            return  # the exchange was deleted meanwhile: its held messages go with it
        props = message.properties.copy()
        headers = dict(props.headers or {})
        delay = headers.get("x-delay")
        if isinstance(delay, int) and not isinstance(delay, bool):
            headers["x-delay"] = -delay
        props.headers = headers
        released = Message(message.exchange, message.routing_key, message.body,
                           codec=message.codec, props=props)
        released.amqp1_sections = message.amqp1_sections
        try:
            vh.publish(ex, released)
        except Exception:
            log.exception("releasing delayed message from exchange %r failed", ex.name)

    def _forget(self, key: str) -> None:
        broker = self._attached()[0].broker
        if broker.parameters.pop(key, None) is not None:
            broker.save_definition("parameter", key, None)

    def cancel_all(self) -> None:
        """Drop every held message (the exchange is being deleted)."""
        for key, call in list(self.pending.items()):
            if call.active():
                call.cancel()
            self._forget(key)
        self.pending.clear()


register(DelayedMessageExchange)
