"""The STOMP session on a fake link and a fake clock (no broker process, no sockets, no sleeps).

A :class:`FakeLink` stands in for the listener (``stomp/session.py`` ``Link``): it records the
frames the session writes, whether reading is on, the version and heart-beats it was told. The
broker is the real in-process :class:`~warren.broker.broker.Broker` on a ``Clock`` with an
in-memory store whose sync the test fires, so receipt ordering behind the store can be seen.
The heart-beat timeout lives in the listener, so that one test drives the real
``StompConnection`` over Twisted's in-memory ``StringTransport``.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tests.memory_store import HeldSyncStore, MemoryStore
from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.broker.scheduler import ScheduledDelivery
from warren.config import Config
from warren.stomp.codec import Frame, StompError, StompParser
from warren.stomp.heartbeats import GRACE
from warren.stomp.listener import StompFactory
from warren.stomp.session import StompSession
from warren.stomp.states import State


class FakeLink:
    """The session's Link: frames written are parsed back; reading and heart-beats recorded."""

    name = "fake-stomp"

    def __init__(self) -> None:
        self.write_paused = False
        self.parser = StompParser(max_frame_size=1 << 20, max_headers=1000)
        self.frames: list[Frame] = []
        self.reading = True
        self.version: str | None = None
        self.heartbeats: tuple[int, int] | None = None
        self.closed = False
        self.flushes = 0

    def write(self, data: bytes) -> None:
        self.frames.extend(self.parser.feed(data))

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True

    def set_version(self, version: str) -> None:
        self.version = version
        self.parser.set_version(version)

    def start_heartbeats(self, send_ms: int, expect_ms: int) -> None:
        self.heartbeats = (send_ms, expect_ms)

    def set_reading(self, reading: bool) -> None:
        self.reading = reading

    def certificate_name(self) -> str | None:
        return None

    def take(self) -> list[Frame]:
        frames, self.frames = self.frames, []
        return frames


class Harness:
    """One session on one broker; ``send`` hands a frame over as one read of the listener."""

    def __init__(self, store: MemoryStore | None = None, **broker_options) -> None:
        self.clock = Clock()
        self.store = store
        self.broker = Broker(clock=self.clock, codec=CODEC, store=store, **broker_options)
        self.broker.ensure_defaults()
        self.config = Config()
        self.link = FakeLink()
        self.session = StompSession(self.link, self.broker, self.config,
                                    ScheduledDelivery(self.broker), peer_host="127.0.0.1",
                                    loopback=True)

    def send(self, command: str, body: bytes = b"", **headers: str) -> list[Frame]:
        frame = Frame(command, tuple((k.replace("_", "-"), v) for k, v in headers.items()),
                      body)
        try:
            self.session.handle(frame)
        finally:
            self.session.after_read()
        return self.link.take()

    def connect(self, version: str = "1.2", **headers: str) -> Frame:
        headers.setdefault("accept_version", version)
        headers.setdefault("host", "/")
        (connected,) = self.send("CONNECT", **headers)
        assert connected.command == "CONNECTED"
        return connected

    def queue(self, name: str):
        return self.broker.vhost("/").queues[name]


def _bodies(frames: list[Frame]) -> list[bytes]:
    return [f.body for f in frames if f.command == "MESSAGE"]


# ------------------------------------------------------------------------------ CONNECT
@pytest.mark.parametrize("accept, agreed", [
    ("1.0,1.1,1.2", "1.2"), ("1.1", "1.1"), ("1.0,1.1", "1.1"), (None, "1.0")])
def test_connect_negotiates_the_highest_common_version(accept, agreed):
    h = Harness()
    headers = {} if accept is None else {"accept_version": accept}
    (connected,) = h.send("CONNECT", **headers)
    assert connected.command == "CONNECTED"
    assert connected.get("version") == agreed
    assert h.link.version == agreed and h.session.state is State.CONNECTED
    assert connected.get("session", "").startswith("session-")
    assert connected.get("server", "").startswith("warren/")


