"""paho-mqtt and raw-socket clients for the MQTT tests, awaiting with events, never sleeps."""

from __future__ import annotations

import queue
import socket
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from warren.mqtt.codec import (ConnAck, Connect, Disconnect, MqttParser, PubAck, PubComp,
                               Publish, PubRec, PubRel, UnsubAck, Unsubscribe, encode)

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
TIMEOUT = 10.0


def cid(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Client:
    """A paho client whose events are awaitable: connect, suback, messages, disconnects."""

    def __init__(self, port: int, *, protocol: int = V311, client_id: str | None = None,
                 clean: bool = True, username: str | None = "guest",
                 password: str | None = "guest", will: tuple | None = None,
                 keepalive: int = 60, properties: Properties | None = None,
                 connect: bool = True, will_properties: Properties | None = None,
                 websocket: bool = False, tls: Any = None) -> None:
        self.port = port
        self.protocol = protocol
        self.client_id = client_id or cid()
        kwargs: dict[str, Any] = {}
        if protocol != V5:
            kwargs["clean_session"] = clean
        self.paho = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                client_id=self.client_id, protocol=protocol,
                                transport="websockets" if websocket else "tcp", **kwargs)
        if websocket:   # Web-MQTT: ws://host:port/ws
            self.paho.ws_set_options(path="/ws")
        if tls is not None:   # an ssl.SSLContext that trusts the broker's certificate
            self.paho.tls_set_context(tls)
        self.clean = clean
        if username is not None:
            self.paho.username_pw_set(username, password)
        if will is not None:
            topic, payload, qos, retain = will
            self.paho.will_set(topic, payload, qos, retain, properties=will_properties)
        self.keepalive = keepalive
        self.connect_props = properties
        self.messages: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack: Any = None
        self.session_present: bool | None = None
        self.disconnect_reason: Any = None
        self._acks: dict[int, threading.Event] = {}
        self._results: dict[int, Any] = {}
        self._lock = threading.Lock()
        p = self.paho
        p.on_connect = self._on_connect
        p.on_disconnect = self._on_disconnect
        p.on_message = lambda c, u, m: self.messages.put(m)
        p.on_subscribe = self._on_subscribe
        p.on_unsubscribe = self._on_subscribe
        p.on_publish = self._on_publish
        if connect:
            self.connect()

    # ------------------------------------------------------------------ callbacks
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = reason_code
        self.connack_properties = properties
        self.session_present = flags.session_present
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.disconnect_reason = reason_code
        self.disconnected.set()

    def _event(self, mid: int) -> threading.Event:
        with self._lock:
            return self._acks.setdefault(mid, threading.Event())

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._results[mid] = reason_codes
        self._event(mid).set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._results[mid] = reason_code
        self._event(mid).set()

    # ------------------------------------------------------------------ actions
    def connect(self, expect_ok: bool = True) -> "Client":
        kwargs: dict[str, Any] = {}
        if self.protocol == V5:
            kwargs["clean_start"] = self.clean
            kwargs["properties"] = self.connect_props
        self.connected.clear()
        self.disconnected.clear()
        self.paho.connect("127.0.0.1", self.port, keepalive=self.keepalive, **kwargs)
        self.paho.loop_start()
        assert self.connected.wait(TIMEOUT), "no CONNACK"
        if expect_ok:
            assert not self.connack.is_failure, f"CONNACK {self.connack}"
        return self

    def subscribe(self, topic: str | list, qos: int = 0, *, options: Any = None,
                  properties: Properties | None = None) -> Any:
        if options is not None:
            result, mid = self.paho.subscribe(topic, options=options, properties=properties)
        else:
            result, mid = self.paho.subscribe(topic, qos, properties=properties)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert self._event(mid).wait(TIMEOUT), "no SUBACK"
        return self._results[mid]

    def unsubscribe(self, topic: str) -> Any:
        result, mid = self.paho.unsubscribe(topic)
        assert self._event(mid).wait(TIMEOUT), "no UNSUBACK"
        return self._results[mid]

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False,
                properties: Properties | None = None, wait: bool = True) -> Any:
        info = self.paho.publish(topic, payload, qos, retain, properties=properties)
        if wait and qos:
            assert self._event(info.mid).wait(TIMEOUT), "no PUBACK/PUBCOMP"
            return self._results[info.mid]
        return info

    def get(self, timeout: float = TIMEOUT) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def drain_until(self, payload: bytes) -> list[mqtt.MQTTMessage]:
        """Messages received up to and including the one with ``payload``."""
        out = []
        while True:
            m = self.get()
            out.append(m)
            if m.payload == payload:
                return out

    def disconnect(self) -> None:
        self.paho.disconnect()
        self.disconnected.wait(TIMEOUT)
        self.paho.loop_stop()

    def drop(self) -> None:
        """Close the socket without DISCONNECT (an abnormal close: the will fires)."""
        self.paho.loop_stop()
        sock = self.paho.socket()
        if sock is not None:
            sock.close()


def v5_props(kind: int = PacketTypes.PUBLISH, **values: Any) -> Properties:
    p = Properties(kind)
    for k, v in values.items():
        setattr(p, k, v)
    return p


