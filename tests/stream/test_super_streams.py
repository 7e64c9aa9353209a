"""Super streams (partitioned streams) as RabbitMQ 3.11+ makes them, on the module's broker.

rstream's SuperStreamProducer creates one with ``create_super_stream`` and routes by hash over
``partitions`` or by key with ``route``; its SuperStreamConsumer reads every partition. AMQP
0-9-1 publishes to the super stream's exchange land in the partition their key is bound with.
Raw frames check the response codes of RabbitMQ's ``rabbit_stream_reader`` for what goes
wrong; ``warren ctl add_super_stream`` makes the same objects through the HTTP API.
"""

from __future__ import annotations

import asyncio
import struct

import mmh3
import pika
import requests
from rstream import Consumer as RConsumer
from rstream import (RouteType, SuperStreamConsumer,
                     SuperStreamCreationOption, SuperStreamProducer)

from tests.stream.raw_frames import Raw, string
from tests.stream.rstream_reader import read
from tests.webconsole.test_ctl import ctl

TIMEOUT = 30
ROUTE, PARTITIONS, CREATE_SUPER, DELETE_SUPER = 24, 25, 29, 30


def strings(*items):
    return struct.pack(">i", len(items)) + b"".join(string(s) for s in items)


def names(body):
    """The stream names of a route or partitions response."""
    (count,) = struct.unpack_from(">i", body)
    out, pos = [], 4
    for _ in range(count):
        (n,) = struct.unpack_from(">H", body, pos)
        out.append(body[pos + 2:pos + 2 + n].decode())
        pos += 2 + n
    return out


async def key_of(message):
    return bytes(message).split(b":")[0].decode()


async def send_all(producer, bodies):
    """Send and wait for every confirm."""
    confirmed = asyncio.Event()
    left = [len(bodies)]

    async def on_confirm(status):
        left[0] -= 1
        if left[0] == 0:
            confirmed.set()

    for body in bodies:
        await producer.send(body, on_publish_confirm=on_confirm)
    await asyncio.wait_for(confirmed.wait(), TIMEOUT)


async def read_stream(broker, stream, count):
    return [body for _offset, body in await read(broker, stream, count)]


def test_hash_routing_with_rstream_and_amqp_into_partitions(broker, unique):
    bodies = [b"k%d:%d" % (i, i) for i in range(30)]

    async def main():
        async with SuperStreamProducer(
                "127.0.0.1", port=broker.stream_port, username="guest", password="guest",
                super_stream=unique, routing_extractor=key_of, routing=RouteType.Hash,
                default_batch_publishing_delay=0.01,
                super_stream_creation_option=SuperStreamCreationOption(n_partitions=3)) as p:
            await send_all(p, bodies)
        got: dict[str, list[bytes]] = {}
        done = asyncio.Event()

        async def on_message(msg, ctx):
            got.setdefault(ctx.stream, []).append(bytes(msg))
            if sum(map(len, got.values())) >= len(bodies):
                done.set()

        consumer = SuperStreamConsumer("127.0.0.1", port=broker.stream_port, username="guest",
                                       password="guest", super_stream=unique)
        await consumer.start()
        await consumer.subscribe(on_message)
        await asyncio.wait_for(done.wait(), TIMEOUT)
        await consumer.close()
        return got

    got = asyncio.run(main())
    partitions = [f"{unique}-{i}" for i in range(3)]
    # the partitions come in their binding order: rstream's hash picks them by index
    for body in bodies:
        key = body.split(b":")[0].decode()
        index = int.from_bytes(mmh3.hash_bytes(bytes(key, "UTF-16"), 104729), "little") % 3
        assert body in got[partitions[index]]
    assert sorted(b for part in got.values() for b in part) == sorted(bodies)

    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    before = ch.queue_declare(partitions[2], passive=True).method.message_count
    ch.basic_publish(unique, "2", b"over amqp")
    assert ch.queue_declare(partitions[2], passive=True).method.message_count == before + 1
    conn.close()
    auth = ("guest", "guest")
    ex = requests.get(f"{broker.http_url}/api/exchanges/%2F/{unique}", auth=auth,
                      timeout=TIMEOUT).json()
    assert (ex["type"], ex["durable"], ex["arguments"]) == ("direct", True,
                                                           {"x-super-stream": True})
    bindings = requests.get(f"{broker.http_url}/api/exchanges/%2F/{unique}/bindings/source",
                            auth=auth, timeout=TIMEOUT).json()
    assert sorted((b["destination"], b["routing_key"], b["arguments"]) for b in bindings) == [
        (p, str(i), {"x-stream-partition-order": i}) for i, p in enumerate(partitions)]


