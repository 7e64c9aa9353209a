"""The session's incoming window (spec 2.5.6) kept in RabbitMQ 4's way: 2,000 transfer frames
(RabbitMQ 4's 400 would hold a session below one link's credit), widened again by a session
flow at half, so a client that keeps to it never runs out; and
the client's window, which bounds every transfer frame sent, those of a multi-frame
delivery too. (A
client that overruns it is in test_amqp1_flow_control.py: that needs the memory alarm.)"""

from __future__ import annotations

from tests.amqp1.raw import Raw
from tests.polling import eventually
from warren.amqp1_message.codec import Composite, decode_message, encode_frame


def test_the_window_is_widened_at_half(broker, channel, unique):
    channel.queue_declare(unique)
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.sock.sendall(encode_frame(Composite("begin", next_outgoing_id=7, incoming_window=10,
                                            outgoing_window=1000)))
    begin = raw.frame().performative
    assert begin.kind == "begin" and begin.incoming_window == 2000
    raw.attach_sender(Composite("target", address=f"/queues/{unique}"))
    for n in range(2050):                       # more than one window's worth, never waiting
        raw.transfer(0, n, b"\x00\x53\x75\xa0\x01x")
    session_flow = None
    while session_flow is None:
        p = raw.frame().performative
        if p.kind == "flow" and p.handle is None:
            session_flow = p
    # sent on the 1,000th frame: the next one the broker expects is 7 + 1,000
    assert session_flow.incoming_window == 2000 and session_flow.next_incoming_id == 1007
    eventually(lambda: channel.queue_declare(unique, passive=True).method.message_count
               == 2050, "every transfer taken")


def _transfers_until_echo(raw):
    """The transfers the broker sends before it answers an echo flow (it sends what it can
    as soon as it can, so the answer comes after every transfer it was free to send)."""
    raw.sock.sendall(encode_frame(Composite("flow", next_incoming_id=0, incoming_window=2,
                                            next_outgoing_id=0, outgoing_window=10, handle=0,
                                            delivery_count=0, link_credit=10, echo=True)))
    got = []
    while True:
        p = raw.frame().performative
        if p.kind == "flow" and p.handle == 0:
            return got
        if p.kind == "transfer":
            got.append(p.delivery_id)


def test_the_clients_incoming_window_bounds_the_transfers_sent(broker, channel, unique):
    # spec 2.5.6: the broker sends no more transfer frames than the window the client's
    # begin and flows leave open; a session flow widening it lets the rest come
    channel.queue_declare(unique)
    for n in range(5):
        channel.basic_publish("", unique, f"m{n}".encode())
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.begin(incoming_window=2)
    raw.attach_receiver(f"/queues/{unique}")
    # credit for 10, a window of 2 (as the begin said): 2 transfers, then nothing
    assert _transfers_until_echo(raw) == [0, 1]
    raw.sock.sendall(encode_frame(Composite("flow", next_incoming_id=2, incoming_window=2,
                                            next_outgoing_id=0, outgoing_window=10)))
    got = []
    while len(got) < 2:
        p = raw.frame().performative
        if p.kind == "transfer":
            got.append(p.delivery_id)
    assert got == [2, 3]
    raw.sock.sendall(encode_frame(Composite("flow", next_incoming_id=4, incoming_window=100,
                                            next_outgoing_id=0, outgoing_window=10)))
    p = raw.frame().performative
    assert (p.kind, p.delivery_id) == ("transfer", 4)


def _partly_delivered(broker, channel, unique, body):
    """A raw receiver (handle 0, session window 2, frames of 512 bytes) that got the first
    two frames of ``body``'s delivery; those frames."""
    channel.queue_declare(unique)
    channel.basic_publish("", unique, body)
    raw = Raw(broker.amqp_port)
    raw.login()
    raw.sock.sendall(encode_frame(Composite("open", container_id="raw",
                                            max_frame_size=512)))
    assert raw.frame().performative.kind == "open"
    raw.begin(incoming_window=2)
    raw.attach_receiver(f"/queues/{unique}")
    raw.sock.sendall(encode_frame(Composite("flow", next_incoming_id=0, incoming_window=2,
                                            next_outgoing_id=0, outgoing_window=10, handle=0,
                                            delivery_count=0, link_credit=1, echo=True)))
    first = []
    while True:
        frame = raw.frame()
        if frame.performative.kind == "flow" and frame.performative.handle == 0:
            return raw, first
        if frame.performative.kind == "transfer":
            first.append(frame)


def test_a_multi_frame_delivery_waits_for_the_window_too(broker, channel, unique):
    # RabbitMQ 4 sends the frames of one delivery only as far as the client's incoming
    # window reaches and the rest once a flow opens it again (its session's pending
    # deliveries): a delivery once begun is no licence to overrun the window
    body = bytes(range(256)) * 12                       # some 7 frames of 512 bytes
    raw, first = _partly_delivered(broker, channel, unique, body)
    assert [bool(f.performative.more) for f in first] == [True, True]
    raw.sock.sendall(encode_frame(Composite("flow", next_incoming_id=2, incoming_window=100,
                                            next_outgoing_id=0, outgoing_window=10)))
    rest = [raw.frame()]
    while rest[-1].performative.more:
        rest.append(raw.frame())
    assert all(f.performative.kind == "transfer" for f in rest)
    sections = decode_message(b"".join(f.payload for f in first + rest))
    assert b"".join(sections["data"]) == body


def test_the_rest_of_a_detached_links_delivery_is_not_sent(broker, channel, unique):
    # the link ends before the window opens: the rest of its delivery is dropped (as
    # RabbitMQ 4 drops a detached link's pending delivery) and the message is requeued
    raw, first = _partly_delivered(broker, channel, unique, bytes(3000))
    assert len(first) == 2
    raw.sock.sendall(encode_frame(Composite("detach", handle=0, closed=True)))
    assert raw.frame().performative.kind == "detach"
    raw.sock.sendall(encode_frame(Composite("flow", next_incoming_id=2, incoming_window=100,
                                            next_outgoing_id=0, outgoing_window=10)))
    raw.attach_receiver(f"/queues/{unique}", handle=1)
    raw.sock.sendall(encode_frame(Composite("flow", next_incoming_id=2, incoming_window=100,
                                            next_outgoing_id=0, outgoing_window=10, handle=1,
                                            delivery_count=0, link_credit=1)))
    frames = [raw.frame()]
    while frames[-1].performative.kind != "transfer" or frames[-1].performative.more:
        frames.append(raw.frame())
    transfers = [f for f in frames if f.performative.kind == "transfer"]
    assert {f.performative.handle for f in transfers} == {1}
    sections = decode_message(b"".join(f.payload for f in transfers))
    assert b"".join(sections["data"]) == bytes(3000)
