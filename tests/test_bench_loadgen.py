"""bench/loadgen's clients against a peer the test plays, over a real socket pair: what they
send decodes with pamqp (AMQP) or by the protocol's rules, and what they receive — split at
arbitrary points, with duplicates, another run's leftovers, NUL bytes in bodies, heart-beats —
is counted exactly; a broker's refusal mid-run fails the connection with the broker's reason.

No broker here: the peer is the test, so every byte is known (the runs against real brokers are
in test_bench_smoke.py).
"""

from __future__ import annotations

import array
import asyncio
import socket

import pytest
from pamqp import commands, frame, header
from pamqp.body import ContentBody
from pamqp.exceptions import UnmarshalingException

from bench.loadgen import amqp, mqtt, stomp
from bench.loadgen.connection import ProtocolError
from bench.loadgen.driver import Settings
from bench.loadgen.measure import STAMP, BodyMaker, latency_ms

TAG, OTHER_RUN = 0xABCDEF, 0x123456


class Peer:
    """The test's end of the socket pair: write bytes in small pieces, read what came."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = bytearray()

    async def send(self, data: bytes, piece: int = 7) -> None:
        loop = asyncio.get_running_loop()
        for start in range(0, len(data), piece):
            await loop.sock_sendall(self.sock, data[start:start + piece])

    async def read_until(self, enough, what: str, timeout: float = 30.0):
        """Read until `enough(received)` returns something true; return that."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not (result := enough(self.received)):
                chunk = await loop.sock_recv(self.sock, 65536)
                if not chunk:
                    raise AssertionError(f"connection closed before {what}")
                self.received += chunk
        return result


async def connect(factory):
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    _, client = await asyncio.get_running_loop().connect_accepted_socket(factory, ours)
    return client, Peer(theirs)


