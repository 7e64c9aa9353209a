"""The credit a sending client gets: 1,000 at the attach, topped up to 1,000 once it has used
more than half, so a client that keeps sending never waits a round trip for credit (issue
20: at 128 the settled send rate was bound by those round trips); and a long run of settled
sends, which proton lets out as credit comes, all routed. (Transfers beyond the credit are
in test_amqp1_flow_control.py: only the memory alarm stops the top-ups.)"""

from __future__ import annotations

from proton import Message
from proton.reactor import AtMostOnce

from tests.amqp1.raw import Raw
from tests.amqp1.test_amqp1 import depth
from tests.polling import eventually
from warren.amqp1_message.codec import Composite, encode_frame


def settled_transfer(raw, n):
    raw.sock.sendall(encode_frame(Composite("transfer", handle=0, delivery_id=n,
                                            delivery_tag=n.to_bytes(4, "big"), settled=True),
                                  0, b"\x00\x53\x75\xa0\x01x"))


def test_credit_is_granted_and_topped_up_at_half(broker, channel, unique):
    channel.queue_declare(unique)
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.begin(incoming_window=100, outgoing_window=5000)
    flow = raw.attach_sender(Composite("target", address=f"/queues/{unique}"))
    assert flow.link_credit == 1000 and flow.delivery_count == 0
    for n in range(500):            # half used: no flow yet
        settled_transfer(raw, n)
    settled_transfer(raw, 500)      # below half: topped up
    link_flows = []
    while not link_flows:
        p = raw.frame().performative
        if p.kind == "flow" and p.handle is not None:
            link_flows.append(p)
    assert link_flows[0].delivery_count == 501 and link_flows[0].link_credit == 1000
    eventually(lambda: depth(channel, unique) == 501, "every transfer routed")


def test_a_long_settled_send_is_all_routed(amqp1, channel, unique):
    channel.queue_declare(unique)
    fast = amqp1.create_sender(f"/queues/{unique}", name="settled", options=AtMostOnce())
    for i in range(5000):           # five grants' worth, queued in proton until credit comes
        fast.send(Message(body=b"%d" % i))
    amqp1.wait(lambda: fast.link.queued == 0, msg="all sent")
    # a session's transfers are handled in order: this outcome follows all of them
    amqp1.create_sender(f"/queues/{unique}").send(Message(body=b"last"))
    assert depth(channel, unique) == 5001
