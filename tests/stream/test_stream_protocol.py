"""The RabbitMQ Stream protocol with the ``rstream`` client, unchanged, and with raw frames.

rstream creates and deletes streams, publishes with confirms, deduplicates by publisher
reference (also across a restart), subscribes from each offset specification with credit,
and stores and queries offsets server-side (also across a restart). Raw sockets send what no
client library would: bad frame lengths, unknown commands, frames over frame_max, commands
before authentication; each gets what RabbitMQ 3.10.8 answers (checked against it with the
same frames: response codes, the close frame after open, a silent close before it), and the
broker log has no traceback.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import struct

import pytest
from rstream import (OffsetType, Producer, RawMessage,
                     exceptions)
from rstream import Consumer as RConsumer

from tests.stream.raw_frames import Raw, frame, string
from tests.stream.rstream_reader import read

TIMEOUT = 30


def producer(broker):
    return Producer("127.0.0.1", port=broker.stream_port, username="guest", password="guest")


def test_publish_confirm_and_consume_from_each_offset_spec(broker):
    async def main():
        async with producer(broker) as p:
            await p.create_stream("s", exists_ok=True)
            for i in range(20):
                await p.send_wait("s", b"m%d" % i)
            await p.send_batch("s", [b"b%d" % i for i in range(5)])
        everything = await read(broker, "s", 25)
        assert everything == [(i, b"m%d" % i) for i in range(20)] + \
            [(20 + i, b"b%d" % i) for i in range(5)]
        assert await read(broker, "s", 3, OffsetType.OFFSET, 12) == [
            (12, b"m12"), (13, b"m13"), (14, b"m14")]
        assert (await read(broker, "s", 1, OffsetType.LAST))[0][0] <= 24
        assert (await read(broker, "s", 1, OffsetType.TIMESTAMP, 0))[0] == (0, b"m0")
    asyncio.run(main())


def test_publish_frames_over_frame_max_are_taken(broker):
    """rstream batches by count: 2000 messages of 1 KiB make a frame over the 1 MiB frame_max,
    which RabbitMQ takes."""
    async def main():
        async with producer(broker) as p:
            await p.create_stream("wide")
            await p.send_batch("wide", [b"%04d" % i + b"." * 1020 for i in range(2000)])
        return await read(broker, "wide", 2000)

    got = asyncio.run(main())
    assert [o for o, _ in got] == list(range(2000))


def test_many_chunks_with_credit(broker):
    """Far more messages than one chunk: the consumer's credit (one per chunk) paces it."""
    async def main():
        async with producer(broker) as p:
            await p.create_stream("big")
            await p.send_batch("big", [b"%05d" % i for i in range(3000)])
        got = await read(broker, "big", 3000)
        assert [o for o, _ in got] == list(range(3000))
        assert got[-1][1] == b"02999"
    asyncio.run(main())


def test_deduplication_by_publisher_reference_survives_restart(private):
    broker = private

    async def main(first_id):
        async with producer(broker) as p:
            await p.create_stream("d", exists_ok=True)
            client = await p.default_client
            before = await client.query_publisher_sequence(stream="d", reference="writer")
            for i in range(first_id, first_id + 10):
                await p.send_wait("d", RawMessage(b"d%d" % i, publishing_id=i),
                                  publisher_name="writer")
            return before

    assert asyncio.run(main(1)) == 0
    broker.stop()
    broker.start()
    # ids 1..10 again (a publisher resending after a crash), then 11..20: only 11..20 stored
    assert asyncio.run(main(1)) == 10
    asyncio.run(main(11))

    async def check():
        got = await read(broker, "d", 20)
        assert [b for _, b in got] == [b"d%d" % i for i in range(1, 21)]
        async with producer(broker) as p:
            client = await p.default_client
            assert await client.query_publisher_sequence(stream="d", reference="writer") == 20
    asyncio.run(check())