def test_key_routing_over_route(broker, unique):
    async def main():
        async with SuperStreamProducer(
                "127.0.0.1", port=broker.stream_port, username="guest", password="guest",
                super_stream=unique, routing_extractor=key_of, routing=RouteType.Key,
                default_batch_publishing_delay=0.01,
                super_stream_creation_option=SuperStreamCreationOption(
                    n_partitions=0, binding_keys=["eu", "us"])) as p:
            await send_all(p, [b"eu:1", b"eu:2"])
        eu = await read_stream(broker, f"{unique}-eu", 2)
        client = await RConsumer("127.0.0.1", port=broker.stream_port, username="guest",
                                 password="guest").default_client
        routes = await client.route("us", unique), await client.route("asia", unique)
        await client.close()
        return eu, routes

    eu, (us, asia) = asyncio.run(main())
    assert eu == [b"eu:1", b"eu:2"]
    assert (us, asia) == ([f"{unique}-us"], [])


def test_response_codes(broker, unique):
    raw = Raw(broker)
    raw.login()
    corr = struct.pack(">I", 7)
    assert raw.ask(PARTITIONS, corr, string(unique)) == (2, struct.pack(">i", 0))
    assert raw.ask(ROUTE, corr, string("k"), string(unique)) == (2, struct.pack(">i", 0))
    assert raw.ask(DELETE_SUPER, corr, string(unique)) == (2, b"")
    create = (corr, string(unique), strings(f"{unique}-a", f"{unique}-b"), strings("a", "b"))
    # partitions and binding keys of different lengths, a reserved name, a bad argument
    assert raw.ask(CREATE_SUPER, corr, string(unique), strings(f"{unique}-a"),
                   strings("a", "b"), struct.pack(">i", 0))[0] == 17
    assert raw.ask(CREATE_SUPER, corr, string("amq.x"), strings("p"), strings("p"),
                   struct.pack(">i", 0))[0] == 17
    assert raw.ask(CREATE_SUPER, *create, struct.pack(">i", 1), string("max-length-bytes"),
                   string("lots"))[0] == 17
    # a partition's name is taken by a queue: STREAM_ALREADY_EXISTS, nothing made
    requests.put(f"{broker.http_url}/api/queues/%2F/{unique}-b", json={"durable": True},
                 auth=("guest", "guest"), timeout=TIMEOUT)
    assert raw.ask(CREATE_SUPER, *create, struct.pack(">i", 0))[0] == 5
    assert raw.ask(PARTITIONS, corr, string(unique))[0] == 2
    requests.delete(f"{broker.http_url}/api/queues/%2F/{unique}-b", auth=("guest", "guest"),
                    timeout=TIMEOUT)
    assert raw.ask(CREATE_SUPER, *create, struct.pack(">i", 1), string("max-age"),
                   string("1h"))[0] == 1
    assert raw.ask(CREATE_SUPER, *create, struct.pack(">i", 0))[0] == 5       # again
    code, body = raw.ask(PARTITIONS, corr, string(unique))
    assert (code, names(body)) == (1, [f"{unique}-a", f"{unique}-b"])
    code, body = raw.ask(ROUTE, corr, string("b"), string(unique))
    assert (code, names(body)) == (1, [f"{unique}-b"])
    code, body = raw.ask(ROUTE, corr, string("none"), string(unique))
    assert (code, names(body)) == (1, [])

    # a user who may not configure: ACCESS_REFUSED for create and delete, not for partitions
    api = requests.Session()
    api.auth = ("guest", "guest")
    api.put(f"{broker.http_url}/api/users/{unique}", json={"password": "pw", "tags": ""},
            timeout=TIMEOUT)
    api.put(f"{broker.http_url}/api/permissions/%2F/{unique}",
            json={"configure": "^$", "write": ".*", "read": ".*"}, timeout=TIMEOUT)
    limited = Raw(broker)
    limited.login(unique, "pw")
    assert limited.ask(DELETE_SUPER, corr, string(unique))[0] == 16
    assert limited.ask(CREATE_SUPER, corr, string(unique + "x"), strings("p"), strings("p"),
                       struct.pack(">i", 0))[0] == 16
    assert limited.ask(PARTITIONS, corr, string(unique))[0] == 1

    assert raw.ask(DELETE_SUPER, corr, string(unique)) == (1, b"")
    assert raw.ask(PARTITIONS, corr, string(unique))[0] == 2
    for partition in ("a", "b"):
        assert api.get(f"{broker.http_url}/api/queues/%2F/{unique}-{partition}",
                       timeout=TIMEOUT).status_code == 404
    # the command versions name the super stream commands
    code, body = raw.ask(27, corr, struct.pack(">i", 0))
    (count,) = struct.unpack_from(">i", body)
    keys = {struct.unpack_from(">H", body, 4 + 6 * i)[0] for i in range(count)}
    assert {ROUTE, PARTITIONS, CREATE_SUPER, DELETE_SUPER} <= keys
    api.delete(f"{broker.http_url}/api/users/{unique}", timeout=TIMEOUT)
    assert "Traceback" not in broker.log()


