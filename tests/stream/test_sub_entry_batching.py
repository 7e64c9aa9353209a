"""Sub-entry batches on the Stream protocol: several messages under one publishing id
(rstream's ``send_sub_entry``), stored as it came, as osiris stores it: Stream protocol
readers get it in their chunk byte for byte, an offset per message. AMQP 0-9-1 readers get
an uncompressed batch's messages one by one and pass over a compressed one (gzip, snappy,
lz4, zstd), as RabbitMQ's ``rabbit_stream_queue`` does ("only Stream protocol clients"
consume them).
Batches RabbitMQ refuses (``validate_compressed_sub_batch``), and compressed ones claiming more
messages than they have bytes (warren's bound: each message takes 8 bytes of its index), get
PRECONDITION_FAILED for their publishing id and the rest of the frame's, while the entries
before them are stored and confirmed.
"""

from __future__ import annotations

import asyncio
import gzip
import struct

import pika
from rstream import CompressionType, Producer

from tests.stream.raw_frames import Raw, frame, string
from tests.stream.rstream_reader import read

TIMEOUT = 30


def test_rstream_sub_entries_none_and_gzip(broker, unique):
    async def main():
        confirmed = asyncio.Event()
        confirms = []

        async def on_confirm(status):
            confirms.append(status.message_id)
            if len(confirms) == 2:
                confirmed.set()

        async with Producer("127.0.0.1", port=broker.stream_port, username="guest",
                            password="guest", default_batch_publishing_delay=0.01) as p:
            await p.create_stream(unique)
            await p.send_sub_entry(unique, [b"n%d" % i for i in range(3)],
                                   compression_type=CompressionType.No,
                                   on_publish_confirm=on_confirm)
            await p.send_sub_entry(unique, [b"g%d" % i for i in range(4)],
                                   compression_type=CompressionType.Gzip,
                                   on_publish_confirm=on_confirm)
            await asyncio.wait_for(confirmed.wait(), TIMEOUT)
        return confirms, await read(broker, unique, 7)

    confirms, got = asyncio.run(main())
    assert len(confirms) == 2      # one confirm per batch (one publishing id each)
    assert got == [(0, b"n0"), (1, b"n1"), (2, b"n2"), (3, b"g0"), (4, b"g1"), (5, b"g2"),
                   (6, b"g3")]
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", unique, b"after")
    ch.basic_qos(prefetch_count=10)
    got = []
    for method, props, body in ch.consume(unique, arguments={"x-stream-offset": "first"},
                                          inactivity_timeout=TIMEOUT):
        got.append((body, props.headers["x-stream-offset"]))
        if len(got) == 4:
            break
    # the uncompressed batch's messages one by one; the gzip batch's offsets passed over
    assert got == [(b"n0", 0), (b"n1", 1), (b"n2", 2), (b"after", 7)]
    conn.close()


def sub_batch(publishing_id, messages, compression=1, count=None, uncompressed=None,
              data=None):
    plain = b"".join(struct.pack(">I", len(m)) + m for m in messages)
    if data is None:
        data = gzip.compress(plain) if compression == 1 else plain
    return struct.pack(">QBHII", publishing_id, 0x80 | (compression << 4),
                       len(messages) if count is None else count,
                       len(plain) if uncompressed is None else uncompressed, len(data)) + data


def test_refused_batches(broker, unique):
    raw = Raw(broker)
    raw.login()
    assert raw.ask(13, struct.pack(">I", 1), string(unique), struct.pack(">i", 0))[0] == 1
    assert raw.ask(1, struct.pack(">IB", 2, 0), string(""), string(unique))[0] == 1

    def publish(*entries):
        raw.send(frame(2, struct.pack(">Bi", 0, len(entries)), *entries))

    def answer():
        key, body = raw.frame()
        publisher, count = struct.unpack_from(">Bi", body)
        if key == 3:
            return "confirm", list(struct.unpack_from(f">{count}Q", body, 5))
        assert key == 4
        return "error", [struct.unpack_from(">QH", body, 5 + 10 * i) for i in range(count)]

    plain = struct.pack(">QI", 1, 2) + b"ok"
    for bad in (sub_batch(2, [b"x"], compression=7),                  # unknown type
                sub_batch(2, [b"x"], count=0),                        # no messages
                sub_batch(2, [b"xy"], count=3),                       # 3 cannot fit 6 bytes
                sub_batch(2, [b"x"], compression=1, data=b""),        # compressed, empty
                sub_batch(2, [b"x"], uncompressed=128 * 1024 * 1024),
                # warren's bound: more messages claimed than compressed bytes
                sub_batch(2, [b"m"] * 10, compression=2, data=b"tiny"),
                # uncompressed, opened by warren: sub-entries that do not fill it
                sub_batch(2, [b"x"], compression=0, data=b"\x00\x00\x00\x09x")):
        publish(plain, bad, struct.pack(">QI", 3, 1) + b"z")
        got = sorted([answer(), answer()])
        assert got == [("confirm", [1]), ("error", [(2, 17), (3, 17)])], bad
    # only the good entries were stored
    assert [b for _, b in asyncio.run(read(broker, unique, 6))] == [b"ok"] * 6
    assert "Traceback" not in broker.log()


def test_batches_are_kept_and_delivered_as_published(broker, unique):
    """A snappy batch and a "gzip" one whose data does not inflate are taken, as RabbitMQ
    takes them (it checks the header only), and a subscriber gets each in its chunk as it
    was sent: one entry, as many records as messages, the offsets stepping over them; an
    uncompressed batch too."""
    raw = Raw(broker)
    raw.login()
    assert raw.ask(13, struct.pack(">I", 1), string(unique), struct.pack(">i", 0))[0] == 1
    assert raw.ask(1, struct.pack(">IB", 2, 0), string(""), string(unique))[0] == 1
    snappy = sub_batch(1, [b"a", b"b"], compression=2, data=b"opaque snappy bytes")
    not_gzip = sub_batch(2, [b"c", b"d", b"e"], compression=1, data=b"not gzip")
    plain = sub_batch(4, [b"p", b"qq"], compression=0)
    raw.send(frame(2, struct.pack(">Bi", 0, 4), snappy, not_gzip,
                   struct.pack(">QI", 3, 1) + b"z", plain))
    key, body = raw.frame()
    assert (key, body) == (3, struct.pack(">Bi4Q", 0, 4, 1, 2, 3, 4))
    # subscribe from offset 3, inside the second batch: its chunk comes whole, from 2
    assert raw.ask(7, struct.pack(">IB", 4, 1), string(unique), struct.pack(">HQ", 4, 3),
                   struct.pack(">Hi", 10, 0))[0] == 1
    key, body = raw.frame()
    assert key == 8
    entries, records, first, size = struct.unpack_from(">HIxxxxxxxxxxxxxxxxQxxxxI", body, 3)
    # three entries (the batch, "z", the uncompressed batch), six records; each batch byte
    # for byte as it was published
    assert (first, entries, records) == (2, 3, 6)
    assert body[-size:] == not_gzip[8:] + struct.pack(">I", 1) + b"z" + plain[8:]
    assert "Traceback" not in broker.log()
