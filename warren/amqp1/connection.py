"""The AMQP 1.0 connection on Twisted: SASL, open/begin/attach, links to queues, credit.

One object holds the connection, its sessions and their links: a first slice keeps the state
machine in one place. Addresses are RabbitMQ 4's v2 scheme (``/queues/<name>`` to send to or
receive from a queue, ``/exchanges/<name>/<key>`` to send through an exchange). Unsettled
transfers are accepted once routed and, when stored, once the store's sync covers them.
Errors go out on the level the spec gives them: a missing node detaches the link
(``amqp:not-found``); malformed bytes close the connection (``amqp:decode-error``).
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import protocol, task

from ..endpoint import AcceptedConnection
from ..model.errors import AccessRefused, BrokerError
from ..model.message import Message
from .addresses import Address, BadAddress, parse_address
from .codec import (AMQP_FRAME, AMQP_HEADER, MIN_MAX_FRAME_SIZE, SASL_FRAME, SASL_HEADER,
                    Composite, DecodeError, Frame, FrameReader, FrameTooLarge, Symbol,
                    decode_message, encode_frame, encode_message)
from .mapping import body_from, properties_from, sections_for

log = logging.getLogger("warren.amqp1")

#: credit granted to a sending client at a time, topped up at half (RabbitMQ 4: 128)
LINK_CREDIT = 128
WINDOW = 65535
EMPTY_FRAME = encode_frame(None)
SASL_OK, SASL_AUTH = 0, 1


class LinkError(Exception):
    """Ends one link with an AMQP error condition."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


