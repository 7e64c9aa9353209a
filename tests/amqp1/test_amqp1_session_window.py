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
