"""The sans-I/O client machine: scripted server bytes in any chunking, fuzzing, framing.

A synthetic server conversation (built with pamqp) is fed whole, byte by byte and in odd
chunk sizes; the events must be the same each time (Twisted's ``dataReceived`` advice). Random
bytes must give at most one ``ProtocolError`` and never an exception (h11's fuzz invariant).
One test talks to a real warren over a plain blocking socket: sans-I/O needs no reactor.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from warren.network import client as amqp
from warren.network.client import (
    ClientConnection,
    State,
    decode_properties,
    encode_properties,
    negotiate,
)


def server_frames(*frames: tuple) -> bytes:
    return b"".join(frame.marshal(f, ch) for f, ch in frames)


def start_frame(**kw):
    return (commands.Connection.Start(server_properties={"product": "test"},
                                      mechanisms="PLAIN AMQPLAIN", locales="en_US", **kw), 0)


HANDSHAKE = server_frames(
    start_frame(),
    (commands.Connection.Tune(channel_max=0, frame_max=4096, heartbeat=30), 0),
    (commands.Connection.OpenOk(), 0))


def delivery_frames(tag: int, body: bytes, props: commands.Basic.Properties) -> bytes:
    frames = [(commands.Basic.Deliver(consumer_tag="ctag", delivery_tag=tag, exchange="x",
                                      routing_key="rk"), 1),
              (ContentHeader(body_size=len(body), properties=props), 1)]
    frames += [(ContentBody(body[i:i + 4088]), 1) for i in range(0, len(body), 4088)]
    return server_frames(*frames)


# A server answers only what was asked: each part is fed after the client sent its request.
CONVERSATION = [HANDSHAKE, server_frames((commands.Channel.OpenOk(), 1)),
                server_frames((commands.Confirm.SelectOk(), 1)), server_frames(
    (commands.Connection.Blocked(reason="low on memory"), 0),
    (commands.Basic.Ack(delivery_tag=2, multiple=True), 1),
    (commands.Basic.Nack(delivery_tag=3), 1),
    (commands.Connection.Unblocked(), 0),
) + b"\x08\x00\x00\x00\x00\x00\x00\xce" + delivery_frames(
    1, bytes(range(256)) * 40, commands.Basic.Properties(
        content_type="text/plain", headers={"k": "v"}, delivery_mode=2)) + delivery_frames(
    2, b"", commands.Basic.Properties()) + server_frames(
    (commands.Channel.Close(reply_code=404, reply_text="NOT_FOUND - no queue 'q'",
                            class_id=50, method_id=10), 1),
    (commands.Connection.Close(reply_code=320, reply_text="CONNECTION_FORCED - shutdown",
                                class_id=0, method_id=0), 0))]


def run(size: int) -> tuple[list, bytes]:
    """Feed the conversation in chunks of ``size``, reacting to events as a link would;
    return the events and the bytes the client sent."""
    c = ClientConnection(username="u", password="p", vhost="v")
    sent = [c.initiate()]
    events = []
    for chunk in (piece for part in CONVERSATION for piece in chunked(part, size)):
        new = c.receive_data(chunk)
        sent.append(c.data_to_send())       # the machine's own replies go first
        for event in new:
            events.append(event)
            if c.state is not State.OPEN:
                continue
            if isinstance(event, amqp.ConnectionOpened):
                sent.append(c.open_channel(1))
            elif isinstance(event, amqp.ChannelOpened):
                sent.append(c.confirm_select(1))
            elif isinstance(event, amqp.MethodOk) and event.method == "Confirm.SelectOk":
                for i in range(3):
                    sent.append(c.basic_publish(1, "", "q", {"delivery_mode": 2},
                                                b"m%d" % i)[1])
    return events, b"".join(sent)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_scripted_conversation_events():
    events, sent = run(10**6)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["ConnectionOpened", "ChannelOpened", "MethodOk", "ConnectionBlocked",
                     "PublishConfirmed", "PublishConfirmed", "ConnectionUnblocked", "Delivery",
                     "Delivery", "ChannelClosed", "ConnectionClosed"]
    opened = events[0]
    # the client asked for 2047 channels, 0 (no limit) bytes, 10 s; the server said 0, 4096,
    # 30: a client takes the non-zero or else the lower value
    assert (opened.channel_max, opened.frame_max, opened.heartbeat) == (2047, 4096, 10)
    assert events[4] == amqp.PublishConfirmed(1, 2, True, True)
    assert events[5] == amqp.PublishConfirmed(1, 3, False, False)
    d = events[7]
    assert d.body == bytes(range(256)) * 40 and d.delivery_tag == 1
    assert d.properties == {"content_type": "text/plain", "headers": {"k": "v"},
                            "delivery_mode": 2}
    assert events[8].body == b"" and events[8].properties == {}
    assert events[9] == amqp.ChannelClosed(1, 404, "NOT_FOUND - no queue 'q'", 50, 10)
    assert events[10].reply_code == 320 and events[10].by_server
    # the machine answered on its own: Start-Ok with PLAIN, Tune-Ok, Open, both Close-Oks
    assert b"PLAIN" in sent and b"\x00u\x00p" in sent
    parsed = parse_client_frames(sent[8:])
    names = [f.name for _ch, f in parsed if hasattr(f, "name")]
    assert names[:5] == ["Connection.StartOk", "Connection.TuneOk", "Connection.Open",
                         "Channel.Open", "Confirm.Select"]
    assert names[-2:] == ["Channel.CloseOk", "Connection.CloseOk"]
    tune_ok = next(f for _ch, f in parsed if f.name == "Connection.TuneOk")
    assert (tune_ok.channel_max, tune_ok.frame_max, tune_ok.heartbeat) == (2047, 4096, 10)


def parse_client_frames(data: bytes) -> list:
    out = []
    while data:
        consumed, channel, f = frame.unmarshal(data)
        out.append((channel, f))
        data = data[consumed:]
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100, 4097])
def test_any_chunking_gives_the_same_events(size):
    assert run(size) == run(10**6)


def test_publish_splits_body_by_frame_max():
    c = ClientConnection()
    c.receive_data(HANDSHAKE)
    c.open_channel(1)
    c.receive_data(server_frames((commands.Channel.OpenOk(), 1)))
    body = bytes(range(256)) * 50                 # 12800 bytes, frame_max 4096
    seq, data = c.basic_publish(1, "ex", "rk", {"headers": {"b": b"\x00"}}, body)
    assert seq == 0                                # not in confirm mode
    frames = parse_client_frames(data)
    assert frames[0][1].name == "Basic.Publish"
    assert frames[1][1].body_size == len(body)
    pieces = [f.value for _ch, f in frames[2:]]
    assert [len(p) for p in pieces] == [4088, 4088, 4088, 536]
    assert b"".join(pieces) == body


def test_tune_below_minimum_frame_size_is_an_error():
    c = ClientConnection()
    events = c.receive_data(server_frames(
        start_frame(), (commands.Connection.Tune(channel_max=0, frame_max=512, heartbeat=0), 0)))
    assert [type(e) for e in events] == [amqp.ProtocolError]
    assert "below 4096" in events[0].text and c.state is State.ERROR
    assert c.receive_data(b"more") == []


@pytest.mark.parametrize("client,server,expected", [
    (0, 0, 0), (0, 10, 10), (10, 0, 10), (10, 20, 10), (20, 10, 10)])
def test_negotiate(client, server, expected):
    assert negotiate(client, server) == expected


def test_login_refused_surfaces_the_servers_text():
    c = ClientConnection()
    events = c.receive_data(server_frames(start_frame(), (commands.Connection.Close(
        reply_code=403, reply_text="ACCESS_REFUSED - Login was refused", class_id=0,
        method_id=0), 0)))
    assert events == [amqp.ConnectionClosed(403, "ACCESS_REFUSED - Login was refused")]


@pytest.mark.parametrize("data,text", [
    (b"AMQP\x00\x00\x08\x00", "does not speak AMQP 0-9-1"),
    (b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x0b\xce", "unexpected Connection.StartOk"),
    (b"\x01\x00\x00\x00\x00\x00\x04\xff\xff\xff\xff\xce", "unknown method"),
    (b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x0a\x00", "frame end byte"),
    (b"\x01\x00\x00\x7f\xff\xff\xff", "exceeds frame_max"),
    (b"\x09\x00\x00\x00\x00\x00\x00\xce", "unknown frame type"),
    (b"\x08\x00\x01\x00\x00\x00\x00\xce", "heartbeat frame on channel 1"),
    (b"\x03\x00\x01\x00\x00\x00\x01x\xce", "unexpected content body"),
    (frame.marshal(commands.Connection.Start(version_major=0, version_minor=8,
                                             mechanisms="PLAIN"), 0), "AMQP 0-8"),
    (frame.marshal(commands.Connection.Start(mechanisms="EXTERNAL"), 0), "no PLAIN"),
])
def test_bad_server_input_is_one_protocol_error(data, text):
    c = ClientConnection()
    events = c.receive_data(data)
    assert len(events) == 1 and isinstance(events[0], amqp.ProtocolError), events
    assert text in events[0].text


def test_content_out_of_order_is_a_protocol_error():
    c = ClientConnection()
    c.receive_data(HANDSHAKE)
    c.open_channel(1)
    deliver = server_frames((commands.Basic.Deliver(consumer_tag="t", delivery_tag=1, exchange="",
                                                           routing_key="q"), 1))
    events = c.receive_data(server_frames((commands.Channel.OpenOk(), 1)) + deliver + deliver)
    assert isinstance(events[-1], amqp.ProtocolError)
    assert "while content was expected" in events[-1].text


@settings(max_examples=300, deadline=None)
@given(prefix=st.sampled_from([b"", HANDSHAKE[:40], HANDSHAKE]), junk=st.binary(max_size=300),
       step=st.integers(1, 50))
def test_random_bytes_never_raise(prefix, junk, step):
    c = ClientConnection()
    data = prefix + junk
    events = []
    for chunk in chunked(data, step):
        events += c.receive_data(chunk)
        c.data_to_send()
    errors = [e for e in events if isinstance(e, amqp.ProtocolError)]
    assert len(errors) <= 1
    if errors:
        assert events[-1] is errors[0] and c.state is State.ERROR


def test_against_warren_over_a_blocking_socket(broker, unique):
    sock = socket.create_connection(("127.0.0.1", broker.amqp_port), timeout=10)
    c = ClientConnection(frame_max=4096, heartbeat=0)

    def until(kind):
        while True:
            data = sock.recv(65536)
            assert data, "server closed the connection"
            events = c.receive_data(data)
            sock.sendall(c.data_to_send())
            for e in events:
                assert not isinstance(e, amqp.ProtocolError), e
                if isinstance(e, kind):
                    return e

    with sock:
        sock.sendall(c.initiate())
        opened = until(amqp.ConnectionOpened)
        # heartbeat 0 asks for nothing: RabbitMQ's clients then take the server's value
        assert opened.frame_max == 4096 and opened.heartbeat == 60
        sock.sendall(c.open_channel(1))
        until(amqp.ChannelOpened)
        sock.sendall(c.confirm_select(1))
        until(amqp.MethodOk)
        sock.sendall(c.queue_declare(1, unique))
        assert until(amqp.QueueDeclared).queue == unique
        body = bytes(range(256)) * 64
        seq, data = c.basic_publish(1, "", unique, {"message_id": "m1", "timestamp": 17}, body)
        sock.sendall(data)
        assert until(amqp.PublishConfirmed) == amqp.PublishConfirmed(1, seq, False, True)
        sock.sendall(c.basic_qos(1, 5) + c.basic_consume(1, unique))
        delivery = until(amqp.Delivery)
        assert delivery.body == body
        assert delivery.properties == {"message_id": "m1", "timestamp": 17}
        sock.sendall(c.basic_ack(1, delivery.delivery_tag))
        sock.sendall(c.queue_declare(1, unique + ".missing", passive=True))
        closed = until(amqp.ChannelClosed)
        assert closed.reply_code == 404 and "NOT_FOUND" in closed.reply_text
        sock.sendall(c.data_to_send())
        sock.sendall(c.close())
        assert until(amqp.ConnectionClosed).by_server is False


def test_properties_dict_survives_a_pass_through():
    """What a shovel does: decode a delivery's properties, add a header, encode them again."""
    props = {"content_type": "application/json", "content_encoding": "gzip",
             "headers": {"nested": {"a": [1, "two", b"\x00\x01"]}, "when":
                         datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "price": Decimal("1.25"),
                         "flag": True},
             "delivery_mode": 3, "priority": 9, "correlation_id": "c", "reply_to": "r",
             "expiration": "1000", "message_id": "m", "timestamp": 1700000000, "type": "t",
             "user_id": "guest", "app_id": "app", "cluster_id": "legacy"}
    decoded = decode_properties(encode_properties(props))
    decoded["headers"]["x-shovelled"] = [{"shovel-name": "s1", "src-uri": "amqp://a"}]
    again = decode_properties(encode_properties(decoded))
    assert again["headers"].pop("x-shovelled") == [{"shovel-name": "s1", "src-uri": "amqp://a"}]
    assert again["headers"]["nested"]["a"][2] == b"\x00\x01"
    assert again["headers"]["when"].replace(tzinfo=UTC) == props["headers"]["when"]
    assert {k: v for k, v in again.items() if k != "headers"} == \
        {k: v for k, v in props.items() if k != "headers"}
    with pytest.raises(ValueError, match="unknown message properties"):
        encode_properties({"contenttype": "x"})


