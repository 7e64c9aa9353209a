"""A durable message an AMQP 1.0 publisher saw accepted is on disk: it survives a restart,
its message annotations and application properties with it."""

from __future__ import annotations

import pika
from proton import Message, symbol
from proton.utils import BlockingConnection

from tests.broker_process import BrokerProcess


def test_accepted_durable_message_survives_restart(tmp_path):
    with BrokerProcess(tmp_path) as broker:
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        conn.channel().queue_declare("kept", durable=True)
        conn.close()
        amqp1 = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                                   allowed_mechs="PLAIN", timeout=30)
        # BlockingSender.send waits for the broker's outcome: accepted only after the sync
        message = Message(body=b"durable", durable=True, properties={"k": "v"})
        message.annotations = {symbol("x-opt-trace"): "t", symbol("x-opt-n"): 5}
        amqp1.create_sender("/queues/kept").send(message)
        amqp1.close()
        broker.kill()
        broker.start()
        amqp1 = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                                   allowed_mechs="PLAIN", timeout=30)
        receiver = amqp1.create_receiver("/queues/kept")
        got = receiver.receive(timeout=30)
        receiver.accept()
        amqp1.close()
        assert bytes(got.body) == b"durable" and got.durable
        assert got.properties == {"k": "v"}
        assert got.annotations == {"x-opt-trace": "t", "x-opt-n": 5, "x-exchange": "",
                                   "x-routing-key": "kept"}
