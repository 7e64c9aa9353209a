"""Bad input over raw sockets: the right CONNACK/DISCONNECT or a close, and nobody else hurt."""

from __future__ import annotations

import pytest

from tests.mqtt.helpers import Client, RawClient, cid
from warren.mqtt.codec import (ConnAck, Connect, Disconnect, Publish, Subscribe, Subscription,
                               Unsubscribe, Will, encode)

CONNECT_311 = Connect(client_id="raw", username="guest", password=b"guest")


def _connected(port, level=4):
    raw = RawClient(port, level=level)
    raw.send(Connect(protocol_level=level, client_id=cid(), username="guest",
                     password=b"guest"))
    assert raw.recv().reason_code == 0
    return raw


def test_first_packet_not_connect_closes(broker):
    raw = RawClient(broker.mqtt_port)
    raw.send(Publish("a", b"x"))
    assert raw.recv() is None


def test_unsupported_protocol_level(broker):
    raw = RawClient(broker.mqtt_port)
    # "MQTT" level 6
    raw.send_raw(bytes([0x10, 12]) + b"\x00\x04MQTT\x06\x02\x00\x3c\x00\x00")
    ack = raw.recv()
    assert isinstance(ack, ConnAck) and ack.reason_code == 1
    assert raw.recv() is None


def test_connect_reserved_flag_closes_311(broker):
    raw = RawClient(broker.mqtt_port)
    raw.send_raw(bytes([0x10, 13]) + b"\x00\x04MQTT\x04\x03\x00\x3c\x00\x01a")
    assert raw.recv() is None           # 3.1.1 has no code for it: close [MQTT-3.2.2-6]


# 5.0 CONNECTs that are malformed or break the protocol: the server may answer with a CONNACK
# or only close [MQTT-3.1.4-1]; warren closes, as Mosquitto does.
_BAD_V5_CONNECTS = {
    "reserved flag": bytes([0x10, 14]) + b"\x00\x04MQTT\x05\x03\x00\x3c\x00\x00\x01a",
    # will QoS 1 and will retain without the will flag [MQTT-3.1.2-11]
    "will QoS without will": bytes([0x10, 14]) + b"\x00\x04MQTT\x05\x2a\x00\x3c\x00\x00\x01a",
    "empty will topic": encode(Connect(protocol_level=5, client_id="w",
                                       will=Will("", b"gone")), 5),
    "U+0000 in will topic": encode(Connect(protocol_level=5, client_id="w",
                                           will=Will("a\x00b", b"gone")), 5),
    "will delay, empty will topic": encode(Connect(
        protocol_level=5, client_id="w",
        will=Will("", b"gone", properties={"will_delay_interval": 3})), 5),
}


@pytest.mark.parametrize("data", _BAD_V5_CONNECTS.values(), ids=_BAD_V5_CONNECTS.keys())
def test_bad_v5_connect_closes_without_connack(broker, data):
    raw = RawClient(broker.mqtt_port, level=5)
    raw.send_raw(data)
    assert raw.recv() is None


def test_refused_v5_connect_still_gets_its_connack(broker):
    """A well-formed CONNECT the server will not take keeps its CONNACK reason code."""
    raw = RawClient(broker.mqtt_port, level=5)
    raw.send(Connect(protocol_level=5, client_id="auth",
                     properties={"authentication_method": "SCRAM-SHA-1"}))
    ack = raw.recv()
    assert isinstance(ack, ConnAck) and ack.reason_code == 0x8C
    assert raw.recv() is None


@pytest.mark.parametrize("level", [4, 5])
def test_second_connect(broker, level):
    raw = _connected(broker.mqtt_port, level)
    raw.send(Connect(protocol_level=level, client_id="again"))
    reply = raw.recv()
    if level == 5:
        assert isinstance(reply, Disconnect) and reply.reason_code == 0x82
        reply = raw.recv()
    assert reply is None


@pytest.mark.parametrize("packet", [Subscribe(1, (Subscription("a", 1),)), Unsubscribe(1, ("a",)),
                                    Publish("a", b"x", 1, packet_id=1)],
                         ids=["SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH"])
def test_packet_id_0(broker, packet):
    """Packet identifier 0 [MQTT-2.2.1-3]: Malformed Packet in SUBSCRIBE and UNSUBSCRIBE,
    Protocol Error in PUBLISH (the spec names no code; these are Mosquitto's)."""
    raw = _connected(broker.mqtt_port, 5)
    data = bytearray(encode(packet, 5))
    at = 2 if not isinstance(packet, Publish) else 2 + 2 + len(packet.topic)
    assert data[at:at + 2] == b"\x00\x01"
    data[at:at + 2] = b"\x00\x00"
    raw.send_raw(bytes(data))
    d = raw.recv()
    assert isinstance(d, Disconnect)
    assert d.reason_code == (0x82 if isinstance(packet, Publish) else 0x81)
    assert raw.recv() is None


