"""When the listener writes: a publish's deliveries to other clients leave at the end of the
publisher's read, not at the end of the reactor turn (a timer per subscriber connection).

The real listener (``MqttFactory``/``MqttConnection``) and broker on a ``Clock`` and Twisted's
``StringTransport``: the clock never advances, so anything written only by a timer would not
be there. The packets are the codec's own encoding, read back by its parser.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.config import Config
from warren.mqtt.codec import (ConnAck, Connect, MqttParser, PubAck, Publish, SubAck,
                               Subscribe, Subscription, encode)
from warren.mqtt.listener import MqttFactory


class Peer:
    """One client connection: bytes in through the listener, packets out parsed back."""

    def __init__(self, factory: MqttFactory, client_id: str) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.conn = factory.buildProtocol(self.transport.getPeer())
        self.conn.makeConnection(self.transport)
        self.parser = MqttParser(protocol_level=4)
        self.send(Connect(protocol_level=4, client_id=client_id, clean_start=True))
        assert [type(p) for p in self.received()] == [ConnAck]

    def send(self, packet) -> None:
        self.conn.dataReceived(encode(packet, 4))

    def received(self) -> list:
        data = self.transport.value()
        self.transport.clear()
        return self.parser.feed(data)


def test_a_delivery_leaves_with_the_publishers_read_and_no_timer_is_left():
    clock = Clock()
    broker = Broker(clock=clock, codec=CODEC, store=None)
    broker.ensure_defaults()
    factory = MqttFactory(broker, Config(), clock)
    sub = Peer(factory, "sub")
    sub.send(Subscribe(1, (Subscription("t/x", 1),)))
    assert [type(p) for p in sub.received()] == [SubAck]
    pub = Peer(factory, "pub")
    timers = len(clock.getDelayedCalls())

    pub.send(Publish("t/x", b"hello", qos=1, packet_id=7))

    got = sub.received()
    assert [(type(p), p.topic, p.payload, p.qos) for p in got] == [(Publish, "t/x", b"hello", 1)]
    assert [(type(p), p.packet_id) for p in pub.received()] == [(PubAck, 7)]
    assert len(clock.getDelayedCalls()) == timers   # no flush timer made for the subscriber
    # a QoS 0 publish from the subscriber's own connection reaches it in the same read too
    sub.send(Publish("t/x", b"own", qos=0))
    assert [(type(p), p.payload) for p in sub.received()] == [(Publish, b"own")]


def test_qos0_deliveries_of_every_size_parse_back_whole_and_in_order():
    """A QoS 0 delivery to a 3.1.1 subscriber is encoded in line once its topic is known:
    sizes on both sides of the one-byte Remaining Length (127) and of the copied payload
    (2048), each twice on one topic, come out as they went in."""
    clock = Clock()
    broker = Broker(clock=clock, codec=CODEC, store=None)
    broker.ensure_defaults()
    factory = MqttFactory(broker, Config(), clock)
    sub = Peer(factory, "sub0")
    sub.send(Subscribe(1, (Subscription("t/sizes", 0),)))
    assert [type(p) for p in sub.received()] == [SubAck]
    pub = Peer(factory, "pub0")
    payloads = [bytes([n % 251]) * n for n in (0, 1, 100, 118, 119, 120, 2048, 2049, 20000)
                for _ in range(2)]

    for payload in payloads:
        pub.send(Publish("t/sizes", payload, qos=0))

    got = sub.received()
    assert [(p.topic, p.qos, p.retain, p.dup) for p in got] == [
        ("t/sizes", 0, False, False)] * len(payloads)
    assert [p.payload for p in got] == payloads