class ConnectionError_(Exception):
    """Closes the connection with an AMQP error condition."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


def error(condition: str, description: str) -> Composite:
    return Composite("error", condition=Symbol(condition), description=description)


#: the core's errors (their AMQP 0-9-1 codes) as AMQP 1.0 conditions, as RabbitMQ 4 maps them
CONDITIONS = {403: "amqp:unauthorized-access", 404: "amqp:not-found",
              405: "amqp:resource-locked", 406: "amqp:precondition-failed"}


def condition_of(e: BrokerError) -> str:
    return CONDITIONS.get(getattr(e, "code", 0), "amqp:internal-error")


class Session:
    def __init__(self, channel: int, remote_channel: int) -> None:
        self.channel = channel
        self.remote_channel = remote_channel
        self.next_outgoing_id = 0            # our delivery ids
        self.links: dict[int, Any] = {}      # the client's handle -> link
        self.detaching: set[int] = set()     # handles we detached: their echo needs no reply


class SendingLink:
    """The client sends into warren (we are the receiver)."""

    def __init__(self, session: Session, handle: int, exchange: str, key: str | None) -> None:
        self.session = session
        self.handle = handle
        self.exchange = exchange
        self.key = key
        self.credit = 0
        self.delivery_count = 0
        self.partial: list[bytes] = []       # the frames of a multi-frame transfer
        self.partial_id: int | None = None
        self.partial_settled = False
        self.partial_size = 0


class ReceivingLink:
    """The client receives from a queue (we are the sender): a core consumer."""

    exclusive = False
    priority = 0

    def __init__(self, conn: "Amqp1Connection", session: Session, handle: int, queue: Any,
                 settled: bool) -> None:
        self.conn = conn
        self.session = session
        self.handle = handle
        self.queue = queue
        self.no_ack = settled
        self.tag = f"amqp1-{id(self):x}"
        self.arguments: dict[str, Any] = {}
        self.credit = 0
        self.delivery_count = 0
        self.unacked: dict[int, Any] = {}    # delivery id -> entry

    def has_credit(self) -> bool:
        return self.credit > 0 and not self.conn.closed

    def deliver(self, queue: Any, entry: Any) -> None:
        self.credit -= 1
        self.delivery_count = (self.delivery_count + 1) & 0xFFFFFFFF
        session = self.session
        delivery_id = session.next_outgoing_id
        session.next_outgoing_id = (delivery_id + 1) & 0xFFFFFFFF
        if not self.no_ack:
            self.unacked[delivery_id] = entry
        message = entry.message
        payload = encode_message(sections_for(message.properties, message.body,
                                              bool(getattr(entry, "redelivered", False))))
        self.conn.send_transfer(session, self.handle, delivery_id, payload, self.no_ack)

    def cancelled(self, queue: Any) -> None:
        self.conn.detach(self.session, self.handle,
                         error("amqp:resource-deleted", f"queue '{queue.name}' deleted"))


class Amqp1Connection(AcceptedConnection, protocol.Protocol):
    def __init__(self, broker: Any, config: Any, clock: Any) -> None:
        self.broker = broker
        self.config = config
        self.clock = clock
        self.stage = "sasl-header"           # -> sasl -> amqp-header -> open -> opened
        self._header = b""
        self.reader = FrameReader(MIN_MAX_FRAME_SIZE)
        self.max_frame = config.frame_max
        self.user: Any = None
        self.vhost: Any = None
        self.vhost_name: str | None = None
        self.publisher: Any = None
        self.sessions: dict[int, Session] = {}
        self.closed = False
        self.blocked = False                 # a broker alarm: no credit for senders
        self._keepalive: Any = None          # empty frames for the peer's idle time-out
        self._handshake_call: Any = None
        self.container_id = ""
        self.connected_at = clock.seconds()
        self.recv_oct = 0
        self.send_oct = 0
        self._unsynced: list[tuple[Session, int]] = []

    # ------------------------------------------------------------------ transport events
    def connectionMade(self) -> None:
        self.broker.register_connection(self)
        self.peer_host = self.accepted(self.transport).peer_host
        # SASL and open must be done within the handshake time-out, as for 0-9-1
        self._handshake_call = self.clock.callLater(self.config.handshake_timeout,
                                                    self._handshake_timeout)

    def _handshake_timeout(self) -> None:
        self._handshake_call = None
        if self.stage != "opened" and not self.closed:
            log.warning("AMQP 1.0 connection %s closed: handshake timed out", self.name)
            self.closed = True
            self.transport.loseConnection()

    def info(self) -> dict[str, Any]:
        """The HTTP API's connection object; RabbitMQ names the protocol "AMQP 1-0"."""
        return {
            "name": self.name, "protocol": "AMQP 1-0",
            "user": getattr(self.user, "name", ""), "vhost": self.vhost_name or "",
            "peer_host": self.peer[0], "peer_port": self.peer[1],
            "host": self.local[0], "port": self.local[1],
            "channels": len(self.sessions),
            "state": "closed" if self.closed else
                     "running" if self.stage == "opened" else "starting",
            "timeout": 0, "connected_at": int(self.connected_at * 1000),
            "recv_oct": self.recv_oct, "send_oct": self.send_oct,
            "client_properties": {"container-id": self.container_id},
            "type": "network",
        }

    def force_close(self, reason: str) -> None:
        """The broker ends this connection (its vhost deleted, an operator's close)."""
        self.close(error("amqp:connection:forced", reason))

    def set_blocked(self, blocked: bool, reason: str) -> None:
        """A memory or disk alarm: sending clients get no more credit until it clears (as
        RabbitMQ 4 throttles AMQP 1.0 publishers); then their links are topped up."""
        self.blocked = blocked
        if blocked or self.closed:
            return
        for session in self.sessions.values():
            for link in session.links.values():
                if isinstance(link, SendingLink) and link.credit < LINK_CREDIT // 2:
                    self._grant(link)

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        self.recv_oct += len(data)
        try:
            while data and self.stage in ("sasl-header", "amqp-header"):
                data = self._protocol_header(data)
            if not data or self.closed:
                return
            for frame in self.reader.feed(data):
                self._frame(frame)
                if self.closed:
                    return
            self._after_read()
        except FrameTooLarge as e:
            self.close(error("amqp:connection:framing-error", str(e)))
        except DecodeError as e:
            self.close(error("amqp:decode-error", str(e)))
        except ConnectionError_ as e:
            self.close(error(e.condition, e.description))
        except Exception:
            log.exception("internal error on AMQP 1.0 connection %s", self.name)
            self.close(error("amqp:internal-error", "internal error"))

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        if self._handshake_call is not None and self._handshake_call.active():
            self._handshake_call.cancel()
        self.broker.unregister_connection(self)
        self.broker.unregister_blockable(self)
        if self.stage == "opened":
            self.broker.emit("connection.closed", name=self.name)
        for session in self.sessions.values():
            for link in session.links.values():
                self._drop_link(link)
        self.sessions.clear()

    # ------------------------------------------------------------------ handshake
    def _protocol_header(self, data: bytes) -> bytes:
        need = 8 - len(self._header)
        self._header += data[:need]
        rest = data[need:]
        if len(self._header) < 8:
            return b""
        header, self._header = self._header, b""
        if self.stage == "sasl-header" and header == SASL_HEADER:
            self._write(SASL_HEADER + encode_frame(Composite(
                "sasl_mechanisms", sasl_server_mechanisms=["PLAIN", "ANONYMOUS"]),
                ftype=SASL_FRAME))
            self.stage = "sasl"
        elif header == AMQP_HEADER and self.user is not None:
            self._write(AMQP_HEADER)
            self.stage = "open"
        else:
            # spec 2.2: answer with the header this stage supports, then close
            self._write(SASL_HEADER if self.user is None else AMQP_HEADER)
            log.warning("AMQP 1.0 connection %s refused: protocol header %r", self.name,
                        header)
            self.closed = True
            self.transport.loseConnection()
            return b""
        return rest

    def _sasl_init(self, init: Composite) -> None:
        mechanism = str(init.mechanism or "")
        if mechanism == "PLAIN":
            parts = bytes(init.initial_response or b"").split(b"\x00")
            if len(parts) != 3:
                return self._sasl_fail()
            username = parts[1].decode("utf-8", "replace")
            password = parts[2].decode("utf-8", "replace")
        elif mechanism == "ANONYMOUS":
            username, password = self.config.default_user, self.config.default_pass
        else:
            return self._sasl_fail()
        try:
            self.user = self.broker.authenticate(username, password, loopback=self.loopback,
                                                 peer=self.peer_host, protocol="AMQP 1.0")
        except AccessRefused:
            return self._sasl_fail()
        self._write(encode_frame(Composite("sasl_outcome", code=SASL_OK),
                                          ftype=SASL_FRAME))
        self.stage = "amqp-header"

    def _sasl_fail(self) -> None:
        self._write(encode_frame(Composite("sasl_outcome", code=SASL_AUTH),
                                          ftype=SASL_FRAME))
        self.closed = True
        self.transport.loseConnection()

    # ------------------------------------------------------------------ frames
    def _frame(self, frame: Frame) -> None:
        p = frame.performative
        if p is None:
            return                                   # an empty frame: a heartbeat
        if self.stage == "sasl":
            if frame.type != SASL_FRAME or p.kind != "sasl_init":
                raise ConnectionError_("amqp:not-allowed", f"{p.kind} during SASL")
            return self._sasl_init(p)
        if frame.type != AMQP_FRAME or p.kind.startswith("sasl"):
            raise ConnectionError_("amqp:not-allowed", f"{p.kind} after SASL")
        if self.stage == "open":
            if p.kind != "open":
                raise ConnectionError_("amqp:not-allowed", f"{p.kind} before open")
            return self._open(p)
        handler = getattr(self, "_on_" + p.kind, None)
        if handler is None:
            raise ConnectionError_("amqp:not-allowed", f"unexpected {p.kind}")
        if p.kind == "close":
            return handler(p)
        session = self.sessions.get(frame.channel)
        if p.kind == "begin":
            return handler(frame.channel, p)
        if session is None:
            raise ConnectionError_("amqp:connection:framing-error",
                                   f"{p.kind} on channel {frame.channel} with no session")
        handler(session, p, frame.payload)

    def _open(self, p: Composite) -> None:
        if p.container_id is None:
            raise DecodeError("open without container-id")
        hostname = str(p.hostname or "")
        vhost = hostname[len("vhost:"):] if hostname.startswith("vhost:") else "/"
        try:
            self.vhost = self.broker.open_vhost(self.user, vhost, peer=self.peer_host,
                                                protocol="AMQP 1.0", connection=self)
        except BrokerError as e:
            raise ConnectionError_("amqp:not-allowed", e.text) from None
        self.vhost_name = vhost
        self.container_id = str(p.container_id)
        self.publisher = self.broker.publisher(self.vhost, self.user)
        theirs = int(p.max_frame_size) if p.max_frame_size is not None else 0xFFFFFFFF
        self.max_frame = max(MIN_MAX_FRAME_SIZE, min(theirs, self.config.frame_max))
        self.reader.max_size = self.config.frame_max
        self.send(Composite("open", container_id=self.config.node_name,
                            max_frame_size=self.config.frame_max,
                            channel_max=self.config.channel_max))
        self.stage = "opened"
        if p.idle_time_out:
            # spec 2.4.5: the peer closes if it hears nothing for its idle time-out; an empty
            # frame at half of it keeps a quiet connection open (Qpid JMS asks for 60 s)
            self._keepalive = task.LoopingCall(self._write, EMPTY_FRAME)
            self._keepalive.clock = self.clock
            self._keepalive.start(int(p.idle_time_out) / 2000, now=False)
        self.broker.emit("connection.created", name=self.name)

    def _on_close(self, p: Composite) -> None:
        self.send(Composite("close"))
        self.closed = True
        self.transport.loseConnection()

    def _on_begin(self, channel: int, p: Composite) -> None:
        if channel in self.sessions:
            raise ConnectionError_("amqp:connection:framing-error",
                                   f"begin on channel {channel} already in use")
        session = Session(channel, channel)
        self.sessions[channel] = session
        self.send(Composite("begin", remote_channel=channel, next_outgoing_id=0,
                            incoming_window=WINDOW, outgoing_window=WINDOW,
                            handle_max=0xFFFFFFFF), channel)

    def _on_end(self, session: Session, p: Composite, _payload: bytes) -> None:
        for link in session.links.values():
            self._drop_link(link)
        del self.sessions[session.channel]
        self.send(Composite("end"), session.channel)

    # ------------------------------------------------------------------ links
    def _on_attach(self, session: Session, p: Composite, _payload: bytes) -> None:
        handle = int(p.handle)
        if handle in session.links:
            raise ConnectionError_("amqp:session:handle-in-use", f"handle {handle} in use")
        reply = Composite("attach", name=p.name, handle=handle, role=not p.role,
                          snd_settle_mode=p.snd_settle_mode, rcv_settle_mode=0,
                          source=p.source, target=p.target)
        try:
            if p.role:     # the client receives
                address = getattr(p.source, "address", None)
                queue = self._queue(address)
                link: Any = ReceivingLink(self, session, handle, queue,
                                          settled=p.snd_settle_mode == 1)
                reply.initial_delivery_count = 0
                queue.add_consumer(link, self)
            else:
                address = getattr(p.target, "address", None)
                exchange, key = self._destination(address)
                link = SendingLink(session, handle, exchange, key)
                reply.max_message_size = self.config.max_message_size
        except (LinkError, BrokerError) as e:
            condition, text = (e.condition, e.description) if isinstance(e, LinkError) \
                else (condition_of(e), e.text)
            # spec 2.6.3: a refused link is attached with a null terminus, then detached
            if p.role:
                reply.source = None
            else:
                reply.target = None
            self.send(reply, session.channel)
            self.send(Composite("detach", handle=handle, closed=True,
                                error=error(condition, text)), session.channel)
            session.detaching.add(handle)
            return
        session.links[handle] = link
        self.send(reply, session.channel)
        if isinstance(link, SendingLink):
            self.broker.register_blockable(self)     # may block us at once
            if not self.blocked:
                self._grant(link)

    def _address(self, address: Any) -> Address:
        try:
            return parse_address(address)
        except BadAddress as e:
            raise LinkError("amqp:invalid-field", str(e)) from None

    def _existing_queue(self, name: str) -> Any:
        queue = self.vhost.queues.get(name)
        if queue is None:
            raise LinkError("amqp:not-found", f"no queue '{name}' in vhost '{self.vhost.name}'")
        return queue

    def _queue(self, address: Any) -> Any:
        """The queue a receiving link consumes from (queues only, as RabbitMQ 4)."""
        parsed = self._address(address)
        if parsed.queue is None:
            raise LinkError("amqp:invalid-field", f"address '{address}' is not a queue")
        queue = self._existing_queue(parsed.queue)
        queue.check_access(self)
        return queue

    def _destination(self, address: Any) -> tuple[str, str | None]:
        """(exchange, key) a sending link publishes to; key None: the message's subject."""
        parsed = self._address(address)
        if parsed.queue is not None:
            self._existing_queue(parsed.queue)
            return "", parsed.queue
        self.publisher.exchange(parsed.exchange)
        return parsed.exchange, parsed.key

    def _grant(self, link: SendingLink) -> None:
        link.credit = LINK_CREDIT
        self._flow(link.session, link.handle, link.delivery_count, link.credit)

    def _flow(self, session: Session, handle: int, delivery_count: int, credit: int) -> None:
        self.send(Composite("flow", next_incoming_id=0, incoming_window=WINDOW,
                            next_outgoing_id=session.next_outgoing_id,
                            outgoing_window=WINDOW, handle=handle,
                            delivery_count=delivery_count, link_credit=credit),
                  session.channel)

    def _on_flow(self, session: Session, p: Composite, _payload: bytes) -> None:
        if p.handle is None:
            return
        link = session.links.get(int(p.handle))
        if not isinstance(link, ReceivingLink):
            return
        theirs = int(p.delivery_count) if p.delivery_count is not None else 0
        credit = int(p.link_credit or 0)
        link.credit = max(0, (theirs + credit - link.delivery_count) & 0xFFFFFFFF)
        if link.credit > 0x7FFFFFFF:
            link.credit = 0
        link.queue.dispatch()
        if p.drain and link.credit:
            link.delivery_count = (link.delivery_count + link.credit) & 0xFFFFFFFF
            link.credit = 0
            self._flow(session, link.handle, link.delivery_count, 0)
        elif p.echo:
            self._flow(session, link.handle, link.delivery_count, link.credit)

    def _on_detach(self, session: Session, p: Composite, _payload: bytes) -> None:
        handle = int(p.handle)
        if handle in session.detaching:
            session.detaching.discard(handle)      # the client's answer to our detach
            return
        link = session.links.pop(handle, None)
        if link is not None:
            self._drop_link(link)
        self.send(Composite("detach", handle=p.handle, closed=True), session.channel)

    def detach(self, session: Session, handle: int, err: Composite | None) -> None:
        link = session.links.pop(handle, None)
        if link is not None:
            self._drop_link(link)
            self.send(Composite("detach", handle=handle, closed=True, error=err),
                      session.channel)
            session.detaching.add(handle)

    def _drop_link(self, link: Any) -> None:
        if isinstance(link, ReceivingLink):
            link.queue.remove_consumer(link)
            if link.unacked:
                entries, link.unacked = list(link.unacked.values()), {}
                link.queue.requeue(entries)

    # ------------------------------------------------------------------ transfers in
    def _on_transfer(self, session: Session, p: Composite, payload: bytes) -> None:
        handle = int(p.handle) if p.handle is not None else None
        link = session.links.get(handle) if handle is not None else None
        if not isinstance(link, SendingLink):
            if handle in session.detaching:
                return          # sent before the client saw our detach
            raise ConnectionError_("amqp:session:unattached-handle",
                                   f"transfer on handle {p.handle}, which is not attached")
        if link.partial_id is None:
            if link.credit <= 0:
                # a link error (spec 2.8.1): this link ends, the session and connection stay
                self.detach(session, link.handle, error(
                    "amqp:link:transfer-limit-exceeded", "transfer beyond the link's credit"))
                return
            link.credit -= 1
            link.delivery_count = (link.delivery_count + 1) & 0xFFFFFFFF
            link.partial_id = int(p.delivery_id) if p.delivery_id is not None else 0
            link.partial_settled = bool(p.settled)
        link.partial.append(payload)
        link.partial_size += len(payload)
        if link.partial_size > self.config.max_message_size:
            # RabbitMQ 4's message-size-exceeded: the link ends, nothing of it is published
            link.partial, link.partial_size, link.partial_id = [], 0, None
            self.detach(session, link.handle, error(
                "amqp:link:message-size-exceeded",
                f"message size exceeds the maximum of {self.config.max_message_size} bytes"))
            return
        if p.more:
            return
        data, link.partial, link.partial_size = b"".join(link.partial), [], 0
        delivery_id, link.partial_id = link.partial_id, None
        if p.aborted:
            return
        self._publish(session, link, delivery_id, data, link.partial_settled)
        if link.credit < LINK_CREDIT // 2 and not self.blocked:
            self._grant(link)

    def _publish(self, session: Session, link: SendingLink, delivery_id: int, data: bytes,
                 settled: bool) -> None:
        sections = decode_message(data)
        props = properties_from(sections)
        body = body_from(sections)
        key = link.key
        if key is None:
            p = sections.get("properties")
            key = str(p.subject) if p is not None and p.subject is not None else ""
        message = Message(link.exchange, key, body, codec=self.broker.codec, props=props,
                          persistent=props.delivery_mode == 2, priority=props.priority or 0,
                          ttl=int(props.expiration) if props.expiration else None)
        try:
            exchange = self.publisher.exchange(link.exchange)
            routed = self.publisher.publish(exchange, message)
        except BrokerError as e:
            if not settled:
                self._settle(session, delivery_id, Composite(
                    "rejected", error=error(condition_of(e), e.text)))
            return
        if settled:
            return
        if routed.unroutable:
            # RabbitMQ 4: an unroutable message is released (nobody took it)
            self._settle(session, delivery_id, Composite("released"))
        elif routed.rejected and not routed.queues:
            self._settle(session, delivery_id, Composite("rejected"))
        elif routed.stored:
            self._unsynced.append((session, delivery_id))
        else:
            self._settle(session, delivery_id, Composite("accepted"))

    def _after_read(self) -> None:
        if not self._unsynced:
            return
        pending, self._unsynced = self._unsynced, []

        def synced(_: Any) -> None:
            for session, delivery_id in pending:
                if not self.closed and session.channel in self.sessions:
                    self._settle(session, delivery_id, Composite("accepted"))

        def failed(reason: Any) -> None:
            log.error("store sync failed: %s", reason.getErrorMessage())
            for session, delivery_id in pending:
                if not self.closed:
                    self._settle(session, delivery_id, Composite(
                        "rejected", error=error("amqp:internal-error", "store sync failed")))
        self.broker.sync().addCallbacks(synced, failed)

    def _settle(self, session: Session, delivery_id: int, state: Composite) -> None:
        self.send(Composite("disposition", role=True, first=delivery_id, settled=True,
                            state=state), session.channel)

    # ------------------------------------------------------------------ transfers out
    def send_transfer(self, session: Session, handle: int, delivery_id: int, payload: bytes,
                      settled: bool) -> None:
        tag = delivery_id.to_bytes(4, "big")
        first = Composite("transfer", handle=handle, delivery_id=delivery_id, delivery_tag=tag,
                          message_format=0, settled=settled)
        room = self.max_frame - 8 - len(encode_frame(first, session.channel)) - 8
        more = Composite("transfer", handle=handle)
        chunks = [payload[i:i + room] for i in range(0, len(payload), room)] or [b""]
        for i, chunk in enumerate(chunks):
            perf = first if i == 0 else more
            perf.more = i < len(chunks) - 1 or None
            self._write(encode_frame(perf, session.channel, chunk))

    def _on_disposition(self, session: Session, p: Composite, _payload: bytes) -> None:
        if not p.role:
            return            # the client, as sender, settles what we already settled
        first = int(p.first)
        last = int(p.last) if p.last is not None else first
        state = p.state
        outcome = state.kind if isinstance(state, Composite) else "accepted"
        for link in session.links.values():
            if not isinstance(link, ReceivingLink) or not link.unacked:
                continue
            # by what is held, not by the range: a range of 2^32 ids costs nothing
            entries = [link.unacked.pop(i) for i in list(link.unacked) if first <= i <= last]
            if not entries:
                continue
            if outcome == "accepted":
                link.queue.ack(entries)
            elif outcome == "rejected" or (outcome == "modified" and state.undeliverable_here):
                link.queue.reject(entries)
            else:                       # released, modified: back to the queue
                link.queue.requeue(entries)
            link.queue.dispatch()

    # ------------------------------------------------------------------ output
    def _write(self, data: bytes) -> None:
        self.send_oct += len(data)
        self.transport.write(data)

    def send(self, performative: Composite, channel: int = 0) -> None:
        if not self.closed:
            self._write(encode_frame(performative, channel))

    def close(self, err: Composite | None) -> None:
        if self.closed:
            return
        if err is not None:
            log.warning("closing AMQP 1.0 connection %s: %s %s", self.name, err.condition,
                        err.description)
        if self.stage in ("open", "opened"):
            self.send(Composite("close", error=err))
        self.closed = True
        self.transport.loseConnection()


class Amqp1Factory(protocol.Factory):
    def __init__(self, broker: Any, config: Any, reactor: Any) -> None:
        self.broker = broker
        self.config = config
        self.reactor = reactor

    def buildProtocol(self, addr: Any) -> Amqp1Connection:
        proto = Amqp1Connection(self.broker, self.config, self.reactor)
        proto.factory = self
        return proto
