"""The session's incoming window (spec 2.5.6) as RabbitMQ 4 keeps it: 400 transfer frames,
widened again by a session flow at half, so a client that keeps to it never runs out. (A
client that overruns it is in test_amqp1_flow_control.py: that needs the memory alarm.)"""

from __future__ import annotations

from tests.amqp1.raw import Raw
from tests.polling import eventually
from warren.amqp1_message.codec import Composite, encode_frame


def test_the_window_is_widened_at_half(broker, channel, unique):
    channel.queue_declare(unique)
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.sock.sendall(encode_frame(Composite("begin", next_outgoing_id=7, incoming_window=10,
                                            outgoing_window=1000)))
    begin = raw.frame().performative
    assert begin.kind == "begin" and begin.incoming_window == 400
    raw.attach_sender(Composite("target", address=f"/queues/{unique}"))
    for n in range(450):                        # more than one window's worth, never waiting
        raw.transfer(0, n, b"\x00\x53\x75\xa0\x01x")
    session_flow = None
    while session_flow is None:
        p = raw.frame().performative
        if p.kind == "flow" and p.handle is None:
            session_flow = p
    # sent on the 200th frame: the next one the broker expects is 7 + 200
    assert session_flow.incoming_window == 400 and session_flow.next_incoming_id == 207
    eventually(lambda: channel.queue_declare(unique, passive=True).method.message_count
               == 450, "every transfer taken")


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
    raw.sock.sendall(encode_frame(Composite("begin", next_outgoing_id=0, incoming_window=2,
                                            outgoing_window=10)))
    assert raw.frame().performative.kind == "begin"
    raw.sock.sendall(encode_frame(Composite("attach", name="r", handle=0, role=True,
                                            source=Composite("source",
                                                             address=f"/queues/{unique}"))))
    assert raw.frame().performative.kind == "attach"
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