def test_ctl_add_super_stream(broker, unique):
    out = ctl(broker, "add_super_stream", unique, "--partitions", "2", "--max-age", "PT10M",
              "--max-length-bytes", "20mb", "--leader-locator", "balanced",
              "--initial-cluster-size", "3")
    assert out.stdout == f"Super stream {unique} has been created\n"
    auth = ("guest", "guest")
    q = requests.get(f"{broker.http_url}/api/queues/%2F/{unique}-1", auth=auth,
                     timeout=TIMEOUT).json()
    assert q["type"] == "stream"
    assert q["arguments"] == {"x-queue-type": "stream", "x-max-age": "600s",
                              "x-max-length-bytes": 20_000_000}
    again = ctl(broker, "add_super_stream", unique, check=False)
    assert again.returncode == 2
    assert f"there is already an exchange named {unique}" in again.stderr
    ctl(broker, "delete_super_stream", unique)
    assert requests.get(f"{broker.http_url}/api/queues/%2F/{unique}-1", auth=auth,
                        timeout=TIMEOUT).status_code == 404
    ctl(broker, "add_super_stream", unique, "--binding-keys", "x,y")
    shown = requests.get(f"{broker.http_url}/api/super-streams/%2F/{unique}", auth=auth,
                         timeout=TIMEOUT).json()
    assert shown["partitions"] == [f"{unique}-x", f"{unique}-y"]
    both = ctl(broker, "add_super_stream", "z", "--partitions", "2", "--binding-keys", "a",
               check=False)
    assert both.returncode == 2 and "not both" in both.stderr
    bad_age = ctl(broker, "add_super_stream", "z", "--max-age", "10 minutes", check=False)
    assert bad_age.returncode == 2 and "ISO 8601" in bad_age.stderr
    bad_locator = ctl(broker, "add_super_stream", "z", "--leader-locator", "far", check=False)
    assert bad_locator.returncode == 2 and "--leader-locator" in bad_locator.stderr
    assert "Traceback" not in broker.log()