def test_offset_tracking_survives_restart(private):
    broker = private

    async def store():
        async with producer(broker) as p:
            await p.create_stream("o")
            await p.send_batch("o", [b"x%d" % i for i in range(10)])
        consumer = RConsumer("127.0.0.1", port=broker.stream_port, username="guest",
                             password="guest")
        await consumer.start()
        with pytest.raises(exceptions.OffsetNotFound):
            await consumer.query_offset("o", "app")
        await consumer.store_offset("o", "app", 6)
        assert await consumer.query_offset("o", "app") == 6
        await consumer.close()

    asyncio.run(store())
    broker.stop()
    broker.start()

    async def resume():
        consumer = RConsumer("127.0.0.1", port=broker.stream_port, username="guest",
                             password="guest")
        await consumer.start()
        offset = await consumer.query_offset("o", "app")
        await consumer.close()
        return await read(broker, "o", 3, OffsetType.OFFSET, offset + 1)

    assert asyncio.run(resume()) == [(7, b"x7"), (8, b"x8"), (9, b"x9")]


def test_missing_streams_and_existing_ones(broker):
    async def main():
        async with producer(broker) as p:
            await p.create_stream("e")
            with pytest.raises(exceptions.StreamAlreadyExists):
                await p.create_stream("e")
            with pytest.raises(exceptions.StreamDoesNotExist):
                await p.delete_stream("nope")
            with pytest.raises(exceptions.StreamDoesNotExist):
                await p.send_wait("nope", b"lost")
            await p.delete_stream("e")
            assert not await p.stream_exists("e")
    asyncio.run(main())
    assert "Traceback" not in broker.log()


def close_code(raw):
    key, body = raw.frame()
    assert key == 22, key
    return struct.unpack_from(">IH", body)[1]


@pytest.mark.parametrize("data", [
    struct.pack(">I", 2) + b"\x00\x11",                      # no room for key and version
    frame(17, struct.pack(">I", 1)),                          # peer properties cut short
    frame(999, b""),                                          # unknown command
    frame(13, struct.pack(">I", 1), string("s")),             # create before open
])
def test_bad_frames_before_open_close_without_a_word(broker, data):
    """RabbitMQ 3.10.8 closes such a connection without a close frame; so does warren."""
    raw = Raw(broker)
    raw.send(data)
    assert raw.closed()
    assert "Traceback" not in broker.log()


def test_bad_frames_after_open(broker):
    """After open: a close frame, correlation 1, code 13 and RabbitMQ's "unknown frame"."""
    raw = Raw(broker)
    raw.login()
    raw.send(frame(999, b""))
    key, body = raw.frame()
    assert (key, body) == (22, struct.pack(">IH", 1, 13) + string("unknown frame"))
    assert raw.closed()
    raw = Raw(broker)
    raw.login()
    raw.send(frame(13, struct.pack(">I", 16), string("made-first"), struct.pack(">i", 0)))
    raw.frame()
    # an offset specification type RabbitMQ cannot parse
    raw.send(frame(7, struct.pack(">IB", 17, 1), string("made-first"), struct.pack(">H", 9),
                   struct.pack(">Hi", 10, 0)))
    assert close_code(raw) == 13
    raw = Raw(broker)
    raw.login()
    # a subscribe whose string length runs past the end of the frame
    raw.send(frame(7, struct.pack(">IB", 5, 1), struct.pack(">H", 500), b"abc"))
    assert close_code(raw) == 13
    raw = Raw(broker)
    raw.login()
    # over frame_max is taken, as RabbitMQ takes it (rstream sends such publish frames), up to
    # 64 MiB; a frame announced larger closes the connection with FRAME_TOO_LARGE
    raw.send(struct.pack(">I", 100_000_000) + b"\x00\x02\x00\x01")
    assert close_code(raw) == 14
    assert "Traceback" not in broker.log()


