"""The AMQP 1.0 connection on Twisted: SASL, open/begin/attach, credit, transfers in and out.

This object holds the connection's state machine and its sessions; what a link's source or
target names is resolved by ``termini.py`` (addresses in ``addresses.py``), the links
themselves are ``links.py``'s, selectors ``filters.py``'s and transactions
``transactions.py``'s. Unsettled transfers are accepted once routed and, when stored, once the
store's sync covers them. Errors go out on the level the spec gives them (``errors.py``): a
missing node detaches the link (``amqp:not-found``), a forged user-id ends the session,
malformed bytes close the connection (``amqp:decode-error``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from twisted.internet import protocol, task

from ..cert_login import certificate_login, is_tls
from ..endpoint import AcceptedConnection
from ..output import BatchedOutput
from ..model.errors import AccessRefused, BrokerError
from ..model.message import Message
from ..amqp1_message.codec import (AMQP_FRAME, AMQP_HEADER, MIN_MAX_FRAME_SIZE, SASL_FRAME,
                                   SASL_HEADER, Composite, DecodeError, Frame, FrameReader,
                                   FrameTooLarge, Symbol, decode_message, decode_received,
                                   encode_frame)
from .addresses import BadAddress, to_route
from .errors import ConnectionError_, LinkError, SessionError, condition_of, error
from .filters import receiver_filters
from .links import CoordinatorLink, ReceivingLink, SendingLink, Session, settle
from ..amqp1_message.mapping import (body_from, cc_of, extra_sections, received_properties,
                                     publisher_note)
from .subscriptions import unsubscribe
from .termini import Node, delete_own_queue, source_node, target_node
from .packed_frames import HEADER_SIZE, accepted_frame, transfer_header
from .transactions import LOCAL_TRANSACTIONS, Transactions

log = logging.getLogger("warren.amqp1")

#: credit granted to a sending client at a time, topped up at half. RabbitMQ 4 grants 128
#: (and 3.10's plugin 65,536): warren publishes each transfer into the core as it reads it,
#: so the credit only bounds what a client may have on the wire, and, since an alarm stops
#: the grants, how much more it may send once memory runs short. 128 made a client wait a
#: round trip every 64 messages (settled sends 0.62x RabbitMQ 3.10's); 1,000 sends as fast
#: as 65,536 did (bench/README.md, AMQP 1.0, issue 20)
LINK_CREDIT = 1000
WINDOW = 65535
#: transfer frames a client may send on a session before it hears from us again; widened back
#: at half, except under an alarm (RabbitMQ 4's way; its 400 would bound a session's links
#: below their credit: two links' worth here, 3.10's plugin had 65,535)
INCOMING_WINDOW = 2000
EMPTY_FRAME = encode_frame(None)
#: what the open offers: the anonymous terminus (a sender with no target address, each
#: message routed by its to). RabbitMQ 4 offers LINK_PAIR_V1_0 and SHARED-SUBS too, always;
#: they are left out because warren has neither RabbitMQ's management node nor JMS shared
#: subscriptions, and a client that sees them uses them (Qpid JMS refuses a shared consumer
#: only when SHARED-SUBS is not offered)
OFFERED_CAPABILITIES = ["ANONYMOUS-RELAY"]
SASL_OK, SASL_AUTH = 0, 1


class Amqp1Connection(AcceptedConnection, BatchedOutput, protocol.Protocol):
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
        self._ended: set[int] = set()        # channels of sessions we ended with an error
        self.transactions = Transactions()
        self.no_local: list[ReceivingLink] = []   # receivers with the no-local filter
        # marks what this connection publishes while it has one (``mapping.publisher_note``)
        self.local_token = os.urandom(16)
        self.closed = False
        self.blocked = False                 # a broker alarm: no credit for senders
        self._keepalive: Any = None          # empty frames for the peer's idle time-out
        self._idle_call: Any = None          # our own idle time-out (the heartbeat setting)
        self._heard = 0                      # recv_oct at the last idle check
        self._handshake_call: Any = None
        self.container_id = ""
        self.connected_at = clock.seconds()
        self.recv_oct = 0
        # frames go out once per read or reactor turn (output.py), not one send each
        self.init_output(clock)
        self._unsynced: list[tuple[Session, int]] = []

    # ------------------------------------------------------------------ transport events
    def connectionMade(self) -> None:
        self.broker.register_connection(self)
        self.peer_host = self.accepted(self.transport).peer_host
        self.transport.registerProducer(self, True)     # a full socket pauses deliveries
        # SASL and open must be done within the handshake time-out, as for 0-9-1
        self._handshake_call = self.clock.callLater(self.config.handshake_timeout,
                                                    self._handshake_timeout)

    def _handshake_timeout(self) -> None:
        self._handshake_call = None
        if self.stage != "opened" and not self.closed:
            log.warning("AMQP 1.0 connection %s closed: handshake timed out", self.name)
            self._hang_up()

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
            if session.incoming_window <= INCOMING_WINDOW // 2:
                self._widen(session)
            for link in session.links.values():
                if isinstance(link, SendingLink) and link.credit < LINK_CREDIT // 2:
                    self._grant(link)

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        self.recv_oct += len(data)
        self._in_read = True            # what this read causes is written once, at its end
        try:
            self._read(data)
        finally:
            self._in_read = False
            self.flush()

    def _read(self, data: bytes) -> None:
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
        for call in (self._keepalive, self._idle_call):
            if call is not None and call.running:
                call.stop()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        if self._handshake_call is not None and self._handshake_call.active():
            self._handshake_call.cancel()
        self.broker.unregister_connection(self)
        self.broker.unregister_blockable(self)
        if self.stage == "opened":
            self.broker.emit("connection.closed", name=self.name)
        self.transactions.end_of(None)           # their deliveries back to the links first
        for session in list(self.sessions.values()):
            self._drop_session(session)
        # the timers hold bound methods of this connection (a timed call that fired still
        # does): kept, the connection would be a cycle only the cyclic collector frees
        self._keepalive = self._idle_call = self._handshake_call = None

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
                "sasl_mechanisms", sasl_server_mechanisms=self._mechanisms()),
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
            self._hang_up()
            return b""
        return rest

    def _mechanisms(self) -> list[str]:
        """EXTERNAL (the client's certificate names the user, ``cert_login.py``) first when
        it is configured and the connection is TLS, as for 0-9-1; then PLAIN, ANONYMOUS."""
        external = "EXTERNAL" in self.config.auth_mechanisms and is_tls(self.transport)
        return ["EXTERNAL"] * external + ["PLAIN", "ANONYMOUS"]

    def _sasl_init(self, init: Composite) -> None:
        mechanism = str(init.mechanism or "")
        if mechanism not in self._mechanisms():
            return self._sasl_fail()
        if mechanism == "EXTERNAL":
            # the initial response (an authorization identity) is ignored, as RabbitMQ does
            login = certificate_login(self.transport, self.config)
            try:
                if login.name is None:
                    raise self.broker.refuse_login(None, login.refusal, peer=self.peer_host,
                                                   protocol="AMQP 1.0", mechanism=mechanism)
                self.user = self.broker.authenticate(
                    login.name, None, loopback=self.loopback, peer=self.peer_host,
                    protocol="AMQP 1.0", mechanism=mechanism)
            except AccessRefused:
                return self._sasl_fail()
            return self._sasl_ok()
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
        self._sasl_ok()

    def _sasl_ok(self) -> None:
        self._write(encode_frame(Composite("sasl_outcome", code=SASL_OK), ftype=SASL_FRAME))
        self.stage = "amqp-header"

    def _sasl_fail(self) -> None:
        self._write(encode_frame(Composite("sasl_outcome", code=SASL_AUTH),
                                          ftype=SASL_FRAME))
        self._hang_up()

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
            if frame.channel in self._ended:
                if p.kind == "end":                  # the client's answer to our end
                    self._ended.discard(frame.channel)
                return                               # sent before it saw our end
            raise ConnectionError_("amqp:connection:framing-error",
                                   f"{p.kind} on channel {frame.channel} with no session")
        try:
            handler(session, p, frame.payload)
        except SessionError as e:
            self._end_session(session, error(e.condition, e.description))

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
        if p.idle_time_out and int(p.idle_time_out) < 1000:
            # RabbitMQ 4's floor (spec 2.4.5: a peer may refuse a time-out it cannot keep)
            raise ConnectionError_("amqp:not-allowed",
                                   f"idle-time-out ({int(p.idle_time_out)} ms) < minimum "
                                   "idle-time-out (1000 ms)")
        self.vhost_name = vhost
        self.container_id = str(p.container_id)
        self.publisher = self.broker.publisher(self.vhost, self.user)
        theirs = int(p.max_frame_size) if p.max_frame_size is not None else 0xFFFFFFFF
        self.max_frame = max(MIN_MAX_FRAME_SIZE, min(theirs, self.config.frame_max))
        self.reader.max_size = self.config.frame_max
        heartbeat = self.config.heartbeat
        # our own time-out is the configured heartbeat, offered at half (spec 2.4.5), as
        # RabbitMQ 4 does; a client silent for longer is closed (_idle_check)
        self.send(Composite("open", container_id=self.config.node_name,
                            max_frame_size=self.config.frame_max,
                            channel_max=self.config.channel_max,
                            idle_time_out=heartbeat * 500 if heartbeat else None,
                            offered_capabilities=OFFERED_CAPABILITIES))
        self.stage = "opened"
        if heartbeat:
            self._heard = self.recv_oct
            self._idle_call = task.LoopingCall(self._idle_check)
            self._idle_call.clock = self.clock
            self._idle_call.start(heartbeat, now=False)
        if p.idle_time_out:
            # spec 2.4.5: the peer closes if it hears nothing for its idle time-out; an empty
            # frame at half of it keeps a quiet connection open (Qpid JMS asks for 60 s)
            self._keepalive = task.LoopingCall(self._write, EMPTY_FRAME)
            self._keepalive.clock = self.clock
            self._keepalive.start(int(p.idle_time_out) / 2000, now=False)
        self.broker.emit("connection.created", name=self.name)

    def _idle_check(self) -> None:
        """Nothing (not even an empty frame) from the client for a whole heartbeat: closed."""
        if self.recv_oct == self._heard and not self.closed:
            self.close(error("amqp:resource-limit-exceeded",
                             "no frame received from client within idle timeout threshold"))
        self._heard = self.recv_oct

    def _on_close(self, p: Composite) -> None:
        self.send(Composite("close"))
        self._hang_up()

    def _on_begin(self, channel: int, p: Composite) -> None:
        if channel in self.sessions:
            raise ConnectionError_("amqp:connection:framing-error",
                                   f"begin on channel {channel} already in use")
        session = Session(channel, channel, int(p.next_outgoing_id or 0), INCOMING_WINDOW,
                          int(p.incoming_window or 0))
        self.sessions[channel] = session
        self.send(Composite("begin", remote_channel=channel, next_outgoing_id=0,
                            incoming_window=INCOMING_WINDOW, outgoing_window=WINDOW,
                            handle_max=0xFFFFFFFF), channel)

    def _on_end(self, session: Session, p: Composite, _payload: bytes) -> None:
        self._drop_session(session)
        self.send(Composite("end"), session.channel)

    def _drop_session(self, session: Session) -> None:
        """Its links dropped and let go of: a link refers back to its session (a receiver to
        this connection too, and to the queue made for it, whose owner this is), so a
        session kept holding them would be a cycle only the cyclic collector frees."""
        for link in session.links.values():
            self._drop_link(link)
        session.links.clear()
        del self.sessions[session.channel]

    def _end_session(self, session: Session, err: Composite) -> None:
        """A session error (spec 2.7.7): its links end, the client is told, its answer and
        whatever it sent before seeing ours are ignored; the connection stays."""
        log.warning("ending AMQP 1.0 session %d of %s: %s %s", session.channel, self.name,
                    err.condition, err.description)
        self._drop_session(session)
        self._ended.add(session.channel)
        self.send(Composite("end", error=err), session.channel)

    # ------------------------------------------------------------------ links
    def _on_attach(self, session: Session, p: Composite, _payload: bytes) -> None:
        handle = int(p.handle)
        if handle in session.links:
            raise ConnectionError_("amqp:session:handle-in-use", f"handle {handle} in use")
        reply = Composite("attach", name=p.name, handle=handle, role=not p.role,
                          snd_settle_mode=p.snd_settle_mode, rcv_settle_mode=0,
                          source=p.source, target=p.target)
        node: Node | None = None
        try:
            if p.role:     # the client receives
                filters = receiver_filters(p.source)
                selector = filters.selector
                node = source_node(self, p.source, str(p.name),
                                   selector.text if selector is not None else None)
                link: Any = ReceivingLink(self, session, handle, node.queue,
                                          settled=p.snd_settle_mode == 1, selector=selector,
                                          own=node.own,
                                          local=publisher_note(self.local_token)
                                          if filters.no_local else None,
                                          subscription=node.subscription)
                if filters.no_local:
                    self.no_local.append(link)
                reply.source = node.source or _answered(p.source, node.address,
                                                        filters.applied)
                reply.initial_delivery_count = 0
                node.queue.add_consumer(link, self)
            elif getattr(p.target, "kind", None) == "coordinator":
                link = CoordinatorLink(session, handle)
                reply.target = Composite("coordinator", capabilities=[LOCAL_TRANSACTIONS])
            else:
                node = target_node(self, p.target)
                link = SendingLink(session, handle, node.exchange, node.key, own=node.own,
                                   anonymous=node.anonymous)
                if node.address is not None:
                    reply.target = _answered(p.target, node.address)
                reply.max_message_size = self.config.max_message_size
        except (LinkError, BrokerError) as e:
            condition, text = (e.condition, e.description) if isinstance(e, LinkError) \
                else (condition_of(e), e.text)
            if node is not None and node.own is not None:
                delete_own_queue(node.own)
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

    def _grant(self, link: SendingLink) -> None:
        link.credit = LINK_CREDIT
        self._flow(link.session, link.handle, link.delivery_count, link.credit)

    def _flow(self, session: Session, handle: int | None = None, delivery_count: int | None = None,
              credit: int | None = None) -> None:
        """A flow for a link, or (no handle) for the session alone: its windows."""
        self.send(Composite("flow", next_incoming_id=session.next_incoming_id,
                            incoming_window=session.incoming_window,
                            next_outgoing_id=session.next_transfer_id,
                            outgoing_window=WINDOW, handle=handle,
                            delivery_count=delivery_count, link_credit=credit),
                  session.channel)

    def _on_flow(self, session: Session, p: Composite, _payload: bytes) -> None:
        if p.incoming_window is not None:
            self._remote_window(session, p)
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

    def _remote_window(self, session: Session, p: Composite) -> None:
        """The client's incoming window, from its flow (spec 2.5.6: the transfers it takes
        from the next one it expects, or from our first when it names none); when it opens
        again, the session's receivers take what waits for them."""
        start = int(p.next_incoming_id) if p.next_incoming_id is not None else 0
        window = (start + int(p.incoming_window) - session.next_transfer_id) & 0xFFFFFFFF
        was = session.remote_incoming_window
        session.remote_incoming_window = window if window <= 0x7FFFFFFF else 0
        if was <= 0 < window:
            if session.unsent is not None:
                link, frames = session.unsent
                session.unsent = None
                if link is not None and session.links.get(link.handle) is link:
                    self._send_frames(session, link, frames)   # the rest of that delivery
                if session.unsent is not None:
                    return
            for link in list(session.links.values()):
                if isinstance(link, ReceivingLink) and link.credit:
                    link.queue.dispatch()

    def _on_detach(self, session: Session, p: Composite, _payload: bytes) -> None:
        handle = int(p.handle)
        if handle in session.detaching:
            session.detaching.discard(handle)      # the client's answer to our detach
            return
        link = session.links.pop(handle, None)
        if link is not None:
            self._drop_link(link)
            if p.closed and getattr(link, "subscription", False):
                unsubscribe(link.queue)             # JMS's unsubscribe
        self.send(Composite("detach", handle=p.handle, closed=p.closed), session.channel)

    def detach(self, session: Session, handle: int, err: Composite | None) -> None:
        link = session.links.pop(handle, None)
        if link is not None:
            self._drop_link(link)
            self.send(Composite("detach", handle=handle, closed=True, error=err),
                      session.channel)
            session.detaching.add(handle)

    def _drop_link(self, link: Any) -> None:
        if isinstance(link, CoordinatorLink):
            self.transactions.end_of(link)
        if isinstance(link, ReceivingLink):
            link.dropped = True
            link.accepts = None     # a selective one's bound method: a cycle of its own
            if link.local is not None:
                self.no_local.remove(link)
            link.queue.remove_consumer(link)
            if link.unacked:
                entries, link.unacked = list(link.unacked.values()), {}
                link.queue.requeue(entries)
        if link.own is not None:
            delete_own_queue(link.own)

    # ------------------------------------------------------------------ transfers in
    def _widen(self, session: Session) -> None:
        session.incoming_window = INCOMING_WINDOW
        self._flow(session)

    def _on_transfer(self, session: Session, p: Composite, payload: bytes) -> None:
        # spec 2.5.6: every transfer frame takes one place of the session's incoming window;
        # one beyond it ends the session, as RabbitMQ 4 does (it tolerates no excess)
        session.incoming_window -= 1
        if session.incoming_window < 0:
            raise SessionError("amqp:session:window-violation",
                               "incoming window violation (tolerated excess tranfers: 0)")
        session.next_incoming_id = (session.next_incoming_id + 1) & 0xFFFFFFFF
        if session.incoming_window <= INCOMING_WINDOW // 2 and not self.blocked:
            self._widen(session)
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
            link.partial_state = p.state
            link.partial_tag = p.delivery_tag
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
        try:
            if isinstance(link, CoordinatorLink):
                self._coordinate(session, link, delivery_id, data)
            else:
                self._publish(session, link, delivery_id, data, link.partial_settled,
                              link.partial_state)
        except LinkError as e:
            self.detach(session, link.handle, error(e.condition, e.description, e.info))
            return
        if link.credit < LINK_CREDIT // 2 and not self.blocked:
            self._grant(link)

    def _coordinate(self, session: Session, link: CoordinatorLink, delivery_id: int,
                    data: bytes) -> None:
        """A transaction controller's declare or discharge (``transactions.py``)."""
        body = decode_message(data).get("amqp_value")
        kind = body.kind if isinstance(body, Composite) else None
        try:
            if kind == "declare" and isinstance(body, Composite):
                if body.global_id is not None:
                    raise LinkError("amqp:not-implemented",
                                    "distributed transactions are not supported")
                state = Composite("declared", txn_id=self.transactions.declare(link))
            elif kind == "discharge" and isinstance(body, Composite):
                if self.transactions.discharge(body.txn_id, bool(body.fail), self):
                    self._unsynced.append((session, delivery_id))   # accepted after the sync
                    return
                state = Composite("accepted")
            else:
                raise LinkError("amqp:invalid-field",
                                "a coordinator takes declare and discharge messages")
        except LinkError as e:
            state = Composite("rejected", error=error(e.condition, e.description))
        except BrokerError as e:        # a publish of the commit refused (permission revoked)
            state = Composite("rejected", error=error(condition_of(e), e.text))
        self._settle(session, delivery_id, state)

    def _publish(self, session: Session, link: SendingLink, delivery_id: int, data: bytes,
                 settled: bool, state: Any = None) -> None:
        txn = None
        if getattr(state, "kind", None) == "transactional_state":
            txn = self.transactions.get(state.txn_id)
        sections, prefix = decode_received(data)  # read only: sections may be shared
        props = received_properties(sections, prefix)
        if props.user_id is not None and props.user_id != self.user.name:
            # RabbitMQ 4: a session error, in the words of 0-9-1's precondition
            raise SessionError("amqp:unauthorized-access",
                               f"user_id property set to '{props.user_id}' but authenticated "
                               f"user was '{self.user.name}'")
        body = body_from(sections)
        exchange_name, key = link.exchange, link.key
        if link.anonymous:
            route = self._relay_route(session, link, delivery_id, sections, settled)
            if route is None:
                return
            exchange_name, key = route
        if key is None:
            p = sections.get("properties")
            key = str(p.subject) if p is not None and p.subject is not None else ""
        message = Message(exchange_name, key, body, codec=self.broker.codec, props=props,
                          persistent=props.delivery_mode == 2, priority=props.priority or 0,
                          ttl=int(props.expiration) if props.expiration else None)
        message.amqp1_sections = extra_sections(
            sections, self.local_token if self.no_local else None)
        if "message_annotations" in sections:
            message.cc = cc_of(sections)
        try:
            exchange = self.publisher.exchange(exchange_name)
            if txn is not None:
                # held until the discharge; the outcome is provisional (spec 4.4.1)
                txn.publishes.append((exchange, message))
                if not settled:
                    self._settle(session, delivery_id, Composite(
                        "transactional_state", txn_id=txn.txn_id,
                        outcome=Composite("accepted")))
                return
            routed = self.publish(exchange, message)
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
            self._accept(session, delivery_id)

    def _relay_route(self, session: Session, link: SendingLink, delivery_id: int,
                     sections: dict[str, Any], settled: bool) -> tuple[str, str] | None:
        """The exchange and key a message on the anonymous terminus names by its ``to``, or
        None when it names none that can take it, in RabbitMQ 4's ways: no or a bad
        ``to`` (``amqp:precondition-failed``) and a missing exchange (``amqp:not-found``)
        reject the message, or end the link when the client settled it (naming its delivery
        tag: the anonymous-terminus spec's routing errors); no write permission on the
        exchange ends the session and an internal exchange the link. A queue that does not
        exist is no error: the message is unroutable (released), as RabbitMQ 4 has it."""
        p = sections.get("properties")
        try:
            name, key = to_route(p.to if p is not None else None)
        except BadAddress as e:
            self._refuse_relayed(session, link, delivery_id, settled, error(
                "amqp:precondition-failed", str(e)))
            return None
        vhost = self.vhost
        try:
            self.broker.check(self.user, vhost.name, "write", "exchange", name)
        except AccessRefused:
            # in RabbitMQ's words, which name the permission (the core's text does not)
            raise SessionError("amqp:unauthorized-access", f"write access to exchange "
                               f"'{name}' in vhost '{vhost.name}' refused for user "
                               f"'{self.user.name}'") from None
        exchange = vhost.exchanges.get(name)
        if exchange is None:
            self._refuse_relayed(session, link, delivery_id, settled, error(
                "amqp:not-found", f"no exchange '{name}' in vhost '{vhost.name}'"))
            return None
        if exchange.internal:
            raise LinkError("amqp:unauthorized-access", f"forbidden to publish to internal "
                            f"exchange '{name}' in vhost '{vhost.name}'")
        return name, key

    def _refuse_relayed(self, session: Session, link: SendingLink, delivery_id: int,
                    settled: bool, err: Composite) -> None:
        if settled:
            raise LinkError(str(err.condition), str(err.description),
                            {Symbol("delivery-tag"): link.partial_tag})
        self._settle(session, delivery_id, Composite("rejected", error=err))

    def publish(self, exchange: Any, message: Message) -> Any:
        """Publish for a client of this connection (now or at a transaction's commit)."""
        return self.publisher.publish(exchange, message)

    def _after_read(self) -> None:
        if not self._unsynced:
            return
        pending, self._unsynced = self._unsynced, []

        def synced(_: Any) -> None:
            for session, delivery_id in pending:
                if not self.closed and session.channel in self.sessions:
                    self._accept(session, delivery_id)

        def failed(reason: Any) -> None:
            log.error("store sync failed: %s", reason.getErrorMessage())
            for session, delivery_id in pending:
                if not self.closed:
                    self._settle(session, delivery_id, Composite(
                        "rejected", error=error("amqp:internal-error", "store sync failed")))
        self.broker.sync().addCallbacks(synced, failed)

    def _accept(self, session: Session, delivery_id: int) -> None:
        """The usual outcome, packed (``packed_frames.py``)."""
        if not self.closed:
            self.write(accepted_frame(session.channel, delivery_id))

    def _settle(self, session: Session, delivery_id: int, state: Composite) -> None:
        self.send(Composite("disposition", role=True, first=delivery_id, settled=True,
                            state=state), session.channel)

    # ------------------------------------------------------------------ transfers out
    def send_transfer(self, session: Session, handle: int, delivery_id: int, payload: bytes,
                      settled: bool) -> None:
        if HEADER_SIZE + len(payload) <= self.max_frame:   # the usual case: one frame
            session.next_transfer_id = (session.next_transfer_id + 1) & 0xFFFFFFFF
            session.remote_incoming_window -= 1
            self.write_parts((transfer_header(session.channel, handle, delivery_id, settled,
                                              len(payload)), payload))
            return
        tag = delivery_id.to_bytes(4, "big")
        first = Composite("transfer", handle=handle, delivery_id=delivery_id, delivery_tag=tag,
                          message_format=0, settled=settled)
        room = self.max_frame - len(encode_frame(first, session.channel)) - 8   # 8: more=true
        more = Composite("transfer", handle=handle)
        chunks = [payload[i:i + room] for i in range(0, len(payload), room)]
        frames = []
        for i, chunk in enumerate(chunks):
            perf = first if i == 0 else more
            perf.more = i < len(chunks) - 1 or None
            frames.append(encode_frame(perf, session.channel, chunk))
        self._send_frames(session, session.links.get(handle), frames)

    def _send_frames(self, session: Session, link: Any, frames: list[bytes]) -> None:
        """A delivery's transfer frames, as many as the client's incoming window takes (spec
        2.5.6); the rest wait in ``session.unsent`` for the flow that opens it again, and
        the session's receivers deliver nothing meanwhile (``has_credit``)."""
        room = max(session.remote_incoming_window, 0)
        sent = frames[:room]
        session.next_transfer_id = (session.next_transfer_id + len(sent)) & 0xFFFFFFFF
        session.remote_incoming_window -= len(sent)
        for frame in sent:
            self._write(frame)
        session.unsent = (link, frames[room:]) if len(frames) > room else None

    def _on_disposition(self, session: Session, p: Composite, _payload: bytes) -> None:
        if not p.role:
            return            # the client, as sender, settles what we already settled
        first = int(p.first)
        last = int(p.last) if p.last is not None else first
        state = p.state
        txn = None
        if getattr(state, "kind", None) == "transactional_state":
            try:
                txn = self.transactions.get(state.txn_id)
            except LinkError as e:
                raise SessionError(e.condition, e.description) from None
            state = state.outcome
        for link in session.links.values():
            if not isinstance(link, ReceivingLink) or not link.unacked:
                continue
            # by the range or by what is held, whichever is shorter: one id costs one lookup,
            # and a range of 2^32 ids costs no more than what the link holds
            unacked = link.unacked
            if last - first < len(unacked):
                held = {i: entry for i in range(first, last + 1)
                        if (entry := unacked.pop(i, None)) is not None}
            else:
                held = {i: unacked.pop(i) for i in list(unacked) if first <= i <= last}
            if not held:
                continue
            if txn is not None:
                txn.settles.append((link, held, state))    # applied when it commits
            else:
                settle(link.queue, list(held.values()), state)

    # ------------------------------------------------------------------ output
    def _write(self, data: bytes) -> None:
        self.write(data)

    def _hang_up(self) -> None:
        """What is pending goes out, then the connection closes (the transport sends its
        buffer first)."""
        self.flush()
        self.closed = True
        self.transport.loseConnection()

    # BatchedOutput hooks
    def output_closed(self) -> bool:
        return self.closed

    def output_resumed(self) -> None:
        """The socket drained: the receiving links' queues deliver again."""
        for session in list(self.sessions.values()):
            for link in list(session.links.values()):
                if isinstance(link, ReceivingLink) and link.credit:
                    link.queue.dispatch()

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
        self._hang_up()


def _answered(terminus: Composite, address: str | None,
              filters: dict[Any, Any] | None = None) -> Composite:
    """The source or target an attach is answered with: the client's, with the address the
    broker chose for a dynamic node and only the filters applied."""
    fields = {name: value for name, _kind, value in terminus.fields()}
    if address is not None:
        fields["address"] = address
    if terminus.kind == "source":
        fields["filter"] = filters
    return Composite(terminus.kind, **fields)


class Amqp1Factory(protocol.Factory):
    def __init__(self, broker: Any, config: Any, reactor: Any) -> None:
        self.broker = broker
        self.config = config
        self.reactor = reactor

    def buildProtocol(self, addr: Any) -> Amqp1Connection:
        proto = Amqp1Connection(self.broker, self.config, self.reactor)
        proto.factory = self
        return proto