async def until(event: asyncio.Event, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        await event.wait()


def settings(protocol: str, **changes) -> Settings:
    return Settings(protocol=protocol, scenario="test", tag=TAG, **changes)


def counted(client, total: int) -> asyncio.Event:
    """An event set once the client's tally has seen `total` messages, foreign ones included."""
    done = asyncio.Event()

    def on_read(tally) -> None:
        if tally.received + tally.dups + tally.foreign >= total:
            done.set()
    client.on_read = on_read
    return done


# -- measurement ------------------------------------------------------------------------------
def test_latency_percentiles_are_nearest_rank():
    figures = latency_ms(array.array("q", [ms * 1_000_000 for ms in range(100, 0, -1)]))
    assert (figures["p50"], figures["p90"], figures["p99"], figures["max"]) == (50, 90, 99, 100)
    assert figures["mean"] == 50.5
    assert latency_ms(array.array("q"))["p50"] is None


def test_body_is_stamped_and_sized():
    body = BodyMaker(TAG, 40).make(7)
    assert len(body) == 40 and STAMP.unpack_from(body)[:2] == (TAG, 7)
    with pytest.raises(ValueError):
        BodyMaker(TAG, STAMP.size - 1)


# -- AMQP -------------------------------------------------------------------------------------
def amqp_frames(*values, channel: int = 1) -> bytes:
    return b"".join(frame.marshal(value, channel) for value in values)


def deliveries(seqs_and_tags, size: int = 100) -> bytes:
    out = []
    for delivery_tag, (tag, seq) in enumerate(seqs_and_tags, 1):
        out.append(amqp_frames(
            commands.Basic.Deliver("loadgen", delivery_tag, False, "loadgen.direct", "k"),
            header.ContentHeader(0, size, commands.Basic.Properties()),
            ContentBody(BodyMaker(tag, size).make(seq))))
    return b"".join(out)


def unmarshal_all(data: bytearray) -> list:
    values, pos = [], 0
    while pos < len(data):
        try:
            used, channel, value = frame.unmarshal(bytes(data[pos:]))
        except UnmarshalingException:  # an incomplete frame: more is on its way
            break
        values.append(value)
        pos += used
    return values


def test_amqp_consumer_counts_deliveries_split_anywhere_and_acks_in_batches():
    async def scenario():
        client, peer = await connect(lambda: amqp.Consumer(settings("amqp"), TAG, 0))
        done = counted(client, 252)
        stream = [(TAG, seq) for seq in range(250)] + [(TAG, 17), (OTHER_RUN, 3)]
        await peer.send(deliveries(stream), piece=7)
        await until(done)
        tally = client.tally
        assert (tally.received, tally.dups, tally.foreign) == (250, 1, 1)
        assert len(tally.latencies_ns) == 250 and min(tally.latencies_ns) > 0
        acks = await peer.read_until(
            lambda data: [v for v in unmarshal_all(data) if v.delivery_tag >= 200] and
            unmarshal_all(data), "the acks")
        assert all(isinstance(v, commands.Basic.Ack) and v.multiple for v in acks)
        tags = [v.delivery_tag for v in acks]
        assert tags == sorted(tags) and all(b - a >= amqp.ACK_EVERY for a, b in zip(tags, tags[1:]))
        client.close_transport()
    asyncio.run(scenario())


def test_amqp_channel_close_mid_run_fails_the_connection_with_the_reason():
    async def scenario():
        client, peer = await connect(lambda: amqp.Consumer(settings("amqp"), TAG, 0))
        client.running = True
        await peer.send(amqp_frames(commands.Channel.Close(406, "PRECONDITION_FAILED - nope",
                                                           60, 40)))
        with pytest.raises(ProtocolError, match="AMQP 406 PRECONDITION_FAILED - nope"):
            await client.next_control(timeout=30)
    asyncio.run(scenario())


def test_amqp_publisher_handshake_publishes_and_counts_confirms():
    async def scenario():
        s = settings("amqp", persistent=True, window=1000, user="u", password="p", vhost="v")
        client, peer = await connect(lambda: amqp.Publisher(s, TAG))
        setup = asyncio.create_task(client.setup())
        await peer.read_until(lambda data: len(data) >= 8, "the protocol header")
        assert bytes(peer.received[:8]) == b"AMQP\x00\x00\x09\x01"
        del peer.received[:8]
        replies = [(commands.Connection.StartOk, commands.Connection.Tune(0, 131072, 0), 0),
                   (commands.Connection.TuneOk, None, 0),
                   (commands.Connection.Open, commands.Connection.OpenOk(), 0),
                   (commands.Channel.Open, commands.Channel.OpenOk(), 1),
                   (commands.Confirm.Select, commands.Confirm.SelectOk(), 1)]
        await peer.send(amqp_frames(commands.Connection.Start(), channel=0))
        seen = []
        for kind, reply, channel in replies:
            value = await peer.read_until(
                lambda data: unmarshal_all(data)[len(seen):len(seen) + 1], kind.__name__)
            seen += value
            assert isinstance(value[0], kind), value
            if reply is not None:
                await peer.send(amqp_frames(reply, channel=channel))
        assert seen[0].response == "\0u\0p" and seen[2].virtual_host == "v"
        assert seen[0].client_properties["capabilities"]["authentication_failure_close"]
        await setup
        peer.received.clear()
        client.publish(range(3))
        values = await peer.read_until(
            lambda data: len(unmarshal_all(data)) >= 9 and unmarshal_all(data), "3 messages")
        for seq in range(3):
            publish, content_header, body = values[3 * seq:3 * seq + 3]
            assert (publish.exchange, publish.routing_key) == ("loadgen.direct",
                                                               f"loadgen.{TAG:x}")
            assert content_header.body_size == 100
            assert content_header.properties.delivery_mode == 2
            assert STAMP.unpack_from(body.value)[:2] == (TAG, seq)
        client.progress.clear()
        await peer.send(amqp_frames(commands.Basic.Ack(2, multiple=True)))
        await until(client.progress)
        assert (client.confirmed, client.nacked) == (2, 0)
        client.progress.clear()
        await peer.send(amqp_frames(commands.Basic.Nack(3)))
        await until(client.progress)
        assert (client.confirmed, client.nacked) == (3, 1)
        client.close_transport()
    asyncio.run(scenario())


# -- STOMP ------------------------------------------------------------------------------------
def stomp_message(tag: int, seq: int, ack: str, size: int = 60) -> bytes:
    body = bytearray(BodyMaker(tag, size).make(seq))
    body[30] = 0  # a NUL inside the body: only content-length can say where it ends
    return (f"MESSAGE\nsubscription:0\nmessage-id:{ack}\ndestination:{stomp.DESTINATION}\n"
            f"ack:{ack}\ncontent-length:{size}\n\n").encode() + bytes(body) + b"\0"


def test_stomp_consumer_counts_messages_with_nul_bodies_and_acks_each():
    async def scenario():
        client, peer = await connect(lambda: stomp.Consumer(settings("stomp"), TAG, 0))
        done = counted(client, 42)
        frames = [stomp_message(TAG, seq, f"a-{seq}") + b"\n" for seq in range(40)]
        frames += [stomp_message(TAG, 5, "again"), stomp_message(OTHER_RUN, 1, "old")]
        await peer.send(b"".join(frames), piece=5)
        await until(done)
        tally = client.tally
        assert (tally.received, tally.dups, tally.foreign) == (40, 1, 1)
        acks = await peer.read_until(
            lambda data: data.count(b"\0") >= 42 and bytes(data).split(b"\0")[:42], "42 ACKs")
        assert acks[:40] == [f"ACK\nid:a-{seq}\n\n".encode() for seq in range(40)]
        assert acks[40:] == [b"ACK\nid:again\n\n", b"ACK\nid:old\n\n"]
        client.close_transport()
    asyncio.run(scenario())


def test_stomp_publisher_sends_content_length_and_a_receipt_per_batch():
    async def scenario():
        s = settings("stomp", persistent=True, window=1000, size=50)
        client, peer = await connect(lambda: stomp.Publisher(s, TAG))
        client.publish(range(4, 7))
        frames = await peer.read_until(
            lambda data: data.count(b"SEND\n") == 3 and data.endswith(b"\0") and bytes(data),
            "3 SENDs")
        sends = frames.split(b"SEND\n")[1:]
        assert len(sends) == 3
        for index, send in enumerate(sends):
            head, body = send.split(b"\n\n", 1)
            assert len(body) == 50 + 1 and body.endswith(b"\0")
            fields = dict(line.split(b":", 1) for line in head.split(b"\n"))
            assert fields[b"destination"] == stomp.DESTINATION.encode()
            assert fields[b"content-length"] == b"50" and fields[b"persistent"] == b"true"
            assert (b"receipt" in fields) == (index == 2)
            assert STAMP.unpack_from(body)[:2] == (TAG, 4 + index)
        assert b"receipt:7\n" in sends[2]
        client.progress.clear()
        await peer.send(b"RECEIPT\nreceipt-id:7\n\n\0")
        await until(client.progress)
        assert client.confirmed == 7
        client.close_transport()
    asyncio.run(scenario())


def test_stomp_error_mid_run_fails_the_connection_with_the_message():
    async def scenario():
        client, peer = await connect(lambda: stomp.Consumer(settings("stomp"), TAG, 0))
        client.running = True
        await peer.send(b"ERROR\nmessage:queue gone\ncontent-length:5\n\nsorry\0")
        with pytest.raises(ProtocolError, match="STOMP ERROR queue gone"):
            await client.next_control(timeout=30)
    asyncio.run(scenario())


# -- MQTT -------------------------------------------------------------------------------------
def mqtt_publish(tag: int, seq: int, qos: int, packet_id: int, size: int) -> bytes:
    variable = mqtt.mqtt_string(mqtt.TOPIC) + (packet_id.to_bytes(2, "big") if qos else b"")
    return mqtt.packet(0x30 | qos << 1, variable + BodyMaker(tag, size).make(seq))


def test_mqtt_remaining_length_encoding():
    assert [mqtt.remaining_length(n) for n in (0, 127, 128, 16383, 16384)] == [
        b"\x00", b"\x7f", b"\x80\x01", b"\xff\x7f", b"\x80\x80\x01"]


def test_mqtt_consumer_counts_publishes_and_pubacks_qos1_ones():
    async def scenario():
        client, peer = await connect(lambda: mqtt.Consumer(settings("mqtt", qos=1), TAG, 0))
        done = counted(client, 32)
        packets = [mqtt_publish(TAG, seq, 1, 1000 + seq, 200) for seq in range(30)]  # 2-byte length
        packets += [mqtt_publish(TAG, 3, 0, 0, 200), mqtt_publish(OTHER_RUN, 9, 1, 7, 30)]
        await peer.send(b"".join(packets), piece=11)
        await until(done)
        tally = client.tally
        assert (tally.received, tally.dups, tally.foreign) == (30, 1, 1)
        expected = b"".join(b"\x40\x02" + pid.to_bytes(2, "big")
                            for pid in [*range(1000, 1030), 7])
        await peer.read_until(lambda data: len(data) >= len(expected), "31 PUBACKs")
        assert bytes(peer.received) == expected  # none for the QoS 0 one
        client.close_transport()
    asyncio.run(scenario())


def test_mqtt_publisher_packets_and_pubacks():
    async def scenario():
        client, peer = await connect(lambda: mqtt.Publisher(settings("mqtt", qos=1), TAG))
        client.publish(range(65534, 65537))
        size = 2 + len(mqtt.TOPIC) + 2 + 100  # topic, packet identifier, body
        packet_size = 1 + len(mqtt.remaining_length(size)) + size
        data = await peer.read_until(lambda data: len(data) >= 3 * packet_size and data, "3")
        assert len(data) == 3 * packet_size
        for index, seq in enumerate(range(65534, 65537)):
            packet = bytes(data[index * packet_size:(index + 1) * packet_size])
            head = b"\x32" + mqtt.remaining_length(size) + mqtt.mqtt_string(mqtt.TOPIC)
            assert packet.startswith(head)
            packet_id = int.from_bytes(packet[len(head):len(head) + 2], "big")
            assert packet_id == seq % 65535 + 1 and packet_id != 0  # 65535 wraps to 1, never 0
            assert STAMP.unpack_from(packet, len(head) + 2)[:2] == (TAG, seq)
        await peer.send(b"\x40\x02\xff\xff\x40\x02\x00\x01", piece=3)
        async with asyncio.timeout(30):
            while client.confirmed < 2:
                client.progress.clear()
                await client.progress.wait()
        assert client.confirmed == 2
        client.close_transport()
    asyncio.run(scenario())
