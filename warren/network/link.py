"""The outbound link: one AMQP 0-9-1 client connection to another broker, kept up.

Every bridge (shovel, federation upstream, network connector) needs the same thing: a
connection to one of a list of URIs, one channel on it in confirm mode, and reconnection when
it drops, without blocking the reactor. The pieces, as a front end has them (STYLE P2):

- :mod:`.client` decides what bytes mean (sans-I/O);
- :mod:`.protocol` moves bytes between the transport and that machine, and keeps the
  heartbeat and close timers (shaped like Twisted's ``H2Connection``);
- :class:`Link` (here) owns the lifecycle: which URI next, the retry delay,
  ``state``/``reason``, counters and one log line per state change;
- :mod:`.channel` is the per-connection API its user gets in ``on_ready``: publish with
  confirms, consume, ack, declare, bind. It dies with its connection.

Anything the server closes on channel 1 (a channel error such as NOT_FOUND, Connection.Close,
a cancelled consumer) takes the whole link down; it reconnects after ``reconnect_delay``, as
RabbitMQ's shovels restart. A call whose refusal is an answer, not a failure (is this queue
there?), goes on a spare channel instead (:meth:`Link.probe`): its Channel.Close fails only
that call.

Message properties are plain dicts (see :mod:`warren.network.client`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, ClassVar, cast
from typing import Protocol as TypingProtocol

from OpenSSL import SSL, crypto
from twisted.internet import defer
from twisted.internet import error as net_error
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from . import client as amqp
from .channel import (CHANNEL, LinkChannel, LinkCounters, LinkDown, RemoteClosed,
                      UnexpectedReply)
from .protocol import AmqpClientProtocol, ClientProtocolFactory
from .tls import ssl_reason, tls_options
from .uri import AmqpURI, LocalBroker, parse_uri

log = logging.getLogger(__name__)

DEFAULT_RECONNECT_DELAY = 5.0        # seconds, RabbitMQ's shovel default
DEFAULT_MAX_RECONNECT_DELAY = 60.0   # backoff cap
NOT_FOUND = 404                      # the reply code of a passive declare's miss
DEFAULT_CONNECTION_TIMEOUT = 60.0    # seconds (RabbitMQ: 60000 ms): TCP, TLS, handshake


class LinkState(str, enum.Enum):
    STARTING = "starting"        # connecting, handshaking, or waiting to retry
    RUNNING = "running"
    BLOCKED = "blocked"          # the server sent Connection.Blocked: publishes wait
    TERMINATED = "terminated"    # close() was called


class LinkUser(TypingProtocol):
    """What a bridge gives a :class:`Link`. Both are called on the reactor thread."""

    def on_ready(self, channel: LinkChannel) -> None:
        """Connected and the channel is open (confirm mode): declare, consume, publish."""

    def on_down(self, reason: str) -> None:
        """A ready connection was lost; ``channel`` from ``on_ready`` is dead now."""


# ------------------------------------------------------------------------------ link
class Link:
    """One connection to the first reachable of ``uris``, re-established when it drops.

    ``uris`` are tried in turn, each once per round; after a round with no success the link
    waits ``reconnect_delay`` seconds, doubling per failed round up to
    ``max_reconnect_delay``, and starts the next round. A connection that reaches ``on_ready``
    resets the backoff. ``state``, ``reason`` and ``counters`` are for status displays;
    ``on_state(state, reason)`` is called on every transition and every failed round.
    """

    def __init__(self, uris: Sequence[str | AmqpURI], user: LinkUser, *,
                 reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
                 max_reconnect_delay: float = DEFAULT_MAX_RECONNECT_DELAY,
                 name: str = "", reactor: Any = None,
                 on_state: Callable[[LinkState, str], Any] | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.name = name
        if isinstance(uris, (str, AmqpURI)):
            uris = [uris]     # one URI, not a sequence of characters
        parsed = [parse_uri(u) if isinstance(u, str) else u for u in uris]
        if not parsed:
            raise ValueError("a link needs at least one URI")
        local = [u for u in parsed if isinstance(u, LocalBroker)]
        if local:
            raise ValueError(f"{local[0].redacted} means this broker; "
                             f"the caller connects to it in-process, not a Link")
        self.uris = [u for u in parsed if isinstance(u, AmqpURI)]
        self.user = user
        self.on_state = on_state   # observer for status displays: (state, reason) per change
        self.reconnect_delay = max(0.0, reconnect_delay)
        self.max_reconnect_delay = max(self.reconnect_delay, max_reconnect_delay)
        self.state = LinkState.STARTING
        self.reason = ""
        self.counters = LinkCounters()
        self.uri: AmqpURI | None = None          # the one connected or being tried
        self.channel: LinkChannel | None = None  # set while ready
        self._spares: dict[int, LinkChannel] = {}              # open spare channels
        self._opening: dict[int, defer.Deferred] = {}          # spares awaiting Open-Ok
        self._blocked = False
        self._next_index = 0
        self._failed_rounds = 0
        self._tried_this_round = 0
        self._protocol: AmqpClientProtocol | None = None
        self._connecting: defer.Deferred | None = None
        self._timeout_call = None
        self._retry_call = None
        self._closed: defer.Deferred | None = None
        self._started = False
        self._logged: tuple[LinkState, str] | None = None
        self._was_lost = False
        self._last_callback_error = ""

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Begin connecting (once; later calls do nothing). Call on the reactor thread."""
        if self.state is LinkState.TERMINATED:
            raise RuntimeError("a closed link cannot be started again")
        if self._started:
            return
        self._started = True
        self._log_state()
        self._attempt()

    def close(self) -> defer.Deferred:
        """Stop for good: Connection.Close if connected, fail whatever still waits."""
        if self._closed is not None:
            return self._closed
        self._closed = defer.Deferred()
        self._set_state(LinkState.TERMINATED, "closed")
        for call in (self._retry_call, self._timeout_call):
            if call is not None and call.active():
                call.cancel()
        if self._connecting is not None:
            self._connecting.cancel()   # its errback may finish the close already
        self._spares_die("link closed")
        if self._protocol is None:
            self._finish_close()
        else:
            self._protocol.close("link closed")
        return self._closed

    @property
    def writable(self) -> bool:
        """Publishes go out now (not blocked by the server, socket buffer not full)."""
        proto = self._protocol
        return (self.state is LinkState.RUNNING and proto is not None and not proto.paused)

    # -- the channel API on the link itself ------------------------------------------------
    # For users that keep only the Link: each call goes to the channel of the connection
    # that is up now, or fails with LinkDown. Delivery tags belong to one connection, so a
    # user that acks after a reconnect should ack through the LinkChannel it got in
    # on_ready (a stale tag is then dropped rather than acked on the wrong channel).
    def publish(self, exchange: str, routing_key: str, properties: dict | None,
                body: bytes) -> defer.Deferred:
        return self._current("publish", exchange, routing_key, properties, body)

    def consume(self, queue: str, prefetch: int, on_delivery: Callable[[amqp.Delivery], Any],
                no_ack: bool = False) -> defer.Deferred:
        return self._current("consume", queue, prefetch, on_delivery, no_ack)

    def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        if self.channel is not None:
            self.channel.ack(delivery_tag, multiple)

    def declare_queue(self, queue: str = "", **kwargs: Any) -> defer.Deferred:
        return self._current("declare_queue", queue, **kwargs)

    def declare_exchange(self, exchange: str, exchange_type: str = "direct",
                         **kwargs: Any) -> defer.Deferred:
        return self._current("declare_exchange", exchange, exchange_type, **kwargs)

    def bind(self, queue: str, exchange: str, routing_key: str = "",
             arguments: dict | None = None) -> defer.Deferred:
        return self._current("bind", queue, exchange, routing_key, arguments)

    def probe(self, call: Callable[[LinkChannel], defer.Deferred]) -> defer.Deferred:
        """Run ``call`` on a spare channel of the current connection, then close that channel.

        The Deferred has ``call``'s result, or its failure: a :class:`RemoteClosed` when the
        server refused it (which closed the spare channel only, the link stays up), or
        :class:`LinkDown` when the link is not running or the connection went meanwhile.
        """
        proto = self._protocol
        if proto is None or self.channel is None or not self.channel.alive or \
                self.state not in (LinkState.RUNNING, LinkState.BLOCKED):
            return defer.fail(LinkDown(self.reason or f"link is {self.state.value}"))
        client = proto.client
        number = next((n for n in range(CHANNEL + 1, client.channel_max + 1)
                       if n not in client.channels), None)
        if number is None:
            return defer.fail(LinkDown(f"no free channel on {proto.uri.address}"))
        opened: defer.Deferred[LinkChannel] = defer.Deferred()
        self._opening[number] = opened
        proto.write(client.open_channel(number))

        def run(spare: LinkChannel) -> defer.Deferred:
            def done(result: Any) -> Any:
                spare.close()
                return result
            return call(spare).addBoth(done)
        return opened.addCallback(run)

    def declare_unless_found(self, look: Callable[[LinkChannel], defer.Deferred],
                             declare: Callable[[], defer.Deferred]) -> defer.Deferred:
        """RabbitMQ's passive-first declare (its shovels' queues, federation's upstream
        exchange): ``look`` (a passive declare) on a spare channel, and only on NOT_FOUND
        ``declare()``, on channel 1, whose refusal takes the link down as any refusal there.
        An object that exists is used as it is, whatever its arguments. Any other refusal
        of the look (RESOURCE_LOCKED, ACCESS_REFUSED) takes the link down too, with the
        server's words as its reason."""
        def refused(failure: Any) -> Any:
            failure.trap(RemoteClosed)
            if failure.value.reply_code != NOT_FOUND:
                self.drop(closed_reason(failure.value))
                return failure
            log.info("link %s: %s: declaring it", self.name, failure.value.reply_text)
            return declare()
        return self.probe(look).addErrback(refused)

    def drop(self, reason: str) -> None:
        """Close the current connection with ``reason`` (what the status shows): the link
        reconnects after ``reconnect_delay``, as after a refusal on channel 1."""
        if self._protocol is not None:
            self._protocol.close(reason)

    def _current(self, method: str, *args: Any, **kwargs: Any) -> defer.Deferred:
        if self.channel is None or self.state not in (LinkState.RUNNING, LinkState.BLOCKED):
            return defer.fail(LinkDown(self.reason or f"link is {self.state.value}"))
        return getattr(self.channel, method)(*args, **kwargs)

    def status(self) -> dict:
        uri = self.uri.redacted if self.uri is not None else None
        return {"name": self.name, "state": self.state.value, "reason": self.reason,
                "uri": uri, **asdict(self.counters)}

    # -- connecting --------------------------------------------------------------------
    def _attempt(self) -> None:
        self._retry_call = None
        if self.state is LinkState.TERMINATED:
            return
        uri = self.uris[self._next_index]
        self._next_index = (self._next_index + 1) % len(self.uris)
        self._tried_this_round += 1
        self.uri = uri
        try:
            endpoint = self._endpoint(uri)
        except (OSError, ValueError, crypto.Error, SSL.Error) as e:
            # a missing or bad certificate file: report it and retry (it may be fixed)
            self._attempt_failed(f"TLS setup for {uri.address} failed: {e}")
            return
        factory = ClientProtocolFactory(self, uri)
        self._connecting = endpoint.connect(factory)
        self._connecting.addCallbacks(self._connected, self._connect_failed,
                                      errbackArgs=(uri,))

    def timeout_for(self, uri: AmqpURI) -> float:
        if uri.connection_timeout:
            return uri.connection_timeout / 1000.0
        return DEFAULT_CONNECTION_TIMEOUT

    def _endpoint(self, uri: AmqpURI) -> Any:
        """An IStreamClientEndpoint (typed Any and cast: mypy does not read zope's
        ``@implementer``, so it sees no Twisted object provide the interfaces it takes)."""
        endpoint = HostnameEndpoint(self.reactor, uri.host, uri.port,
                                    timeout=self.timeout_for(uri))
        if uri.tls is None:
            return endpoint
        return wrapClientTLS(tls_options(uri), cast(IStreamClientEndpoint, endpoint))

    def _connected(self, proto: AmqpClientProtocol) -> None:
        self._connecting = None
        self._protocol = proto
        # the TCP connect had its own timeout; this one bounds TLS + the AMQP handshake
        self._timeout_call = self.reactor.callLater(
            self.timeout_for(proto.uri), proto.abort,
            f"handshake with {proto.uri.address} timed out")

    def _connect_failed(self, failure: Failure, uri: AmqpURI) -> None:
        self._connecting = None
        if failure.check(defer.CancelledError) or self.state is LinkState.TERMINATED:
            self._finish_close()
            return
        self._attempt_failed(describe_connect_failure(failure, uri))

    def _attempt_failed(self, reason: str) -> None:
        self.counters.failures += 1
        self._was_lost = True
        if self._tried_this_round < len(self.uris):
            self.reason = reason
            log.debug("link %s: %s; trying the next URI", self.name, reason)
            self._attempt()
            return
        self._schedule_retry(reason)

    def _schedule_retry(self, reason: str) -> None:
        self._tried_this_round = 0
        self._failed_rounds += 1
        delay = retry_delay(self.reconnect_delay, self.max_reconnect_delay,
                            self._failed_rounds)
        self._set_state(LinkState.STARTING, reason, retry_in=delay)
        self._retry_call = self.reactor.callLater(delay, self._attempt)

    # -- events from the protocol ------------------------------------------------------
    def on_event(self, proto: AmqpClientProtocol, event: amqp.Event) -> None:
        handler = self._EVENT_HANDLERS.get(type(event))
        try:
            if handler is not None:
                handler(self, proto, event)
        except UnexpectedReply as e:
            proto.abort(f"protocol error from {proto.uri.address}: {e}")
        except Exception as e:   # a user callback failed: this connection only (P8)
            reason = f"callback failed: {e!r}"
            if reason != self._last_callback_error:   # one traceback, not one per retry
                self._last_callback_error = reason
                log.exception("link %s: callback failed", self.name)
            proto.close(reason, 541)

    def _on_opened(self, proto: AmqpClientProtocol, event: amqp.ConnectionOpened) -> None:
        if proto.client.state is not amqp.State.OPEN:
            return   # an error later in the same read already ended it
        proto.start_heartbeats(event.heartbeat)
        proto.write(proto.client.open_channel(CHANNEL))

    def _on_channel_opened(self, proto: AmqpClientProtocol,
                           event: amqp.ChannelOpened) -> None:
        if event.channel != CHANNEL:
            opened = self._opening.pop(event.channel, None)
            if opened is None:
                raise UnexpectedReply(f"Channel.OpenOk for channel {event.channel}, "
                                      f"which we did not open")
            spare = self._spares[event.channel] = LinkChannel(self, proto, event.channel)
            opened.callback(spare)
            return
        channel = self.channel = LinkChannel(self, proto)
        channel.request(proto.client.confirm_select(CHANNEL), "Confirm.SelectOk") \
            .addCallbacks(self._ready, _ignore_link_down, callbackArgs=(channel,))

    def _ready(self, _event: Any, channel: LinkChannel) -> None:
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None
        self.counters.connects += 1
        if self._was_lost:
            self.counters.reconnects += 1
        self._was_lost = False
        self._last_callback_error = ""
        self._failed_rounds = 0
        self._tried_this_round = 0
        self._set_state(LinkState.BLOCKED if self._blocked else LinkState.RUNNING, "")
        self.user.on_ready(channel)

    def _open_channel(self, event: Any) -> LinkChannel:
        """The channel that ``event`` is for; a server that sends one before our channel is
        open breaks the protocol."""
        channel = self.channel if event.channel == CHANNEL else self._spares.get(event.channel)
        if channel is None:
            raise UnexpectedReply(f"{type(event).__name__} before channel {event.channel} "
                                  f"opened")
        return channel

    def _on_method_ok(self, proto: AmqpClientProtocol, event: Any) -> None:
        name = event.method if isinstance(event, amqp.MethodOk) else _REPLY_NAMES[type(event)]
        self._open_channel(event).on_reply(name, event)

    def _on_confirm(self, proto: AmqpClientProtocol, event: amqp.PublishConfirmed) -> None:
        self._open_channel(event).on_confirm(event)

    def _on_delivery(self, proto: AmqpClientProtocol, event: amqp.Delivery) -> None:
        self._open_channel(event).on_delivery(event)

    def _on_returned(self, proto: AmqpClientProtocol, event: amqp.Returned) -> None:
        self.counters.returned += 1

    def _on_blocked(self, proto: AmqpClientProtocol, event: amqp.ConnectionBlocked) -> None:
        self._blocked = True
        if self.state is LinkState.RUNNING:
            self._set_state(LinkState.BLOCKED, f"blocked by server: {event.reason}")

    def _on_unblocked(self, proto: AmqpClientProtocol, event: Any) -> None:
        self._blocked = False
        if self.state is LinkState.BLOCKED:
            self._set_state(LinkState.RUNNING, "")
            self.on_writable(proto)

    def _on_cancelled(self, proto: AmqpClientProtocol, event: amqp.ConsumerCancelled) -> None:
        proto.abort(f"consumer {event.consumer_tag} cancelled by server "
                    f"(was its queue deleted?)")

    def _on_channel_closed(self, proto: AmqpClientProtocol, event: amqp.ChannelClosed) -> None:
        refused = RemoteClosed(event.reply_code, event.reply_text)
        if event.channel != CHANNEL:
            # a spare channel: the refused call fails, the link carries on
            opened = self._opening.pop(event.channel, None)
            if opened is not None:
                opened.errback(refused)
            spare = self._spares.pop(event.channel, None)
            if spare is not None and event.by_server:
                spare.die(closed_reason(refused), refused)
            return
        if self.channel is not None:
            self.channel.fail_first_request(refused)
        proto.close(closed_reason(refused))

    def _on_connection_closed(self, proto: AmqpClientProtocol,
                              event: amqp.ConnectionClosed) -> None:
        # the client machine queued Close-Ok already; loseConnection flushes it first
        if event.by_server and proto.lost_reason is None:
            proto.lost_reason = event.reply_text or f"connection closed with {event.reply_code}"
        proto.transport.loseConnection()

    def _on_protocol_error(self, proto: AmqpClientProtocol, event: amqp.ProtocolError) -> None:
        proto.abort(f"protocol error from {proto.uri.address}: {event.text}")

    _EVENT_HANDLERS: ClassVar[dict] = {
        amqp.ConnectionOpened: _on_opened,
        amqp.ChannelOpened: _on_channel_opened,
        amqp.MethodOk: _on_method_ok,
        amqp.ConsumeOk: _on_method_ok,
        amqp.QueueDeclared: _on_method_ok,
        amqp.PublishConfirmed: _on_confirm,
        amqp.Delivery: _on_delivery,
        amqp.Returned: _on_returned,
        amqp.ConnectionBlocked: _on_blocked,
        amqp.ConnectionUnblocked: _on_unblocked,
        amqp.ConsumerCancelled: _on_cancelled,
        amqp.ChannelClosed: _on_channel_closed,
        amqp.ConnectionClosed: _on_connection_closed,
        amqp.ProtocolError: _on_protocol_error,
    }

    def on_writable(self, proto: AmqpClientProtocol) -> None:
        if proto is self._protocol and self.channel is not None:
            self.channel.flush_held()

    def on_connection_lost(self, proto: AmqpClientProtocol, failure: Failure | None) -> None:
        if proto is not self._protocol:
            return
        self._protocol = None
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None
        reason = proto.lost_reason or describe_loss(failure, proto)
        was_ready = self.state in (LinkState.RUNNING, LinkState.BLOCKED)
        self._spares_die(reason)
        self.channel = None
        self._blocked = False
        if self.state is LinkState.TERMINATED:
            self._finish_close()
            return
        if not was_ready:
            self._attempt_failed(reason)
            return
        self.counters.failures += 1
        self._was_lost = True
        # wait before reconnecting even after a good connection: a server that closes the
        # channel at once (a NOT_FOUND queue) would otherwise be hammered in a tight loop
        self._schedule_retry(reason)
        try:
            self.user.on_down(reason)
        except Exception:
            log.exception("link %s: on_down failed", self.name)

    def _spares_die(self, reason: str) -> None:
        """The connection is going: channel 1 and every spare fail what waits on them."""
        if self.channel is not None:
            self.channel.die(reason)
        spares, self._spares = self._spares, {}
        opening, self._opening = self._opening, {}
        for spare in spares.values():
            spare.die(reason)
        for opened in opening.values():
            opened.errback(LinkDown(reason))

    def _finish_close(self) -> None:
        if self._closed is not None and not self._closed.called and self._protocol is None:
            self._closed.callback(None)

    # -- state and logging -------------------------------------------------------------
    def _set_state(self, state: LinkState, reason: str, retry_in: float | None = None) -> None:
        self.state = state
        if reason or state in (LinkState.RUNNING, LinkState.TERMINATED):
            self.reason = reason
        self._log_state(retry_in)
        if self.on_state is not None:
            self.on_state(state, self.reason)

    def _log_state(self, retry_in: float | None = None) -> None:
        """One line per change of (state, reason): a dead peer retried every 5 s for a day
        logs once, then at debug level."""
        key = (self.state, self.reason)
        where = self.uri.redacted if self.uri is not None else ""
        retry = f"; retrying in {retry_in:g}s" if retry_in is not None else ""
        text = " ".join(x for x in (self.state.value, where) if x)
        if self.reason:
            text += f": {self.reason}"
        if key == self._logged:
            log.debug("link %s: %s%s", self.name, text, retry)
            return
        self._logged = key
        level = logging.WARNING if self.reason and self.state is LinkState.STARTING \
            else logging.INFO
        log.log(level, "link %s: %s%s", self.name, text, retry)


