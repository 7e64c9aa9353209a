"""AMQP 0-9-1 publisher and consumer: pamqp marshals every frame we send and decodes every
frame we receive, except the hot ones, which are read by offset (cheap enough that the client
is not what is measured).

Hot frames: on the consumer Basic.Deliver (only its delivery tag is needed), the content header
(skipped: our bodies are one frame) and the content body (the stamp); on the publisher
Basic.Ack / Basic.Nack (publisher confirms). A message we publish is one pre-marshalled
Basic.Publish + content header, then a body frame built around the stamped body.
"""

from __future__ import annotations

import struct
import time

from pamqp import commands, frame, header

from bench.loadgen.connection import Connection, ProtocolError
from bench.loadgen.measure import BodyMaker, Tally

CHANNEL = 1
FRAME_HEAD = struct.Struct(">BHI")  # type, channel, payload size
METHOD_ID = struct.Struct(">I")  # class id << 16 | method id
TAG_AND_FLAGS = struct.Struct(">QB")
FRAME_END = b"\xce"
DELIVER = 60 << 16 | 60
ACK = 60 << 16 | 80
NACK = 60 << 16 | 120
ACK_EVERY = 100  # the consumer acks with `multiple` once per this many deliveries
DIRECT_EXCHANGE, FANOUT_EXCHANGE = "loadgen.direct", "loadgen.fanout"


class AmqpConnection(Connection):
    """Handshake (PLAIN, no heartbeats), one channel, synchronous set-up calls."""

    async def start(self, settings) -> None:
        self.transport.write(header.ProtocolHeader().marshal())
        await self.expect(commands.Connection.Start, channel=0)
        # authentication_failure_close: a refused login gets Connection.Close 403 with the
        # reason, not just a closed socket.
        capabilities = {name: True for name in ("authentication_failure_close",
                                                "publisher_confirms", "basic.nack",
                                                "connection.blocked")}
        self.send(commands.Connection.StartOk(
            client_properties={"product": "warren bench loadgen", "capabilities": capabilities},
            mechanism="PLAIN",
            response=f"\0{settings.user}\0{settings.password}"), channel=0)
        tune = await self.expect(commands.Connection.Tune, channel=0)
        self.send(commands.Connection.TuneOk(channel_max=tune.channel_max,
                                             frame_max=tune.frame_max, heartbeat=0), channel=0)
        await self.call(commands.Connection.Open(settings.vhost), commands.Connection.OpenOk, 0)
        await self.call(commands.Channel.Open(), commands.Channel.OpenOk)

    def send(self, method, channel: int = CHANNEL) -> None:
        self.write(frame.marshal(method, channel))

    def refusal(self, item) -> str | None:
        _, value = item
        if isinstance(value, (commands.Connection.Close, commands.Channel.Close)):
            return f"AMQP {value.reply_code} {value.reply_text}"
        return None

    async def expect(self, kind, channel: int = CHANNEL):
        item = await self.next_control()
        reason = self.refusal(item)
        if reason:
            self.close_transport()
            raise ProtocolError(reason)
        _, value = item
        if not isinstance(value, kind):
            raise ProtocolError(f"expected {kind.__name__}, got {value!r}")
        return value

    async def call(self, method, reply_kind, channel: int = CHANNEL):
        self.send(method, channel)
        return await self.expect(reply_kind, channel)

    async def close(self) -> None:
        """Connection.Close and its CloseOk, best effort (the figures are already taken)."""
        self.running = False
        if self.lost is None:
            try:
                await self.call(commands.Connection.Close(200, "bye", 0, 0),
                                commands.Connection.CloseOk, 0)
            except ProtocolError:
                pass
        self.close_transport()

    def parse(self, buffer: bytearray) -> int:
        end_of_data, pos = len(buffer), 0
        while end_of_data - pos >= 8:
            kind, channel, size = FRAME_HEAD.unpack_from(buffer, pos)
            end = pos + 7 + size
            if end >= end_of_data:
                break
            if not self.hot_frame(buffer, kind, pos + 7, size):
                _, _, value = frame.unmarshal(bytes(buffer[pos:end + 1]))
                self.push_control((channel, value))
            pos = end + 1
        self.after_read()
        return pos

    def hot_frame(self, buffer: bytearray, kind: int, start: int, size: int) -> bool:
        """Handle a frame by offset and return True, or False to have pamqp decode it."""
        return kind == 8  # heartbeats: we asked for none, ignore any

    def after_read(self) -> None:
        """Called once per socket read, after its frames (batch acks here)."""


