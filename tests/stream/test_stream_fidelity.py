"""What a Stream protocol client sees of offsets, chunks and the leader, as RabbitMQ shows them.

Checked side by side with RabbitMQ 3.10.8 (the stream plugin, default ``advertised_host``)
with the same frames: a stored offset is a chunk of its own in the log (osiris' tracking
delta), so the message after it is one offset further on (0, then 2); no reader gets that
chunk, neither a Stream protocol subscriber nor an AMQP 0-9-1 consumer, and ``last`` starts
at the last chunk of messages; the queue's message count (``/api/queues``) counts it, as
RabbitMQ's counts offsets. Publishes a confirm apart are chunks of their own with their own
trailers, and stay so after a restart. An AMQP 0-9-1 channel publishing into a stream is a
writer with an id of its own, as RabbitMQ's stream client per channel: each chunk it wrote
in has a trailer entry for it (43 bytes on RabbitMQ 3.10.8: the id is the channel's pid,
"_-" and 22 base64url characters). The leader a metadata answer names is the host of the
node name ("localhost" for warren's default, as for a RabbitMQ node ``rabbit@localhost``),
not the address the client happened to connect to. ``stream_stats`` (RabbitMQ 3.11) gives
the first offsets of the oldest and the newest chunk.
"""

from __future__ import annotations

import asyncio
import struct

import pika
import requests
from rstream import schema
from rstream.client import Client

from tests.stream.raw_frames import Raw, string
from tests.stream.rstream_client import client

TIMEOUT = 30


async def publish(c: Client, pub_id: int, ids: list[int], data: bytes = b"m") -> None:
    """One publish frame, waited for until it is confirmed."""
    confirmed = c.wait_frame(schema.PublishConfirm, timeout=TIMEOUT)
    await c.publish([schema.Message(publishing_id=n, filter_value=None, data=data + b"%d" % n)
                     for n in ids], pub_id)
    await confirmed


async def chunks_of(c: Client, stream: str, count: int, sub_id: int = 1,
                    spec: schema.OffsetSpec | None = None) -> list[tuple[int, int, int, bytes]]:
    """The first ``count`` chunks a subscription gets: (first offset, records, trailer
    length, entries)."""
    got: list[tuple[int, int, int, bytes]] = []
    done = asyncio.Event()

    async def on_chunk(d: schema.Deliver) -> None:
        if d.subscription_id != sub_id:
            return   # rstream hands each handler every chunk
        got.append((d.chunk_first_offset, d.num_records, d.trailer_length, d.data))
        if len(got) >= count:
            done.set()

    c.add_handler(schema.Deliver, on_chunk, name=str(sub_id))   # rstream keys them so
    await c.run_queue_listener_task(sub_id, on_chunk)
    if spec is None:
        await c.subscribe(stream, sub_id, initial_credit=count + 5)
    else:
        await c.subscribe(stream, sub_id, spec, initial_credit=count + 5)
    await asyncio.wait_for(done.wait(), TIMEOUT)
    await c.unsubscribe(sub_id)
    c.remove_handler(schema.Deliver, name=str(sub_id))
    return got[:count]