def test_response_codes_of_commands_on_missing_things(broker):
    raw = Raw(broker)
    raw.login()

    def ask(key, *parts):
        raw.send(frame(key, *parts))
        got, body = raw.frame()
        assert got == key | 0x8000
        return struct.unpack_from(">IH", body)[1]

    assert ask(7, struct.pack(">IB", 10, 1), string("nope"), struct.pack(">HH", 1, 10),
               struct.pack(">i", 0)) == 2                     # subscribe: no such stream
    assert ask(1, struct.pack(">IB", 11, 1), string(""), string("nope")) == 2  # publisher
    assert ask(12, struct.pack(">IB", 12, 9)) == 4            # unsubscribe: unknown id
    assert ask(6, struct.pack(">IB", 13, 9)) == 18            # delete unknown publisher
    assert ask(11, struct.pack(">I", 14), string("r"), string("nope")) == 2  # query offset
    # a bad max-age: refused (RabbitMQ 3.10.8 creates the stream anyway)
    assert ask(13, struct.pack(">I", 15), string("made"), struct.pack(">i", 1),
               string("max-age"), string("10parsecs")) == 17
    assert ask(13, struct.pack(">I", 16), string("made"), struct.pack(">i", 0)) == 1
    assert ask(13, struct.pack(">I", 17), string("made"), struct.pack(">i", 0)) == 5  # again
    assert ask(13, struct.pack(">I", 18), string("made"), struct.pack(">i", 1),
               string("max-length-bytes"), string("1000")) == 17   # inequivalent (RabbitMQ)
    # a publish for a publisher never declared: a publish error per message, code 18
    raw.send(frame(2, struct.pack(">Bi", 7, 1), struct.pack(">Qi", 42, 3), b"abc"))
    key, body = raw.frame()
    assert key == 4
    assert struct.unpack_from(">BiQH", body) == (7, 1, 42, 18)
    # wrong password
    bad = Raw(broker)
    bad.send(frame(18, struct.pack(">I", 2)))
    bad.frame()
    bad.send(frame(19, struct.pack(">I", 3), string("PLAIN"), struct.pack(">i", 12),
                   b"\0guest\0wrong"))
    key, body = bad.frame()
    assert (key, struct.unpack_from(">IH", body)) == (0x8013, (3, 8))
    assert "Traceback" not in broker.log()


def test_connection_listed_closed_by_the_api_and_told_of_a_deleted_stream(broker):
    import requests
    api = f"{broker.http_url}/api"
    auth = ("guest", "guest")
    listeners = requests.get(f"{api}/overview", auth=auth, timeout=TIMEOUT).json()["listeners"]
    assert {"protocol": "stream", "port": broker.stream_port} in [
        {"protocol": x["protocol"], "port": x["port"]} for x in listeners]
    raw = Raw(broker)
    raw.login()
    raw.send(frame(13, struct.pack(">I", 20), string("gone"), struct.pack(">i", 0)))
    assert struct.unpack_from(">IH", raw.frame()[1]) == (20, 1)
    raw.send(frame(7, struct.pack(">IB", 21, 3), string("gone"), struct.pack(">HH", 1, 5),
                   struct.pack(">i", 0)))
    assert struct.unpack_from(">IH", raw.frame()[1]) == (21, 1)
    # the stream deleted by someone else: a metadata update, code 6 (stream not available)
    assert requests.delete(f"{api}/queues/%2F/gone", auth=auth,
                           timeout=TIMEOUT).status_code == 204
    key, body = raw.frame()
    assert key == 16
    assert body[:2] == struct.pack(">H", 6) and body[2:] == string("gone")
    conns = requests.get(f"{api}/connections", auth=auth, timeout=TIMEOUT).json()
    port = raw.sock.getsockname()[1]
    mine = [c for c in conns if c["protocol"] == "RabbitMQ Stream" and c["peer_port"] == port]
    assert len(mine) == 1 and mine[0]["user"] == "guest" and mine[0]["vhost"] == "/"
    name = urllib.parse.quote(mine[0]["name"], safe="")
    assert requests.delete(f"{api}/connections/{name}", auth=auth,
                           headers={"X-Reason": "go away"}, timeout=TIMEOUT).status_code == 204
    key, body = raw.frame()
    assert key == 22 and b"go away" in body
    assert raw.closed()
    assert "Traceback" not in broker.log()


def test_connection_lists_the_clients_peer_properties(broker):
    """RabbitMQ shows a Stream protocol connection's peer properties as its client_properties
    in /api/connections; rstream's own suite finds the connection it will close there by
    its connection_name."""
    import requests
    from rstream.client import Client

    async def main():
        client = Client("127.0.0.1", broker.stream_port, frame_max=1 << 20, heartbeat=60,
                        connection_name="named-by-client")
        await client.start()
        await client.authenticate(vhost="/", username="guest", password="guest")
        try:
            return requests.get(f"{broker.http_url}/api/connections", auth=("guest", "guest"),
                                timeout=TIMEOUT).json()
        finally:
            await client.close()

    props = [c["client_properties"] for c in asyncio.run(main())
             if c["protocol"] == "RabbitMQ Stream"]
    named = [p for p in props if p.get("connection_name") == "named-by-client"]
    assert named and all(p.get("product") == "RabbitMQ Stream" for p in named), props


