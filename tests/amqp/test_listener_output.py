"""When the AMQP 0-9-1 connection writes: a publish's delivery to another connection leaves at
the end of the publisher's read, not at the end of the reactor turn (a timer per consumer
connection), and the early flush keeps every connection's frames in the order they were made.

The real listener (``AmqpFactory``/``AmqpConnection``) and broker on a ``Clock`` and Twisted's
``StringTransport``: the clock never advances, so anything written only by a timer would not be
there. Frames are pamqp's, both ways.
"""

from __future__ import annotations

import struct

from pamqp import commands, frame as pamqp_frame, header as pamqp_header
from pamqp import body as pamqp_body
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from warren.amqp.connection import AmqpFactory
from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.config import Config


def publish(queue: str, body: bytes, channel: int = 1) -> bytes:
    return b"".join(pamqp_frame.marshal(f, channel) for f in (
        commands.Basic.Publish(exchange="", routing_key=queue),
        pamqp_header.ContentHeader(0, len(body), commands.Basic.Properties()),
        pamqp_body.ContentBody(body)))


class Peer:
    """One client connection: frames in through the listener, frames out parsed back."""

    def __init__(self, factory: AmqpFactory) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.conn = factory.buildProtocol(self.transport.getPeer())
        self.conn.makeConnection(self.transport)
        self.send(b"AMQP\x00\x00\x09\x01")
        self.send(commands.Connection.StartOk(
            client_properties={}, mechanism="PLAIN", response="\0guest\0guest"), 0)
        self.send(commands.Connection.TuneOk(channel_max=16, frame_max=131072, heartbeat=0), 0)
        self.send(commands.Connection.Open(virtual_host="/"), 0)
        self.send(commands.Channel.Open(), 1)
        assert [type(f) for _, f in self.received()] == [
            commands.Connection.Start, commands.Connection.Tune, commands.Connection.OpenOk,
            commands.Channel.OpenOk]

    def send(self, data, channel: int = 1) -> None:
        self.conn.dataReceived(data if isinstance(data, bytes)
                               else pamqp_frame.marshal(data, channel))

    def received(self) -> list:
        data = self.transport.value()
        self.transport.clear()
        frames = []
        while data:
            size = struct.unpack_from(">I", data, 3)[0]
            _, channel, frame = pamqp_frame.unmarshal(data[:size + 8])
            frames.append((channel, frame))
            data = data[size + 8:]
        return frames

    def consume(self, queue: str, tag: str) -> None:
        self.send(commands.Queue.Declare(queue=queue))
        self.send(commands.Basic.Consume(queue=queue, consumer_tag=tag, no_ack=True))
        assert [type(f) for _, f in self.received()] == [commands.Queue.DeclareOk,
                                                         commands.Basic.ConsumeOk]


def deliveries(frames: list) -> list:
    """(consumer tag, body) of each delivery, and the name of any other method, in order."""
    out: list = []
    for _, f in frames:
        if isinstance(f, commands.Basic.Deliver):
            out.append([f.consumer_tag, b""])
        elif isinstance(f, pamqp_body.ContentBody):
            out[-1][1] += f.value
        elif not isinstance(f, pamqp_header.ContentHeader):
            out.append(f.name)
    return [tuple(d) if isinstance(d, list) else d for d in out]


def listener() -> tuple[Clock, AmqpFactory]:
    clock = Clock()
    broker = Broker(clock=clock, codec=CODEC, store=None)
    broker.ensure_defaults()
    return clock, AmqpFactory(broker, Config(), clock)


def test_a_delivery_leaves_with_the_publishers_read_and_no_timer_is_left():
    clock, factory = listener()
    consumer = Peer(factory)
    consumer.consume("flush.a", "c1")
    publisher = Peer(factory)
    timers = len(clock.getDelayedCalls())

    publisher.send(publish("flush.a", b"hello"))

    assert deliveries(consumer.received()) == [("c1", b"hello")]
    assert publisher.received() == []
    assert len(clock.getDelayedCalls()) == timers   # no flush timer left for either


def test_publishes_interleaved_with_methods_in_one_read_arrive_in_order():
    """One read interleaves publishes to two queues the other connection consumes, a
    publish to the publisher's own consumer and synchronous methods: each connection gets its
    frames in the order they were caused."""
    _clock, factory = listener()
    consumer = Peer(factory)
    consumer.consume("flush.b1", "c1")
    consumer.consume("flush.b2", "c2")
    publisher = Peer(factory)
    publisher.consume("flush.own", "own")

    publisher.send(publish("flush.b1", b"1")
                   + publish("flush.b2", b"2")
                   + pamqp_frame.marshal(commands.Queue.Declare(queue="flush.x"), 1)
                   + publish("flush.own", b"3")
                   + publish("flush.b1", b"4")
                   + pamqp_frame.marshal(commands.Basic.Qos(prefetch_count=10), 1)
                   + publish("flush.own", b"5"))

    assert deliveries(consumer.received()) == [("c1", b"1"), ("c2", b"2"), ("c1", b"4")]
    assert deliveries(publisher.received()) == [
        "Queue.DeclareOk", ("own", b"3"), "Basic.QosOk", ("own", b"5")]


def test_frames_written_before_the_read_stay_ahead_of_its_deliveries():
    """A consumer with frames already waiting for the end-of-turn timer (written outside any
    read, as a confirm after a store sync is) gets them before a delivery another
    connection's read causes."""
    clock, factory = listener()
    consumer = Peer(factory)
    consumer.consume("flush.c", "c1")
    publisher = Peer(factory)
    consumer.conn.write(pamqp_frame.marshal(commands.Basic.Ack(delivery_tag=9), 1))

    publisher.send(publish("flush.c", b"after"))
    clock.advance(0)

    assert deliveries(consumer.received()) == ["Basic.Ack", ("c1", b"after")]