def entry(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def stream_stats(broker, stream: str) -> dict[str, int]:
    raw = Raw(broker)
    try:
        raw.login()
        code, rest = raw.ask(28, struct.pack(">I", 9), string(stream))
        assert code == 1
        (n,) = struct.unpack_from(">i", rest)
        at, stats = 4, {}
        for _ in range(n):
            (size,) = struct.unpack_from(">H", rest, at)
            key = rest[at + 2:at + 2 + size].decode()
            stats[key] = struct.unpack_from(">q", rest, at + 2 + size)[0]
            at += 2 + size + 8
        return stats
    finally:
        raw.sock.close()


def amqp_offsets(broker, stream: str, count: int) -> list[tuple[int, bytes]]:
    """(x-stream-offset, body) of the first ``count`` messages an AMQP 0-9-1 consumer gets."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=100)
        got: list[tuple[int, bytes]] = []
        for _, props, body in ch.consume(stream, arguments={"x-stream-offset": "first"},
                                         inactivity_timeout=TIMEOUT):
            assert body is not None, f"only {got} came"
            got.append((props.headers["x-stream-offset"], body))
            if len(got) == count:
                break
        return got
    finally:
        conn.close()


def test_a_stored_offset_takes_an_offset_that_no_reader_gets(broker):
    async def main():
        c = await client(broker)
        try:
            await c.create_stream("fid-o")
            await c.declare_publisher("fid-o", "ref", 1)
            await publish(c, 1, [1])
            await c.store_offset("fid-o", "app", 0)
            await publish(c, 1, [2])
            before = stream_stats(broker, "fid-o")
            await c.store_offset("fid-o", "app", 5)
            stored = await c.query_offset("fid-o", "app")
            chunks = await chunks_of(c, "fid-o", 2)
            last = await chunks_of(c, "fid-o", 1, sub_id=2,
                                   spec=schema.OffsetSpec(schema.OffsetType.LAST))
            return before, stream_stats(broker, "fid-o"), stored, chunks, last
        finally:
            await c.close()

    before, after, stored, chunks, last = asyncio.run(main())
    # RabbitMQ: m0 at 0, the stored offset's chunk at 1, m1 at 2, the second one at 3
    assert [(o, n, t) for o, n, t, _ in chunks] == [(0, 1, 13), (2, 1, 13)]
    assert [d for _, _, _, d in chunks] == [entry(b"m1"), entry(b"m2")]
    assert stored == 5
    assert before == {"first_chunk_id": 0, "committed_chunk_id": 2}
    assert after == {"first_chunk_id": 0, "committed_chunk_id": 3}
    assert last[0][0] == 2   # the last chunk of messages, not the stored offset's
    assert amqp_offsets(broker, "fid-o", 2) == [(0, b"m1"), (2, b"m2")]
    queue = requests.get(f"{broker.http_url}/api/queues/%2F/fid-o", auth=("guest", "guest"),
                         timeout=TIMEOUT).json()
    assert queue["messages"] == 4   # offsets 0-3, as RabbitMQ counts them
    assert "Traceback" not in broker.log()


def test_chunks_and_stored_offsets_are_the_same_after_a_restart(private):
    broker = private

    async def write():
        c = await client(broker)
        try:
            await c.create_stream("fid-r")
            await c.declare_publisher("fid-r", "w", 1)
            await publish(c, 1, [1, 2])
            await publish(c, 1, [3])
            await c.store_offset("fid-r", "app", 1)
            await publish(c, 1, [4, 5, 6])
            return await chunks_of(c, "fid-r", 3)
        finally:
            await c.close()

    async def read_again():
        c = await client(broker)
        try:
            stored = await c.query_offset("fid-r", "app")
            await c.declare_publisher("fid-r", None, 2)
            await publish(c, 2, [7])
            return stored, await chunks_of(c, "fid-r", 4)
        finally:
            await c.close()

    before = asyncio.run(write())
    broker.stop()
    broker.start()
    stored, after = asyncio.run(read_again())
    # 1+1+1+8 bytes of trailer: the publisher "w" and its last id, per chunk
    assert [(o, n, t) for o, n, t, _ in before] == [(0, 2, 11), (2, 1, 11), (4, 3, 11)]
    assert after[:3] == before
    assert [(o, n, t) for o, n, t, _ in after[3:]] == [(7, 1, 0)]   # offset 3: the stored one
    assert stored == 1
    assert "Traceback" not in broker.log()


def test_the_leader_is_the_host_of_the_node_name_not_the_address_reached(broker):
    async def main():
        c = await client(broker)   # connected to 127.0.0.1
        try:
            await c.create_stream("fid-l")
            return await c.query_leader_and_replicas("fid-l")
        finally:
            await c.close()

    leader, replicas = asyncio.run(main())
    # RabbitMQ 3.10.8 (node rabbit@localhost, no advertised_host set): "localhost"
    assert (leader.host, leader.port, replicas) == ("localhost", broker.stream_port, [])


def test_an_amqp_channels_messages_carry_its_writer_in_the_chunk_trailer(broker):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        first, second = conn.channel(), conn.channel()
        first.queue_declare("fid-a", durable=True, arguments={"x-queue-type": "stream"})
        for ch in (first, second):
            ch.confirm_delivery()   # each publish confirmed before the next: a chunk each
        for ch, body in ((first, b"a0"), (second, b"a1"), (first, b"a2")):
            ch.basic_publish("", "fid-a", body)
    finally:
        conn.close()

    async def main():
        c = await client(broker)
        try:
            return await chunks_of(c, "fid-a", 3)
        finally:
            await c.close()

    chunks = asyncio.run(main())
    assert [(o, n) for o, n, _, _ in chunks] == [(0, 1), (1, 1), (2, 1)]
    # one entry: type, id size, an id of RabbitMQ's shape ("<0.N.0>_-" and 22 characters),
    # the sequence number; RabbitMQ 3.10.8 gives 43 for each of these chunks
    assert all(1 + 1 + 31 + 8 <= t <= 1 + 1 + 35 + 8 for _, _, t, _ in chunks), chunks
    assert amqp_offsets(broker, "fid-a", 3) == [(0, b"a0"), (1, b"a1"), (2, b"a2")]