class Publisher(AmqpConnection):
    """Publishes to the scenario's exchange; with confirms, counts Basic.Ack / Basic.Nack."""

    def __init__(self, settings, tag: int) -> None:
        super().__init__()
        self.settings = settings
        self.bodies = BodyMaker(tag, settings.size)
        self.confirmed = self.nacked = 0

    async def setup(self) -> None:
        s = self.settings
        await self.start(s)
        if s.window:
            await self.call(commands.Confirm.Select(), commands.Confirm.SelectOk)
        exchange = FANOUT_EXCHANGE if s.fanout else DIRECT_EXCHANGE
        properties = commands.Basic.Properties(delivery_mode=2 if s.persistent else 1)
        self.prefix = (frame.marshal(commands.Basic.Publish(exchange=exchange,
                                                            routing_key=routing_key(s)), CHANNEL)
                       + frame.marshal(header.ContentHeader(0, s.size, properties), CHANNEL)
                       + FRAME_HEAD.pack(3, CHANNEL, s.size))

    def publish(self, seqs: range) -> None:
        prefix, make = self.prefix, self.bodies.make
        parts = []
        for seq in seqs:
            parts += (prefix, make(seq), FRAME_END)
        self.write(b"".join(parts))

    def hot_frame(self, buffer, kind, start, size) -> bool:
        if kind != 1:
            return kind == 8
        method = METHOD_ID.unpack_from(buffer, start)[0]
        if method not in (ACK, NACK):
            return False
        delivery_tag, flags = TAG_AND_FLAGS.unpack_from(buffer, start + 4)
        if method == NACK:
            self.nacked += delivery_tag - self.confirmed if flags & 1 else 1
        # Confirms come in publish order here, so the highest tag counts them all.
        self.confirmed = max(self.confirmed, delivery_tag)
        self.progress.set()
        return True


class Consumer(AmqpConnection):
    """One queue and one consumer on it; counts deliveries into a Tally and acks in batches."""

    def __init__(self, settings, tag: int, stream: int) -> None:
        super().__init__()
        self.settings = settings
        self.tally = Tally(tag)
        self.stream = stream
        self.queue = f"loadgen.{tag:x}.q{stream}"
        self.delivery_tag = self.acked_tag = 0
        self.on_read = lambda tally: None

    async def setup(self) -> None:
        s = self.settings
        await self.start(s)
        exchange = FANOUT_EXCHANGE if s.fanout else DIRECT_EXCHANGE
        await self.call(commands.Exchange.Declare(exchange=exchange,
                                                  exchange_type="fanout" if s.fanout else "direct",
                                                  durable=True), commands.Exchange.DeclareOk)
        await self.call(commands.Queue.Declare(queue=self.queue, durable=s.persistent,
                                               auto_delete=not s.persistent),
                        commands.Queue.DeclareOk)
        await self.call(commands.Queue.Bind(queue=self.queue, exchange=exchange,
                                            routing_key=routing_key(s)), commands.Queue.BindOk)
        await self.call(commands.Basic.Qos(prefetch_count=s.prefetch), commands.Basic.QosOk)
        await self.call(commands.Basic.Consume(queue=self.queue, consumer_tag="loadgen",
                                               no_ack=s.autoack), commands.Basic.ConsumeOk)

    async def teardown(self) -> None:
        """Cancel, delete the run's queue (durable ones are not auto-deleted), close."""
        self.running = False
        if self.lost is None:
            try:
                await self.call(commands.Basic.Cancel("loadgen"), commands.Basic.CancelOk)
                await self.call(commands.Queue.Delete(queue=self.queue), commands.Queue.DeleteOk)
            except ProtocolError:
                pass
        await self.close()

    def hot_frame(self, buffer, kind, start, size) -> bool:
        if kind == 3:
            self.tally.record(buffer, start, self.now)
            return True
        if kind == 2 or kind == 8:
            return True
        if METHOD_ID.unpack_from(buffer, start)[0] != DELIVER:
            return False
        tag_length = buffer[start + 4]
        self.delivery_tag = struct.unpack_from(">Q", buffer, start + 5 + tag_length)[0]
        return True

    def parse(self, buffer: bytearray) -> int:
        self.now = time.monotonic_ns()
        return super().parse(buffer)

    def after_read(self) -> None:
        if self.delivery_tag - self.acked_tag >= ACK_EVERY and not self.settings.autoack:
            self.acked_tag = self.delivery_tag
            self.write(frame.marshal(commands.Basic.Ack(self.delivery_tag, multiple=True),
                                     CHANNEL))
        self.tally.reads += 1
        self.on_read(self.tally)


def routing_key(settings) -> str:
    return "" if settings.fanout else f"loadgen.{settings.tag:x}"
