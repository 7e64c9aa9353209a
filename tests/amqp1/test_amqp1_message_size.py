"""A message over ``max_message_size`` ends its link with ``amqp:link:message-size-exceeded``
(RabbitMQ 4's condition) and is not published; the limit is offered in the attach."""

from __future__ import annotations

import pika
import pytest
from proton import Message
from proton.utils import BlockingConnection, LinkDetached

from tests.broker_process import BrokerProcess


def test_message_over_the_limit_detaches_its_link(tmp_path):
    with BrokerProcess(tmp_path, env={"WARREN_MAX_MESSAGE_SIZE": "4096"}) as broker:
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        channel = conn.channel()
        channel.queue_declare("sized")
        amqp1 = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                                   allowed_mechs="PLAIN", timeout=30)
        sender = amqp1.create_sender("/queues/sized")
        assert sender.link.remote_max_message_size == 4096
        sender.send(Message(body=b"x" * 1000))
        with pytest.raises(LinkDetached) as caught:
            sender.send(Message(body=b"x" * 5000))
        assert "amqp:link:message-size-exceeded" in str(caught.value)
        amqp1.close()
        assert channel.queue_declare("sized", passive=True).method.message_count == 1
        conn.close()
        assert "Traceback" not in broker.log()
