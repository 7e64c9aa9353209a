"""Over the memory watermark an AMQP 1.0 sender gets no more credit (RabbitMQ 4 throttles its
AMQP 1.0 publishers this way); a transfer beyond the credit it has ends that link with
``amqp:link:transfer-limit-exceeded``; once memory is freed, credit comes again."""

from __future__ import annotations

import pika
import pytest

from tests.amqp1.test_amqp1 import Raw
from tests.broker_process import BrokerProcess
from tests.polling import eventually
from warren.amqp1_message.codec import Composite, decode_message, encode_frame

BODY = b"\x00\x53\x75\xb0" + (4000).to_bytes(4, "big") + b"x" * 4000   # one 4 kB data section


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    with BrokerProcess(tmp_path_factory.mktemp("amqp1-flow"),
                       extra_args=["--memory-high-watermark", "40000"]) as broker:
        yield broker


def attached_sender(broker, queue):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    conn.channel().queue_declare(queue)
    conn.close()
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.begin(incoming_window=1000, outgoing_window=1000)
    flow = raw.attach_sender(Composite("target", address=f"/queues/{queue}"))
    assert flow.link_credit > 0
    return raw, int(flow.link_credit)


def transfer(raw, n):
    raw.sock.sendall(encode_frame(Composite("transfer", handle=0, delivery_id=n,
                                            delivery_tag=b"%d" % n, settled=True), 0, BODY))


def test_credit_ends_under_the_alarm_and_a_transfer_beyond_it_detaches(small):
    raw, credit = attached_sender(small, "beyond")
    for n in range(credit + 1):
        transfer(raw, n)
    frame = raw.frame()
    assert frame.performative.kind == "detach"
    assert frame.performative.error.condition == "amqp:link:transfer-limit-exceeded"
    raw.sock.sendall(encode_frame(Composite("end")))
    assert raw.frame().performative.kind == "end"     # the session outlived its link
    conn = pika.BlockingConnection(pika.URLParameters(small.amqp_url))
    assert conn.channel().queue_purge("beyond").method.message_count == credit
    conn.close()


def test_credit_comes_back_when_memory_is_freed(small):
    raw, credit = attached_sender(small, "again")
    for n in range(credit):
        transfer(raw, n)
    conn = pika.BlockingConnection(pika.URLParameters(small.amqp_url))
    channel = conn.channel()
    eventually(lambda: channel.queue_declare("again", passive=True).method.message_count
               == credit, "every transfer taken")
    channel.queue_purge("again")
    conn.close()
    flow = raw.frame().performative
    while flow.kind == "flow" and flow.handle is None:
        flow = raw.frame().performative         # the session's window, widened again first
    # the first link flow since the attach, sent after all the credit was used: none meanwhile
    assert flow.kind == "flow" and flow.delivery_count == credit and flow.link_credit > 0



def test_transfers_beyond_the_session_window_under_the_alarm_end_the_session(small):
    # the alarm comes with the first few 4 kB messages; from then on the session's incoming
    # window (2,000 transfer frames) is not widened, so frame 2,001 overruns it
    raw, _credit = attached_sender(small, "window")
    for n in range(20):
        transfer(raw, n)
    for _ in range(2000 - 20 + 1):               # the frames of one unfinished delivery
        raw.sock.sendall(encode_frame(Composite("transfer", handle=0, delivery_id=20,
                                                delivery_tag=b"20", settled=True, more=True),
                                      0, b"x"))
    frame = raw.frame()
    assert frame.performative.kind == "end"
    assert frame.performative.error.condition == "amqp:session:window-violation"
    assert frame.performative.error.description == \
        "incoming window violation (tolerated excess tranfers: 0)"
    conn = pika.BlockingConnection(pika.URLParameters(small.amqp_url))
    # the 20 whole messages kept, nothing of the unfinished one
    assert conn.channel().queue_purge("window").method.message_count == 20
    conn.close()
    # the connection outlived its session
    raw.sock.sendall(encode_frame(Composite("end")))
    raw.sock.sendall(encode_frame(Composite("begin", next_outgoing_id=0, incoming_window=10,
                                            outgoing_window=10), 1))
    assert raw.frame().performative.kind == "begin"
    assert "Traceback" not in small.log()


def test_a_receiver_that_stops_reading_gets_everything_whole_and_in_order(broker, channel,
                                                                          unique):
    """More than loopback's socket buffers is delivered while the receiver does not read: the
    connection writes what the socket takes at once, keeps the rest behind it and holds the
    link's deliveries back while the socket is full (output.BatchedOutput), so once the
    receiver reads again every message arrives whole, split into frames, and in order."""
    channel.queue_declare(unique)
    raw = Raw(broker.amqp_port)
    count, size = 64, 256 * 1024                # 16 MiB
    try:
        raw.open()
        raw.begin(incoming_window=2**31 - 1)
        raw.attach_receiver(f"/queues/{unique}")
        raw.sock.sendall(encode_frame(Composite(
            "flow", next_incoming_id=0, incoming_window=2**31 - 1, next_outgoing_id=0,
            outgoing_window=10, handle=0, delivery_count=0, link_credit=count)))
        for i in range(count):
            channel.basic_publish("", unique, i.to_bytes(4, "big") * (size // 4))
        for i in range(count):
            parts = []
            while True:
                frame = raw.frame()
                assert frame is not None and frame.performative.kind == "transfer", frame
                parts.append(bytes(frame.payload))
                if not frame.performative.more:
                    break
            body = b"".join(decode_message(b"".join(parts))["data"])
            assert body == i.to_bytes(4, "big") * (size // 4), f"message {i} garbled"
    finally:
        raw.sock.close()
        channel.queue_delete(unique)
