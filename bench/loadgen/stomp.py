"""STOMP 1.2 publisher and consumer on the `/queue/loadgen.stomp` destination.

Frames are written by hand: a constant head per SEND (built once), the stamped body and NUL;
every SEND carries `content-length`, since a stamp may contain NUL bytes. The consumer reads a
MESSAGE's `ack` and `content-length` headers by searching its head, not by building a dict.
Transient SENDs carry no `persistent` header at all: RabbitMQ treats `persistent:false` on an
existing durable queue as a re-declaration and refuses it.
"""

from __future__ import annotations

import time

from bench.loadgen.connection import Connection, ProtocolError
from bench.loadgen.measure import BodyMaker, Tally

DESTINATION = "/queue/loadgen.stomp"
SUBSCRIPTION = "0"
ACK_EVERY = 100  # ack:client: one cumulative ACK per this many messages


def encode(command: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [command, *(f"{name}:{value}" for name, value in headers.items())]
    return ("\n".join(lines) + "\n\n").encode() + body + b"\0"


class StompConnection(Connection):
    """CONNECT/CONNECTED, frame splitting, receipts; MESSAGE frames go to `on_message`."""

    async def start(self, settings) -> None:
        self.write(encode("CONNECT", {"accept-version": "1.2", "host": settings.vhost,
                                      "login": settings.user, "passcode": settings.password,
                                      "heart-beat": "0,0"}))
        await self.expect("CONNECTED")

    async def expect(self, command: str) -> dict:
        item = await self.next_control()
        reason = self.refusal(item)
        if reason:
            self.close_transport()
            raise ProtocolError(reason)
        got, headers, _ = item
        if got != command:
            raise ProtocolError(f"expected {command}, got {got}")
        return headers

    def refusal(self, item) -> str | None:
        command, headers, body = item
        if command == "ERROR":
            return (f"STOMP ERROR {headers.get('message', '')}: "
                    f"{body.decode(errors='replace').strip()}")
        return None

    async def close(self) -> None:
        self.running = False
        if self.lost is None:
            try:
                self.write(encode("DISCONNECT", {"receipt": "bye"}))
                await self.expect("RECEIPT")
            except ProtocolError:
                pass
        self.close_transport()

    def parse(self, buffer: bytearray) -> int:
        pos, end_of_data = 0, len(buffer)
        while pos < end_of_data:
            if buffer[pos] in (10, 13):  # heart-beat EOLs between frames
                pos += 1
                continue
            head_end = buffer.find(b"\n\n", pos)
            if head_end < 0:
                break
            length_at = buffer.find(b"\ncontent-length:", pos, head_end)
            if length_at >= 0:
                value_end = buffer.find(b"\n", length_at + 16, head_end + 1)
                body_end = head_end + 2 + int(buffer[length_at + 16:value_end])
                if body_end >= end_of_data:
                    break
            else:
                body_end = buffer.find(b"\0", head_end + 2)
                if body_end < 0:
                    break
            if buffer.startswith(b"MESSAGE\n", pos):
                self.on_message(buffer, pos, head_end, head_end + 2)
            else:
                self.push_control(decode(bytes(buffer[pos:head_end]),
                                         bytes(buffer[head_end + 2:body_end])))
            pos = body_end + 1
        self.after_read()
        return pos

    def on_message(self, buffer, start: int, head_end: int, body_start: int) -> None:
        raise ProtocolError("unexpected MESSAGE frame")

    def after_read(self) -> None:
        """Called once per socket read, after its frames (batch ACKs here)."""


def decode(head: bytes, body: bytes) -> tuple[str, dict[str, str], bytes]:
    command, *lines = head.decode(errors="replace").replace("\r", "").split("\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name, value)  # STOMP: the first of repeated headers counts
    return command, headers, body


class Publisher(StompConnection):
    """SENDs to the queue; with a window, a receipt on the last SEND of each batch."""

    def __init__(self, settings, tag: int) -> None:
        super().__init__()
        self.settings = settings
        self.bodies = BodyMaker(tag, settings.size)
        self.confirmed = self.nacked = 0
        head = f"SEND\ndestination:{DESTINATION}\ncontent-length:{settings.size}\n"
        if settings.persistent:
            head += "persistent:true\n"
        self.head = head.encode()

    async def setup(self) -> None:
        await self.start(self.settings)

    def publish(self, seqs: range) -> None:
        head, make = self.head, self.bodies.make
        parts = []
        for seq in seqs:
            parts += (head, b"\n", make(seq), b"\0")
        if self.settings.window:  # the receipt names how many messages it covers
            parts[-3] = f"receipt:{seqs[-1] + 1}\n\n".encode()
        self.write(b"".join(parts))

    def push_control(self, item) -> None:
        command, headers, _ = item
        if command == "RECEIPT" and headers.get("receipt-id", "").isdigit():
            self.confirmed = max(self.confirmed, int(headers["receipt-id"]))
            self.progress.set()
            return
        super().push_control(item)


class Consumer(StompConnection):
    """One subscription to the queue; counts MESSAGEs into a Tally and ACKs them."""

    def __init__(self, settings, tag: int, stream: int) -> None:
        super().__init__()
        self.settings = settings
        self.tally = Tally(tag)
        self.stream = stream
        self.pending_acks: list[bytes] = []
        self.unacked = 0
        self.on_read = lambda tally: None

    async def setup(self) -> None:
        s = self.settings
        await self.start(s)
        self.write(encode("SUBSCRIBE", {
            "id": SUBSCRIPTION, "destination": DESTINATION, "ack": s.stomp_ack,
            "prefetch-count": str(s.prefetch), "activemq.prefetchSize": str(s.prefetch),
            "receipt": "subscribed"}))
        await self.expect("RECEIPT")

    async def teardown(self) -> None:
        if self.lost is None:
            try:
                self.write(encode("UNSUBSCRIBE", {"id": SUBSCRIPTION}))
            except ProtocolError:
                pass
        await self.close()

    def parse(self, buffer: bytearray) -> int:
        self.now = time.monotonic_ns()
        return super().parse(buffer)

    def on_message(self, buffer, start, head_end, body_start) -> None:
        self.tally.record(buffer, body_start, self.now)
        if self.settings.stomp_ack == "auto":
            return
        ack_at = buffer.find(b"\nack:", start, head_end)
        if ack_at < 0:
            raise ProtocolError("MESSAGE without an ack header")
        value_end = buffer.find(b"\n", ack_at + 5, head_end + 1)
        self.last_ack = bytes(buffer[ack_at + 5:value_end])
        self.unacked += 1
        if self.settings.stomp_ack == "client-individual":
            self.pending_acks += (b"ACK\nid:", self.last_ack, b"\n\n\0")

    def after_read(self) -> None:
        if self.settings.stomp_ack == "client" and self.unacked >= ACK_EVERY:
            self.pending_acks += (b"ACK\nid:", self.last_ack, b"\n\n\0")
        if self.pending_acks:
            self.write(b"".join(self.pending_acks))
            self.pending_acks.clear()
            self.unacked = 0
        self.tally.reads += 1
        self.on_read(self.tally)