def test_confirm_numbering_starts_at_select_not_select_ok():
    c = ClientConnection()
    c.receive_data(HANDSHAKE)
    c.open_channel(1)
    c.receive_data(server_frames((commands.Channel.OpenOk(), 1)))
    c.confirm_select(1)
    seqs = [c.basic_publish(1, "", "q", None, b"x")[0] for _ in range(2)]   # before Select-Ok
    assert seqs == [1, 2]
    events = c.receive_data(server_frames((commands.Confirm.SelectOk(), 1),
                                          (commands.Basic.Ack(delivery_tag=2, multiple=True), 1)))
    assert events == [amqp.MethodOk(1, "Confirm.SelectOk"), amqp.PublishConfirmed(1, 2, True, True)]


def test_a_second_channel_closed_by_us_frees_its_number():
    """A link's spare channel: opened beside channel 1, closed by the client once its call
    is answered; replies to it after our Close are dropped, Close-Ok frees the number."""
    c = ClientConnection()
    c.receive_data(HANDSHAKE)
    c.open_channel(1)
    c.open_channel(2)
    assert c.receive_data(server_frames((commands.Channel.OpenOk(), 1),
                                        (commands.Channel.OpenOk(), 2))) == \
        [amqp.ChannelOpened(1), amqp.ChannelOpened(2)]
    [(channel, close)] = parse_client_frames(c.close_channel(2))
    assert (channel, close.name, close.reply_code) == (2, "Channel.Close", 200)
    assert (close.class_id, close.method_id) == (0, 0)
    with pytest.raises(ValueError):
        c.open_channel(2)                   # not free before the server's Close-Ok
    events = c.receive_data(server_frames((commands.Queue.DeclareOk(queue="q", message_count=0,
                                                                   consumer_count=0), 2),
                                          (commands.Channel.CloseOk(), 2)))
    assert events == [amqp.ChannelClosed(2, 200, "closed by client", by_server=False)]
    assert 2 not in c.channels and 1 in c.channels
    c.open_channel(2)                       # free again


def test_a_second_channel_closed_by_the_server_leaves_channel_1_open():
    c = ClientConnection()
    c.receive_data(HANDSHAKE)
    c.open_channel(1)
    c.open_channel(2)
    c.receive_data(server_frames((commands.Channel.OpenOk(), 1), (commands.Channel.OpenOk(), 2)))
    events = c.receive_data(server_frames((commands.Channel.Close(
        reply_code=404, reply_text="NOT_FOUND - no queue 'q'", class_id=50, method_id=10), 2)))
    assert events == [amqp.ChannelClosed(2, 404, "NOT_FOUND - no queue 'q'", 50, 10)]
    channel, close_ok = parse_client_frames(c.data_to_send())[-1]
    assert (channel, close_ok.name) == (2, "Channel.CloseOk")
    assert c.state is State.OPEN and list(c.channels) == [1]
    c.basic_publish(1, "", "q", None, b"still open")