def test_connect_with_no_common_version_is_an_error():
    h = Harness()
    with pytest.raises(StompError) as error:
        h.send("CONNECT", accept_version="2.0,3.1")
    assert error.value.message == "Version mismatch"
    assert h.session.state is State.AWAIT_CONNECT and h.link.version is None


def test_frames_before_connect_are_refused():
    h = Harness()
    with pytest.raises(StompError) as error:
        h.send("SEND", b"x", destination="/queue/q")
    assert error.value.message == "Not connected"
    assert "q" not in h.broker.vhost("/").queues


def test_heart_beats_are_swapped_and_raised_to_the_floor():
    h = Harness()
    connected = h.connect(heart_beat="4000,10")    # client sends every 4 s, wants 10 ms
    floor = h.config.stomp_heartbeat_floor
    assert connected.get("heart-beat") == f"{floor},4000"
    assert h.link.heartbeats == (floor, 4000)
    assert h.session.heartbeat == (floor, 4000)


def test_heart_beats_off_in_stomp_1_0_and_when_zero():
    h = Harness()
    assert h.connect("1.0", heart_beat="1000,1000").get("heart-beat") == "0,0"
    h2 = Harness()
    assert h2.connect(heart_beat="0,0").get("heart-beat") == "0,0"
    assert h2.link.heartbeats == (0, 0)


def test_a_malformed_heart_beat_header_is_an_error():
    h = Harness()
    with pytest.raises(StompError) as error:
        h.send("CONNECT", accept_version="1.2", heart_beat="ten,20")
    assert error.value.message == "Invalid heart-beat header"
    assert h.session.state is State.AWAIT_CONNECT


def test_a_bad_login_is_refused_and_does_not_connect():
    h = Harness()
    with pytest.raises(StompError) as error:
        h.send("CONNECT", accept_version="1.2", login="guest", passcode="wrong")
    assert error.value.message == "Bad CONNECT"
    assert "Access refused for user 'guest'" in error.value.detail
    assert h.session.state is State.AWAIT_CONNECT and h.link.frames == []


def test_a_vhost_shaped_host_that_does_not_exist_is_refused():
    h = Harness()
    with pytest.raises(StompError) as error:
        h.send("CONNECT", accept_version="1.2", host="/nope")
    assert error.value.message == "Bad CONNECT"


# ------------------------------------------------------------------------------ delivery
def _subscribe_and_fill(h: Harness, ack: str, n: int = 3, **headers: str) -> list[Frame]:
    for i in range(n):
        h.send("SEND", f"m{i}".encode(), destination="/queue/q")
    assert h.queue("q").message_count == n
    return h.send("SUBSCRIBE", id="s1", destination="/queue/q", ack=ack, **headers)


def test_auto_ack_delivers_and_settles_at_once():
    h = Harness()
    h.connect()
    frames = _subscribe_and_fill(h, "auto")
    frames += h.send("SEND", b"m3", destination="/queue/q")
    q = h.queue("q")
    assert _bodies(frames) == [b"m0", b"m1", b"m2", b"m3"]
    assert all(f.get("subscription") == "s1" for f in frames)
    assert q.message_count == 0 and q.unacked == 0


def test_client_ack_is_cumulative():
    h = Harness()
    h.connect()
    for i in range(3):
        h.send("SEND", f"m{i}".encode(), destination="/queue/q")
    frames = h.send("SUBSCRIBE", id="s1", destination="/queue/q", ack="client")
    assert _bodies(frames) == [b"m0", b"m1", b"m2"]
    q = h.queue("q")
    assert q.unacked == 3
    h.send("ACK", id=frames[1].get("ack"))          # m0 and m1
    assert q.unacked == 1
    h.send("ACK", id=frames[2].get("ack"))
    assert q.unacked == 0 and q.message_count == 0


