"""A durable message an AMQP 1.0 publisher saw accepted is on disk: it survives a restart."""

from __future__ import annotations

import pika
from proton import Message
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
        amqp1.create_sender("/queues/kept").send(Message(body=b"durable", durable=True))
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