class RawClient:
    """A socket speaking MQTT through warren's own codec, for malformed-input tests."""

    def __init__(self, port: int, level: int = 4) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.level = level
        self.parser = MqttParser(protocol_level=level)
        self.pending: list = []

    def send(self, packet: Any) -> None:
        self.sock.sendall(encode(packet, self.level))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> Any:
        """The next packet, or None when the server closed the connection."""
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.pending.extend(self.parser.feed(data))
        return self.pending.pop(0)

    def closed(self) -> bool:
        """True when the server closes the connection (reads until EOF, packets dropped)."""
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            if not data:
                return True

    def close(self) -> None:
        self.sock.close()


def connected_raw(port: int, level: int = 4, timeout: float = 120) -> RawClient:
    """A raw client past a CONNACK 0x00 (a big SUBSCRIBE or UNSUBSCRIBE may take long)."""
    raw = RawClient(port, level=level)
    raw.sock.settimeout(timeout)
    raw.send(Connect(protocol_level=level, client_id=cid(), username="guest",
                     password=b"guest"))
    assert raw.recv().reason_code == 0
    return raw


def session_raw(port: int, client_id: str, clean: bool, level: int = 4,
                expiry: int = 0) -> tuple[RawClient, ConnAck]:
    """A raw client past a CONNACK 0x00, with its client id and Clean Session / Clean Start
    flag (and at 5.0 a Session Expiry Interval of ``expiry``): a persistent session's
    client, for tests that kill the broker."""
    raw = RawClient(port, level=level)
    raw.sock.settimeout(60)
    props = {"session_expiry_interval": expiry} if level == 5 and expiry else {}
    raw.send(Connect(protocol_level=level, client_id=client_id, clean_start=clean,
                     username="guest", password=b"guest", properties=props))
    ack = raw.recv()
    assert isinstance(ack, ConnAck) and ack.reason_code == 0, ack
    return raw, ack


def deliveries_until(sub: RawClient, until: str) -> dict[str, int]:
    """Topic -> QoS of what a raw subscriber gets up to a message on ``until``, acknowledging
    each; no topic twice."""
    got: dict[str, int] = {}
    while True:
        packet = sub.recv()
        assert packet is not None, "connection closed"
        if isinstance(packet, PubRel):
            sub.send(PubComp(packet.packet_id))
            continue
        assert isinstance(packet, Publish), packet
        if packet.qos == 1:
            sub.send(PubAck(packet.packet_id))
        elif packet.qos == 2:
            sub.send(PubRec(packet.packet_id))
        if packet.topic == until:
            return got
        assert packet.topic not in got, f"{packet.topic} delivered twice"
        got[packet.topic] = packet.qos


def assert_ended_and_others_served(broker: Any, raw: RawClient, code: int | None,
                                   unique: str) -> None:
    """``raw``'s connection ends as bad input must end it (a DISCONNECT with ``code`` at 5.0,
    a bare close at 3.1.1: ``code`` None), the broker serves another client as before, and
    nothing was logged as a traceback."""
    reply = raw.recv()
    if code is not None:
        assert isinstance(reply, Disconnect) and reply.reason_code == code, reply
        reply = raw.recv()
    assert reply is None
    other = Client(broker.mqtt_port)
    other.subscribe(f"{unique}/after", 1)
    other.publish(f"{unique}/after", b"fine", 1)
    assert other.get().payload == b"fine"
    other.disconnect()
    assert not [line for line in broker.lines if "Traceback" in line]


def assert_session_holds_only(broker: Any, client_id: str, level: int, held: str,
                              not_held: str) -> None:
    """A bad (UN)SUBSCRIBE ended ``client_id``'s connection (DISCONNECT 0x81 at 5.0, a close
    at 3.1.1) part way through its filters: its persistent session, resumed, is subscribed to
    ``held`` and not to ``not_held`` (a publish on each, only ``held``'s arrives); then the
    session is ended, and nothing was logged as a traceback."""
    raw, connack = session_raw(broker.mqtt_port, client_id, clean=False, level=level,
                               expiry=60)
    assert connack.session_present
    other = Client(broker.mqtt_port)
    other.publish(not_held, b"not held", qos=1)
    other.publish(held, b"held", qos=1)
    other.disconnect()
    packet = raw.recv()
    assert isinstance(packet, Publish) and packet.payload == b"held", packet
    raw.send(Unsubscribe(100, (held, not_held)))
    unsuback = raw.recv()
    assert isinstance(unsuback, UnsubAck)
    if level == 5:
        assert unsuback.reason_codes == (0x00, 0x11)
    raw.send(Disconnect(0, {"session_expiry_interval": 0}) if level == 5 else Disconnect())
    raw.close()
    assert not [line for line in broker.lines if "Traceback" in line]


def assert_malformed_end(raw: RawClient, level: int) -> None:
    """``raw``'s connection ends as a malformed packet ends it: DISCONNECT 0x81 at 5.0, a
    bare close at 3.1.1."""
    reply = raw.recv()
    if level == 5:
        assert isinstance(reply, Disconnect) and reply.reason_code == 0x81, reply
        reply = raw.recv()
    assert reply is None, reply
    raw.close()