def test_reserved_fixed_header_flags(broker):
    raw = _connected(broker.mqtt_port, 5)
    raw.send_raw(b"\xc1\x00")            # PINGREQ with flags 1
    d = raw.recv()
    assert isinstance(d, Disconnect) and d.reason_code == 0x81


def test_wildcard_in_publish_topic(broker):
    raw = _connected(broker.mqtt_port, 5)
    raw.send_raw(b"\x30\x05\x00\x01+\x00x")
    d = raw.recv()
    assert isinstance(d, Disconnect) and d.reason_code == 0x90


def test_invalid_utf8_topic(broker):
    raw = _connected(broker.mqtt_port)
    raw.send_raw(b"\x30\x05\x00\x02\xc3\x28x")
    assert raw.recv() is None


def test_packet_too_large(tmp_path):
    from tests.broker_process import BrokerProcess
    with BrokerProcess(tmp_path, env={"WARREN_MQTT_MAX_PACKET_SIZE": "1000"}) as b:
        raw = _connected(b.mqtt_port, 5)
        raw.send(Publish("big", b"x" * 2000))
        d = raw.recv()
        assert isinstance(d, Disconnect) and d.reason_code == 0x95


def test_huge_packet_before_connect_is_refused_without_buffering(broker, unique):
    """Before CONNECT only 64 KiB is accepted (RabbitMQ's unauthenticated limit): a socket
    announcing a 256 MiB PUBLISH is closed at once, without the broker reading it in."""
    raw = RawClient(broker.mqtt_port)
    # PUBLISH, remaining length 268,435,455 (the largest MQTT allows), then a little of it
    raw.send_raw(bytes([0x30, 0xFF, 0xFF, 0xFF, 0x7F]) + b"\x00\x01t" + b"x" * 1000)
    assert raw.recv() is None
    # a CONNECT over the limit too
    raw = RawClient(broker.mqtt_port)
    raw.send(Connect(client_id="c" * 30000, username="u" * 30000, password=b"x" * 30000))
    assert raw.recv() is None
    # after CONNECT the configured limit (256 MiB) applies: a 100 KiB message goes through
    sub = Client(broker.mqtt_port)
    sub.subscribe(unique, qos=1)
    pub = _connected(broker.mqtt_port)
    pub.send(Publish(unique, b"y" * 100_000))
    assert sub.get().payload == b"y" * 100_000
    sub.disconnect()


def test_bad_subscription_filter_ends_the_connection(broker, unique):
    """A malformed filter is no SUBACK 0x80: the connection closes (3.1.1), as Mosquitto's;
    tests/mqtt/test_subscribe_invalid_filter has every case at both levels."""
    raw = _connected(broker.mqtt_port)
    raw.send(Subscribe(1, (Subscription("a/#/b", 0), Subscription(f"{unique}/ok", 1))))
    assert raw.recv() is None


def test_garbage_does_not_hurt_others_or_lose_messages(broker, unique):
    client_id = cid()
    keeper = Client(broker.mqtt_port, client_id=client_id, clean=False)
    keeper.subscribe(f"{unique}/safe", 1)
    keeper.disconnect()
    bystander = Client(broker.mqtt_port)
    bystander.subscribe(f"{unique}/live", 1)
    pub = Client(broker.mqtt_port)
    pub.publish(f"{unique}/safe", b"stored", 1)
    for junk in (b"\x00\x00", b"\xff\xff\xff\xff\xff", b"\x30\xff\xff\xff\xff\x7f",
                 b"\x10\x02\x00\x04"):
        raw = RawClient(broker.mqtt_port)
        raw.send_raw(junk)
        assert raw.closed()
    pub.publish(f"{unique}/live", b"still-works", 1)
    assert bystander.get().payload == b"still-works"
    back = Client(broker.mqtt_port, client_id=client_id, clean=False)
    assert back.get().payload == b"stored"


def test_qos0_publish_before_malformed_packet_is_routed(broker, unique):
    sub = Client(broker.mqtt_port)
    sub.subscribe(f"{unique}/before", 0)
    raw = _connected(broker.mqtt_port)
    good = Publish(f"{unique}/before", b"made-it")
    from warren.mqtt.codec import encode
    raw.send_raw(encode(good, 4) + b"\xc1\x00")
    assert raw.recv() is None
    assert sub.get().payload == b"made-it"
