"""A client that pipelines many methods in one write: its methods are handled a slice per
reactor turn (``CONTROL_METHODS_BUDGET`` seconds of non-Basic methods, then the rest of the
read waits, with reading paused), so other clients are served between slices; this client
still gets every reply in order, and what it sent after the burst acts on the burst's
result."""

from __future__ import annotations

import pika
from pamqp import commands, frame as F
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from tests.amqp.raw_client import RawAmqp
#: some 50 ms of binds or more: several slices
BURST = 1007


def test_a_pipelined_burst_of_binds_is_answered_in_order(broker, unique):
    raw = RawAmqp(broker.amqp_port)
    try:
        raw.handshake()
        raw.open_channel(1)
        raw.send_frame(commands.Queue.Declare(queue=unique, exclusive=True), 1)
        raw.expect(commands.Queue.DeclareOk)
        body = b"routed by the last bind"
        burst = b"".join(F.marshal(commands.Queue.Bind(queue=unique, exchange="amq.direct",
                                                       routing_key=f"{unique}.{i}"), 1)
                         for i in range(BURST))
        burst += (F.marshal(commands.Basic.Publish(exchange="amq.direct",
                                                   routing_key=f"{unique}.{BURST - 1}"), 1)
                  + F.marshal(ContentHeader(0, len(body), commands.Basic.Properties()), 1)
                  + F.marshal(ContentBody(body), 1)
                  + F.marshal(commands.Queue.Declare(queue=unique, passive=True), 1))
        raw.send(burst)
        # another client is served meanwhile (and whatever the order, nothing is lost)
        other = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        other.channel().queue_declare(unique + "-other", exclusive=True)
        other.close()
        for _ in range(BURST):
            raw.expect(commands.Queue.BindOk, timeout=60)
        ok = raw.expect(commands.Queue.DeclareOk, timeout=60)
        assert ok.message_count == 1
    finally:
        raw.close()
    assert not [line for line in broker.lines if "Traceback" in line]

