"""A durable message an AMQP 1.0 publisher saw accepted is on disk: it survives a restart,
its message annotations, application properties, footer and body section (here an
amqp-value map, not a data section) with it."""

from __future__ import annotations

import pika
from proton import Message, symbol
from proton.utils import BlockingConnection

from tests.amqp1.proton_raw import (FOOTER, MESSAGE_ANNOTATIONS, RawMessage, encoded,
                                    receive_raw, section, sections)

from tests.broker_process import BrokerProcess


def test_accepted_durable_message_survives_restart(tmp_path):
    with BrokerProcess(tmp_path) as broker:
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        conn.channel().queue_declare("kept", durable=True)
        conn.close()
        amqp1 = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                                   allowed_mechs="PLAIN", timeout=30)
        # BlockingSender.send waits for the broker's outcome: accepted only after the sync
        message = Message(body={"durable": [1, b"\x00"]}, durable=True, properties={"k": "v"})
        message.annotations = {symbol("x-opt-trace"): "t", symbol("x-opt-n"): 5,
                               symbol("vendor"): "v"}
        footer = section(FOOTER, {symbol("signature"): b"sig"})
        amqp1.create_sender("/queues/kept").send(RawMessage(encoded(message, after=footer)))
        amqp1.close()
        broker.kill()
        broker.start()
        amqp1 = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                                   allowed_mechs="PLAIN", timeout=30)
        got = sections(receive_raw(amqp1, "/queues/kept"))
        amqp1.close()
        assert got[0x77] == {"durable": [1, b"\x00"]} and got[0x70][0]  # header durable
        assert 0x75 not in got
        assert got[0x74] == {"k": "v"}
        assert got[MESSAGE_ANNOTATIONS] == {"x-opt-trace": "t", "x-opt-n": 5, "vendor": "v",
                                            "x-exchange": "", "x-routing-key": "kept"}
        assert got[FOOTER] == {"signature": b"sig"}
