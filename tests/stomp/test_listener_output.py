"""When the STOMP listener writes: a SEND's MESSAGE to another connection leaves at the end of
the sender's read, not at the end of the reactor turn (a timer per subscriber connection), and
the early flush keeps every connection's frames in the order they were made.

The real listener (``StompFactory``/``StompConnection``) and broker on a ``Clock`` and
Twisted's ``StringTransport``: the clock never advances, so anything written only by a timer
would not be there. Frames are read back by the codec's own parser.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.config import Config
from warren.stomp.codec import StompParser
from warren.stomp.listener import StompFactory


def frame(command: str, body: bytes = b"", **headers: str) -> bytes:
    lines = "".join(f"{name.replace('_', '-')}:{value}\n" for name, value in headers.items())
    return f"{command}\n{lines}\n".encode() + body + b"\x00"


class Peer:
    """One client connection: bytes in through the listener, frames out parsed back."""

    def __init__(self, factory: StompFactory) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.conn = factory.buildProtocol(self.transport.getPeer())
        self.conn.makeConnection(self.transport)
        self.parser = StompParser()
        self.send(frame("CONNECT", accept_version="1.2", host="/", login="guest",
                        passcode="guest"))
        assert [f.command for f in self.received()] == ["CONNECTED"]
        self.parser.set_version("1.2")

    def send(self, data: bytes) -> None:
        self.conn.dataReceived(data)

    def received(self) -> list:
        data = self.transport.value()
        self.transport.clear()
        return self.parser.feed(data)


def listener() -> tuple[Clock, StompFactory]:
    clock = Clock()
    broker = Broker(clock=clock, codec=CODEC, store=None)
    broker.ensure_defaults()
    return clock, StompFactory(broker, Config(), clock)


def subscribe(peer: Peer, sub_id: str, destination: str) -> None:
    peer.send(frame("SUBSCRIBE", id=sub_id, destination=destination, ack="auto",
                    receipt=f"r-{sub_id}"))
    assert [f.command for f in peer.received()] == ["RECEIPT"]


def test_a_message_leaves_with_the_senders_read_and_no_timer_is_left():
    clock, factory = listener()
    sub = Peer(factory)
    subscribe(sub, "s1", "/queue/flush.a")
    pub = Peer(factory)
    timers = len(clock.getDelayedCalls())

    pub.send(frame("SEND", b"hello", destination="/queue/flush.a", receipt="r1"))

    got = sub.received()
    assert [(f.command, f.get("subscription"), f.body) for f in got] == [
        ("MESSAGE", "s1", b"hello")]
    assert [(f.command, f.get("receipt-id")) for f in pub.received()] == [("RECEIPT", "r1")]
    assert len(clock.getDelayedCalls()) == timers   # no flush timer made for the subscriber


def test_sends_to_several_destinations_in_one_read_arrive_in_send_order():
    """One read interleaves SENDs to two queues the other connection reads, a SEND to the
    sender's own subscription and receipts: each connection gets its frames in the order
    they were caused."""
    _clock, factory = listener()
    sub = Peer(factory)
    subscribe(sub, "s1", "/queue/flush.b1")
    subscribe(sub, "s2", "/queue/flush.b2")
    pub = Peer(factory)
    subscribe(pub, "own", "/queue/flush.own")

    pub.send(frame("SEND", b"1", destination="/queue/flush.b1")
             + frame("SEND", b"2", destination="/queue/flush.b2", receipt="r2")
             + frame("SEND", b"3", destination="/queue/flush.own")
             + frame("SEND", b"4", destination="/queue/flush.b1", receipt="r4")
             + frame("SEND", b"5", destination="/queue/flush.own"))

    assert [(f.command, f.get("subscription"), f.body) for f in sub.received()] == [
        ("MESSAGE", "s1", b"1"), ("MESSAGE", "s2", b"2"), ("MESSAGE", "s1", b"4")]
    assert [(f.command, f.get("receipt-id") or f.body.decode()) for f in pub.received()] == [
        ("RECEIPT", "r2"), ("MESSAGE", "3"), ("RECEIPT", "r4"), ("MESSAGE", "5")]


def test_frames_written_before_the_read_stay_ahead_of_its_messages():
    """A subscriber with frames already waiting for the end-of-turn timer (a RECEIPT written
    outside any read) gets them before a MESSAGE another connection's read causes."""
    clock, factory = listener()
    sub = Peer(factory)
    subscribe(sub, "s1", "/queue/flush.c")
    pub = Peer(factory)
    sub.conn.write(b"RECEIPT\nreceipt-id:early\n\n\x00")   # as a store sync's callback does

    pub.send(frame("SEND", b"after", destination="/queue/flush.c"))
    clock.advance(0)

    assert [(f.command, f.get("receipt-id") or f.body.decode()) for f in sub.received()] == [
        ("RECEIPT", "early"), ("MESSAGE", "after")]