# ------------------------------------------------------------------------------ helpers
def _ignore_link_down(failure: Failure) -> None:
    """The connection went before the channel was ready: on_connection_lost reports it."""
    failure.trap(LinkDown, RemoteClosed)


_REPLY_NAMES = {amqp.ConsumeOk: "Basic.ConsumeOk", amqp.QueueDeclared: "Queue.DeclareOk"}


def closed_reason(refused: RemoteClosed) -> str:
    """What the status says of a channel the server closed."""
    return f"channel closed by server: {refused.reply_text or refused.reply_code}"


def retry_delay(base: float, cap: float, failed_rounds: int) -> float:
    """``base`` after the first failed round, doubling per further round, at most ``cap``
    (a dead peer is retried every minute, not hammered; one good connection resets it)."""
    return min(base * 2 ** min(max(failed_rounds - 1, 0), 32), max(base, cap))


def describe_connect_failure(failure: Failure, uri: AmqpURI) -> str:
    where = uri.address
    if failure.check(net_error.ConnectionRefusedError):
        return f"connection refused to {where}"
    if failure.check(net_error.TimeoutError, net_error.TCPTimedOutError):
        return f"connection to {where} timed out"
    if failure.check(net_error.DNSLookupError):
        return f"cannot resolve host {uri.host!r}"
    return f"cannot connect to {where}: {failure.getErrorMessage()}"


def describe_loss(failure: Failure | None, proto: AmqpClientProtocol) -> str:
    where = proto.uri.address
    if failure is not None and isinstance(failure.value, SSL.Error):
        return f"TLS handshake with {where} failed: {ssl_reason(failure.value)}"
    if proto.client.state in (amqp.State.AWAIT_START, amqp.State.AWAIT_TUNE,
                              amqp.State.AWAIT_OPEN_OK):
        hint = " (wrong credentials or vhost?)" if proto.client.state is not \
            amqp.State.AWAIT_START else ""
        return f"connection closed by {where} during the handshake{hint}"
    detail = failure.getErrorMessage() if failure is not None else "connection lost"
    if failure is not None and failure.check(net_error.ConnectionDone):
        detail = "closed by the server"
    return f"connection to {where} lost: {detail}"