def test_resolve_offset_spec_answers_where_a_subscription_would_start(broker):
    """RabbitMQ 4.3's resolve_offset_spec (key 31): always offset type 4; an empty stream
    resolves everything to 0; an offset past the end to the next one, a future timestamp
    too (RabbitMQ's own suite asserts these); a missing stream is code 2 and 0, no read
    permission 16; an offset type it cannot parse closes the connection (13)."""
    import requests
    raw = Raw(broker)
    raw.login()
    versions = raw.ask(27, struct.pack(">Ii", 30, 0))
    assert versions[0] == 1
    (n,) = struct.unpack_from(">i", versions[1])
    assert (31, 1, 1) in [struct.unpack_from(">HHH", versions[1], 4 + 6 * i) for i in range(n)]
    assert raw.ask(13, struct.pack(">I", 31), string("resolved"), struct.pack(">i", 0))[0] == 1

    def resolve(spec, stream="resolved", props=b"\x00\x00\x00\x00"):
        code, rest = raw.ask(31, struct.pack(">I", 40), string(stream), spec, props)
        kind, offset = struct.unpack(">HQ", rest)
        assert kind == 4
        return code, offset

    first, last, nxt = (struct.pack(">H", k) for k in (1, 2, 3))
    assert [resolve(s) for s in (first, last, nxt)] == [(1, 0), (1, 0), (1, 0)]
    # three messages from a publisher, confirmed
    assert raw.ask(1, struct.pack(">IB", 32, 5), string(""), string("resolved"))[0] == 1
    raw.send(frame(2, struct.pack(">Bi", 5, 3),
                   *(struct.pack(">QI", i, 2) + b"m%d" % i for i in range(3))))
    key, body = raw.frame()
    assert (key, struct.unpack_from(">Bi", body)) == (3, (5, 3))
    assert resolve(first) == (1, 0)
    # one publish is one chunk, as osiris writes it: last is where it starts
    assert resolve(last) == (1, 0)
    assert resolve(nxt) == (1, 3)
    raw.send(frame(2, struct.pack(">Bi", 5, 1), struct.pack(">QI", 3, 2) + b"m3"))
    key, body = raw.frame()
    assert (key, struct.unpack_from(">Bi", body)) == (3, (5, 1))
    assert resolve(last) == (1, 3)
    assert resolve(nxt) == (1, 4)
    assert resolve(struct.pack(">HQ", 4, 1)) == (1, 1)
    assert resolve(struct.pack(">HQ", 4, 100)) == (1, 4)
    assert resolve(struct.pack(">Hq", 5, 0)) == (1, 0)
    assert resolve(struct.pack(">Hq", 5, 2 ** 62)) == (1, 4)
    # filter properties are taken (RabbitMQ reads filter.N, match-unfiltered, chunk_selector)
    assert resolve(first, props=struct.pack(">i", 1) + string("filter.0") + string("x")) == (1, 0)
    assert resolve(first, stream="no-such-stream") == (2, 0)
    # a user who may not read the stream
    api, auth = f"{broker.http_url}/api", ("guest", "guest")
    assert requests.put(f"{api}/users/resolver", json={"password": "pw", "tags": ""},
                        auth=auth, timeout=TIMEOUT).status_code in (201, 204)
    assert requests.put(f"{api}/permissions/%2F/resolver",
                        json={"configure": ".*", "write": ".*", "read": "^$"},
                        auth=auth, timeout=TIMEOUT).status_code in (201, 204)
    refused = Raw(broker)
    refused.login("resolver", "pw")
    assert refused.ask(31, struct.pack(">I", 41), string("resolved"), first,
                       struct.pack(">i", 0)) == (16, struct.pack(">HQ", 4, 0))
    # an unknown offset type, and a frame cut inside the offset
    raw.send(frame(31, struct.pack(">I", 42), string("resolved"), struct.pack(">H", 9),
                   struct.pack(">i", 0)))
    assert close_code(raw) == 13
    refused.send(frame(31, struct.pack(">I", 43), string("resolved"), struct.pack(">HI", 4, 1)))
    assert close_code(refused) == 13
    assert "Traceback" not in broker.log()
