"""A durable message an AMQP 1.0 publisher saw accepted is on disk: it survives a restart,
its message annotations, application properties, footer and body section (here an
amqp-value map, not a data section) with it."""

from __future__ import annotations

import pika
from proton import Message, symbol, timestamp, uint, ulong
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


def test_annotations_come_back_with_their_types_after_a_restart(tmp_path):
    # RabbitMQ 4 keeps a 1.0 message whole: its annotations reach a 1.0 receiver with the
    # types they were sent with (symbol, ulong, uint, timestamp), those named like another
    # front end's own headers too, from the store as from memory
    sent = {symbol("x-opt-sym"): symbol("s"), symbol("x-opt-ul"): ulong(7),
            symbol("x-opt-ui"): uint(5), symbol("x-opt-ts"): timestamp(1700000000000),
            symbol("x-reply-to-topic"): "a/b", symbol("x-mqtt-publish-qos"): 1,
            symbol("x-correlation-id"): "not-an-id", symbol("x-opt-list"): [symbol("t")]}
    with BrokerProcess(tmp_path) as broker:
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        conn.channel().queue_declare("kept", durable=True)
        conn.channel().queue_declare("memory")
        conn.close()
        amqp1 = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                                   allowed_mechs="PLAIN", timeout=30)
        for queue in ("kept", "memory"):
            message = Message(body=b"typed", durable=True)
            message.annotations = sent
            amqp1.create_sender(f"/queues/{queue}").send(message)
        from_memory = sections(receive_raw(amqp1, "/queues/memory"))[MESSAGE_ANNOTATIONS]
        amqp1.close()
        broker.kill()
        broker.start()
        amqp1 = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                                   allowed_mechs="PLAIN", timeout=30)
        from_store = sections(receive_raw(amqp1, "/queues/kept"))[MESSAGE_ANNOTATIONS]
        amqp1.close()
    for got, key in ((from_store, "kept"), (from_memory, "memory")):
        assert got.pop("x-exchange") == "" and got.pop("x-routing-key") == key
        assert {k: (type(k), type(v), v) for k, v in got.items()} == \
            {k: (symbol, type(v), v) for k, v in sent.items()}
