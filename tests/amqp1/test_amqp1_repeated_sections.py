"""Messages that repeat the sections before their body (the header, properties,
annotations: a client's messages mostly do) are read once per distinct bytes
(``codec.decode_received``); each message still gets its own header, properties and body,
and one that differs in a single field is read as itself."""

from __future__ import annotations

from proton import Message

from tests.amqp1.test_amqp1 import got_one


def test_repeated_and_differing_sections_each_read_as_sent(amqp1, channel, unique):
    channel.queue_declare(unique)
    sender = amqp1.create_sender(f"/queues/{unique}")
    # the same sections before a body of another kind: an amqp-value, which 0-9-1 gets
    # encoded as it came (a data section's stale bytes must not stand in for it)
    sent = [(True, 1, "a", b"a"), (True, 1, "a", b"b"), (False, 1, "a", b"c"),
            (True, 2, "a", b"d"), (True, 1, "z", b"e"), (True, 1, "a", "f"),
            (True, 1, "a", b"g")]
    for durable, n, subject, body in sent:
        sender.send(Message(body=body, durable=durable, subject=subject,
                            inferred=isinstance(body, bytes),
                            properties={"n": n}, annotations={"x-opt-k": subject}))
    for durable, n, subject, body in sent:
        method, props, got = got_one(channel.basic_get(unique, auto_ack=True))
        assert got == (body if isinstance(body, bytes) else b"\x00\x53\x77\xa1\x01f")
        assert props.delivery_mode == (2 if durable else None)
        assert props.headers["n"] == n and props.headers["x-opt-k"] == subject
    assert got_one(channel.basic_get(unique, auto_ack=True)) is None
