"""MQTT 3.1.1 publisher and consumer on the topic `loadgen/bench`, clean sessions.

Packets are written by hand (the fixed header and topic of a PUBLISH are built once per run).
QoS 1 both ways: the publisher counts PUBACKs as confirms, the subscriber PUBACKs every
message it receives, one write per socket read.
"""

from __future__ import annotations

import struct
import time

from bench.loadgen.connection import Connection, ProtocolError
from bench.loadgen.measure import BodyMaker, Tally

TOPIC = "loadgen/bench"
PUBLISH, PUBACK = 3, 4
CONNACK_CODES = {1: "unacceptable protocol version", 2: "identifier rejected",
                 3: "server unavailable", 4: "bad user name or password", 5: "not authorized"}
U16 = struct.Struct(">H")


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_string(text: str) -> bytes:
    data = text.encode()
    return U16.pack(len(data)) + data


def packet(first: int, payload: bytes) -> bytes:
    return bytes([first]) + remaining_length(len(payload)) + payload


class MqttConnection(Connection):
    """CONNECT/CONNACK, packet splitting; PUBLISH and PUBACK go to hot handlers."""

    async def start(self, settings, client_id: str) -> None:
        flags = 0x02 | 0x80 | 0x40  # clean session, user name, password
        self.write(packet(0x10, mqtt_string("MQTT") + bytes([4, flags]) + U16.pack(0)
                          + mqtt_string(client_id) + mqtt_string(settings.user)
                          + mqtt_string(settings.password)))
        kind, body = await self.next_control()
        if kind != 2:
            raise ProtocolError(f"expected CONNACK, got packet type {kind}")
        if body[1]:
            raise ProtocolError(f"CONNACK {body[1]}: {CONNACK_CODES.get(body[1], 'refused')}")

    async def close(self) -> None:
        if self.lost is None:
            try:
                self.write(b"\xe0\x00")
            except ProtocolError:
                pass
        self.close_transport()

    def parse(self, buffer: bytearray) -> int:
        pos, end_of_data = 0, len(buffer)
        while end_of_data - pos >= 2:
            length, shift, at = 0, 0, pos + 1
            while True:
                if at >= end_of_data:
                    self.after_read()
                    return pos
                byte = buffer[at]
                length |= (byte & 0x7F) << shift
                at += 1
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise ProtocolError("malformed remaining length")
            end = at + length
            if end > end_of_data:
                break
            first = buffer[pos]
            kind = first >> 4
            if kind == PUBLISH:
                self.on_publish(buffer, first, at, end)
            elif kind == PUBACK:
                self.on_puback()
            else:
                self.push_control((kind, bytes(buffer[at:end])))
            pos = end
        self.after_read()
        return pos

    def on_publish(self, buffer, first: int, start: int, end: int) -> None:
        raise ProtocolError("unexpected PUBLISH")

    def on_puback(self) -> None:
        raise ProtocolError("unexpected PUBACK")

    def after_read(self) -> None:
        """Called once per socket read, after its packets (batch PUBACKs here)."""


class Publisher(MqttConnection):
    """PUBLISHes at the scenario's QoS; at QoS 1, counts PUBACKs as confirms."""

    def __init__(self, settings, tag: int) -> None:
        super().__init__()
        self.settings = settings
        self.tag = tag
        self.bodies = BodyMaker(tag, settings.size)
        self.confirmed = self.nacked = 0
        topic = mqtt_string(TOPIC)
        extra = 2 if settings.qos else 0  # the packet identifier
        self.head = (bytes([0x30 | settings.qos << 1])
                     + remaining_length(len(topic) + extra + settings.size) + topic)

    async def setup(self) -> None:
        await self.start(self.settings, f"loadgen-{self.tag:x}-pub")

    def publish(self, seqs: range) -> None:
        head, make = self.head, self.bodies.make
        parts = []
        if self.settings.qos:
            for seq in seqs:
                parts += (head, U16.pack(seq % 65535 + 1), make(seq))
        else:
            for seq in seqs:
                parts += (head, make(seq))
        self.write(b"".join(parts))

    def on_puback(self) -> None:
        self.confirmed += 1
        self.progress.set()


class Consumer(MqttConnection):
    """Subscribes to the topic at the scenario's QoS and counts PUBLISHes into a Tally."""

    def __init__(self, settings, tag: int, stream: int) -> None:
        super().__init__()
        self.settings = settings
        self.tag = tag
        self.tally = Tally(tag)
        self.stream = stream
        self.pubacks: list[bytes] = []
        self.on_read = lambda tally: None

    async def setup(self) -> None:
        await self.start(self.settings, f"loadgen-{self.tag:x}-sub{self.stream}")
        self.write(packet(0x82, U16.pack(1) + mqtt_string(TOPIC) + bytes([self.settings.qos])))
        kind, body = await self.next_control()
        if kind != 9:
            raise ProtocolError(f"expected SUBACK, got packet type {kind}")
        if body[2] == 0x80:
            raise ProtocolError(f"subscription to {TOPIC} refused (SUBACK 0x80)")

    async def teardown(self) -> None:
        await self.close()

    def parse(self, buffer: bytearray) -> int:
        self.now = time.monotonic_ns()
        return super().parse(buffer)

    def on_publish(self, buffer, first, start, end) -> None:
        topic_length = U16.unpack_from(buffer, start)[0]
        at = start + 2 + topic_length
        if first & 0x06:  # QoS 1 or 2: a packet identifier follows the topic
            self.pubacks += (b"\x40\x02", bytes(buffer[at:at + 2]))
            at += 2
        self.tally.record(buffer, at, self.now)

    def after_read(self) -> None:
        if self.pubacks:
            self.write(b"".join(self.pubacks))
            self.pubacks.clear()
        self.tally.reads += 1
        self.on_read(self.tally)