def test_client_individual_ack_settles_only_that_message():
    h = Harness()
    h.connect()
    for i in range(3):
        h.send("SEND", f"m{i}".encode(), destination="/queue/q")
    frames = h.send("SUBSCRIBE", id="s1", destination="/queue/q", ack="client-individual")
    q = h.queue("q")
    h.send("ACK", id=frames[1].get("ack"))
    assert q.unacked == 2
    h.send("ACK", id=frames[0].get("ack"))
    assert q.unacked == 1
    h.send("ACK", id=frames[2].get("ack"))
    assert q.unacked == 0 and q.message_count == 0


def test_nack_requeues_by_default_and_drops_with_requeue_false():
    h = Harness()
    h.connect()
    for i in range(2):
        h.send("SEND", f"m{i}".encode(), destination="/queue/q")
    frames = h.send("SUBSCRIBE", id="s1", destination="/queue/q", ack="client-individual",
                    prefetch_count="1")
    assert _bodies(frames) == [b"m0"]
    again = h.send("NACK", id=frames[0].get("ack"))
    # requeued at its place and redelivered to the only consumer
    assert _bodies(again) == [b"m0"]
    assert again[0].get("redelivered") == "true"
    gone = h.send("NACK", id=again[0].get("ack"), requeue="false")
    assert _bodies(gone) == [b"m1"]
    q = h.queue("q")
    assert q.message_count == 0 and q.unacked == 1      # m0 dropped, m1 out


def test_ack_of_an_unknown_id_is_an_error():
    h = Harness()
    h.connect()
    h.send("SUBSCRIBE", id="s1", destination="/queue/q", ack="client")
    with pytest.raises(StompError):
        h.send("ACK", id="no-such-ack")


def test_prefetch_count_limits_unacked_and_an_ack_gives_credit_back():
    h = Harness()
    h.connect()
    for i in range(5):
        h.send("SEND", f"m{i}".encode(), destination="/queue/q")
    frames = h.send("SUBSCRIBE", id="s1", destination="/queue/q", ack="client-individual",
                    prefetch_count="2")
    assert _bodies(frames) == [b"m0", b"m1"]
    assert h.link.take() == []
    more = h.send("ACK", id=frames[0].get("ack"))
    assert _bodies(more) == [b"m2"]
    more = h.send("ACK", id=frames[1].get("ack"))
    assert _bodies(more) == [b"m3"]
    assert h.queue("q").unacked == 2 and h.queue("q").message_count == 1


# ------------------------------------------------------------------------------ receipts
def test_a_receipt_behind_a_stored_publish_waits_for_the_sync_and_keeps_frame_order():
    store = HeldSyncStore()
    h = Harness(store=store)
    h.connect()
    out = h.send("SEND", b"p", destination="/queue/d", persistent="true", receipt="r1")
    assert not any(f.command == "RECEIPT" for f in out)
    out = h.send("BEGIN", transaction="t", receipt="r2")
    assert not any(f.command == "RECEIPT" for f in out), "a later receipt must not overtake"
    store.release()
    receipts = [f.get("receipt-id") for f in h.link.take() if f.command == "RECEIPT"]
    assert receipts == ["r1", "r2"]


def test_a_receipt_with_nothing_stored_is_written_at_once():
    h = Harness(store=HeldSyncStore())
    h.connect()
    out = h.send("BEGIN", transaction="t", receipt="r1")
    assert [f.get("receipt-id") for f in out if f.command == "RECEIPT"] == ["r1"]


def test_disconnect_closes_after_its_receipt():
    h = Harness()
    h.connect()
    out = h.send("DISCONNECT", receipt="bye")
    assert [f.get("receipt-id") for f in out] == ["bye"]
    assert h.link.closed and h.session.state is State.CLOSED


# ------------------------------------------------------------------------------ transactions
def test_commit_applies_held_sends_in_order_and_abort_drops_them():
    h = Harness()
    h.connect()
    h.send("SUBSCRIBE", id="s1", destination="/queue/q", ack="auto")
    h.send("BEGIN", transaction="t1")
    assert h.send("SEND", b"a", destination="/queue/q", transaction="t1") == []
    assert h.send("SEND", b"b", destination="/queue/q", transaction="t1", receipt="rb") == []
    assert h.queue("q").message_count == 0
    out = h.send("COMMIT", transaction="t1")
    assert _bodies(out) == [b"a", b"b"]
    assert [f.get("receipt-id") for f in out if f.command == "RECEIPT"] == ["rb"]
    h.send("BEGIN", transaction="t2")
    h.send("SEND", b"c", destination="/queue/q", transaction="t2")
    assert h.send("ABORT", transaction="t2") == []
    assert h.queue("q").message_count == 0 and "t2" not in h.session.transactions


def test_transactional_ack_waits_for_commit():
    h = Harness()
    h.connect()
    h.send("SEND", b"a", destination="/queue/q")
    (msg,) = h.send("SUBSCRIBE", id="s1", destination="/queue/q", ack="client-individual")
    h.send("BEGIN", transaction="t")
    h.send("ACK", id=msg.get("ack"), transaction="t")
    assert h.queue("q").unacked == 1
    h.send("COMMIT", transaction="t")
    assert h.queue("q").unacked == 0


@pytest.mark.parametrize("command", ["COMMIT", "ABORT"])
def test_commit_or_abort_of_an_unknown_transaction_is_an_error(command):
    h = Harness()
    h.connect()
    with pytest.raises(StompError) as error:
        h.send(command, transaction="nope")
    assert error.value.message == "Bad transaction"


def test_a_duplicate_begin_is_an_error():
    h = Harness()
    h.connect()
    h.send("BEGIN", transaction="t")
    with pytest.raises(StompError) as error:
        h.send("BEGIN", transaction="t")
    assert error.value.message == "Duplicate transaction"


def test_closing_aborts_open_transactions():
    h = Harness()
    h.connect()
    h.send("SEND", b"before", destination="/queue/q")
    h.send("BEGIN", transaction="t")
    h.send("SEND", b"held", destination="/queue/q", transaction="t")
    h.session.closed()
    assert h.session.transactions == {}
    assert h.queue("q").message_count == 1


# ------------------------------------------------------------------------------ memory alarm
def test_a_memory_alarm_pauses_reading_of_a_publisher_and_clearing_it_resumes():
    h = Harness(memory_high_watermark=1000)
    h.connect()
    h.send("SEND", b"x" * 10, destination="/queue/q")      # registers as a publisher
    assert h.link.reading
    h.send("SEND", b"x" * 2000, destination="/queue/q")    # over the watermark
    assert h.broker.blocked and not h.link.reading
    (msg, *_) = h.send("SUBSCRIBE", id="s", destination="/queue/q", ack="auto")
    h.queue("q").dispatch()
    assert h.queue("q").message_count == 0
    assert not h.broker.blocked and h.link.reading


# ------------------------------------------------------------------------------ heart-beat timeout
def test_a_silent_client_is_dropped_after_the_grace_and_not_before():
    clock = Clock()
    broker = Broker(clock=clock, codec=CODEC)
    broker.ensure_defaults()
    factory = StompFactory(broker, Config(), clock)
    conn = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=_Address("127.0.0.1", 40000),
                                hostAddress=_Address("127.0.0.1", 61613))
    conn.makeConnection(transport)
    conn.dataReceived(b"CONNECT\naccept-version:1.2\nhost:/\nheart-beat:1000,0\n\n\x00")
    assert b"CONNECTED" in transport.value()
    interval = 1.0
    clock.advance(interval)
    conn.dataReceived(b"\n")                  # a heart-beat keeps it alive
    clock.advance(interval * GRACE)
    assert not transport.disconnecting
    clock.advance(interval * GRACE)           # now silent for longer than the grace
    assert transport.disconnecting and conn.closing
    conn.connectionLost(None)
    factory.stopFactory()


class _Address:
    """An IPv4 address as ``endpoints.accept`` reads it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port, self.type = host, port, "TCP"
