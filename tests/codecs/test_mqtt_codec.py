"""Tests of the sans-I/O MQTT codec (warren.mqtt.codec).

Unit tests pin each wire rule to the reason code it must raise; Hypothesis
properties check round trips at levels 4 and 5, that feeding byte by byte
equals feeding everything at once, and that garbage only ever raises MqttError.
"""

from __future__ import annotations

import socket
import struct

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from warren.mqtt.codec import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MqttError,
    MqttParser,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    encode,
    validate_topic_filter,
    validate_topic_name,
)
from warren.mqtt.properties import PROPERTY_TABLE, PropertyType

HYPOTHESIS = settings(max_examples=200, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])

# Captured from paho-mqtt 2.2 (client_id "paho-test", user guest/guest, will
# "last/will"="bye" QoS 1 retained, keepalive 60; 5.0 adds session expiry 30)
# by accepting its connection on a local socket; see test_live_paho_* too.
PAHO_CONNECT_311 = (b"\x103\x00\x04MQTT\x04\xee\x00<\x00\tpaho-test\x00\tlast/will\x00\x03bye"
                    b"\x00\x05guest\x00\x05guest")
PAHO_CONNECT_5 = (b"\x10:\x00\x04MQTT\x05\xee\x00<\x05\x11\x00\x00\x00\x1e\x00\tpaho-test\x00"
                  b"\x00\tlast/will\x00\x03bye\x00\x05guest\x00\x05guest")
PAHO_CONNECT_31 = (b"\x105\x00\x06MQIsdp\x03\xee\x00<\x00\tpaho-test\x00\tlast/will\x00\x03bye"
                   b"\x00\x05guest\x00\x05guest")

CONNECT_V5_MINIMAL = encode(Connect("MQTT", 5, "c"), 5)
CONNECT_V4_MINIMAL = encode(Connect("MQTT", 4, "c"), 4)


def parse(data: bytes, level: int | None = None, **kwargs) -> list:
    return MqttParser(protocol_level=level, **kwargs).feed(data)


def error_code(data: bytes, level: int | None = None, **kwargs) -> int:
    with pytest.raises(MqttError) as info:
        parse(data, level, **kwargs)
    return info.value.reason_code


def frame(first: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes((first, len(body))) + body


def utf8(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack(">H", len(raw)) + raw


def connect_body(name=b"MQTT", level=4, flags=0x02, rest=b"\x00\x3c" + utf8("c")) -> bytes:
    return utf8(name) + bytes((level, flags)) + rest


# --------------------------------------------------------------------------- CONNECT

def test_paho_connect_311_parses_and_reencodes_identically():
    parser = MqttParser()
    assert parser.protocol_level is None
    [connect] = parser.feed(PAHO_CONNECT_311)
    assert connect == Connect("MQTT", 4, "paho-test", True, 60, "guest", b"guest",
                              Will("last/will", b"bye", 1, True), {})
    assert parser.protocol_level == 4
    assert encode(connect, 4) == PAHO_CONNECT_311


def test_paho_connect_5_parses_and_reencodes_identically():
    parser = MqttParser()
    [connect] = parser.feed(PAHO_CONNECT_5)
    assert connect == Connect("MQTT", 5, "paho-test", True, 60, "guest", b"guest",
                              Will("last/will", b"bye", 1, True, {}),
                              {"session_expiry_interval": 30})
    assert parser.protocol_level == 5
    assert encode(connect, 5) == PAHO_CONNECT_5


def test_paho_connect_31_mqisdp():
    parser = MqttParser()
    [connect] = parser.feed(PAHO_CONNECT_31)
    assert (connect.protocol_name, connect.protocol_level) == ("MQIsdp", 3)
    assert parser.protocol_level == 3
    assert encode(connect, 3) == PAHO_CONNECT_31


def test_connack_31_has_no_session_present_flag():
    """MQTT 3.1's CONNACK flags byte is reserved: 20 02 00 rc even for a resumed session."""
    assert encode(ConnAck(True, 0), 3) == b"\x20\x02\x00\x00"
    assert encode(ConnAck(True, 0), 4) == b"\x20\x02\x01\x00"  # [MQTT-3.2.2-2]


@pytest.mark.parametrize("name,level", [
    (b"MQTT", 3), (b"MQTT", 6), (b"MQIsdp", 4), (b"MQIsdp", 5), (b"HTTP", 4), (b"", 4)])
def test_unsupported_protocol_name_or_level(name, level):
    assert error_code(frame(0x10, connect_body(name, level))) == 0x84


def test_connect_reserved_flag_bit_0():  # [MQTT-3.1.2-3]
    assert error_code(frame(0x10, connect_body(flags=0x03))) == 0x81


def test_connect_fixed_header_flags_must_be_zero():
    assert error_code(frame(0x11, connect_body())) == 0x81


@pytest.mark.parametrize("flags", [0x02 | 0x08, 0x02 | 0x10, 0x02 | 0x20])
def test_will_qos_or_retain_without_will_flag(flags):  # [MQTT-3.1.2-13], [MQTT-3.1.2-15]
    assert error_code(frame(0x10, connect_body(flags=flags))) == 0x81


def test_will_qos_3():  # [MQTT-3.1.2-14]
    rest = b"\x00\x3c" + utf8("c") + utf8("t") + utf8("p")
    assert error_code(frame(0x10, connect_body(flags=0x02 | 0x04 | 0x18, rest=rest))) == 0x81


def test_will_topic_with_wildcard():
    rest = b"\x00\x3c" + utf8("c") + utf8("t/#") + utf8("p")
    assert error_code(frame(0x10, connect_body(flags=0x06, rest=rest))) == 0x90


def test_password_without_username():
    # Allowed in 5.0 [MQTT 5.0 3.1.2.9], not in 3.1.1 [MQTT-3.1.2-22].
    rest4 = b"\x00\x3c" + utf8("c") + utf8("secret")
    assert error_code(frame(0x10, connect_body(level=4, flags=0x42, rest=rest4))) == 0x82
    rest5 = b"\x00\x3c\x00" + utf8("c") + utf8("secret")
    [connect] = parse(frame(0x10, connect_body(level=5, flags=0x42, rest=rest5)))
    assert (connect.username, connect.password) == (None, b"secret")


def test_bad_connect_still_tells_the_level_for_the_connack():
    parser = MqttParser()
    body = connect_body(level=5, rest=b"\x00\x3c\x03\x21\x00\x00" + utf8("c"))
    with pytest.raises(MqttError) as info:
        parser.feed(frame(0x10, body))
    assert (info.value.reason_code, parser.protocol_level) == (0x82, 5)
    parser = MqttParser()
    with pytest.raises(MqttError):
        parser.feed(frame(0x10, connect_body(level=7)))
    assert parser.protocol_level is None


def test_connect_trailing_bytes():
    assert error_code(frame(0x10, connect_body() + b"x")) == 0x81


def test_connect_truncated_body():
    assert error_code(frame(0x10, connect_body()[:-1])) == 0x81


def test_connect_sets_level_for_rest_of_same_feed():
    publish5 = encode(Publish("t", b"p", 1, packet_id=7, properties={"content_type": "x"}), 5)
    parser = MqttParser()
    packets = parser.feed(CONNECT_V5_MINIMAL + publish5)
    assert packets[1] == Publish("t", b"p", 1, packet_id=7, properties={"content_type": "x"})
    assert parser.protocol_level == 5


# --------------------------------------------------------------------------- fixed header

@pytest.mark.parametrize("first", [0x80, 0x81, 0x83, 0xA0, 0xA1, 0x60, 0x64])
def test_subscribe_unsubscribe_pubrel_need_flags_0010(first):  # [MQTT-2.2.2-2]
    body = b"\x00\x01" + utf8("a") + (b"\x00" if first >> 4 == 8 else b"")
    assert error_code(frame(first, body), 4) == 0x81


@pytest.mark.parametrize("first", [0x41, 0x52, 0x71, 0x91, 0xB2, 0xC1, 0xD8, 0xE1, 0x21])
def test_other_packets_need_flags_0000(first):
    assert error_code(bytes((first, 2, 0, 1)), 4) == 0x81


def test_reserved_packet_type_0():
    assert error_code(b"\x00\x00", 4) == 0x81


def test_auth_before_level_5_is_protocol_error():
    assert error_code(b"\xf0\x00", 4) == 0x82
    assert parse(b"\xf0\x00", 5) == [Auth()]


def test_remaining_length_more_than_4_bytes():  # [MQTT-1.5.5-1]
    assert error_code(b"\x30\xff\xff\xff\xff\x01", 4) == 0x81
    parser = MqttParser(protocol_level=4)
    assert parser.feed(b"\x30\xff\xff") == []
    with pytest.raises(MqttError) as info:
        parser.feed(b"\xff\xff")  # the 4th length byte still continues: no need to wait
    assert info.value.reason_code == 0x81


def test_packet_too_large_raised_from_fixed_header_alone():
    parser = MqttParser(max_packet_size=1000, protocol_level=4)
    with pytest.raises(MqttError) as info:
        parser.feed(b"\x30\xe9\x07")  # remaining length 1001, no body sent
    assert info.value.reason_code == 0x95
    ok = encode(Publish("t", b"x" * (1000 - 3)), 4)
    assert parse(ok, 4, max_packet_size=1000)[0].payload == b"x" * 997


def test_ping_with_body_is_malformed():
    assert error_code(b"\xc0\x01\x00", 4) == 0x81
    assert parse(b"\xc0\x00\xd0\x00", 4) == [PingReq(), PingResp()]


def test_parser_is_dead_after_error_and_keeps_earlier_packets():
    parser = MqttParser(protocol_level=4)
    good = encode(Publish("a", b"1"), 4)
    with pytest.raises(MqttError) as info:
        parser.feed(good + b"\x36\x00")
    assert info.value.packets == [Publish("a", b"1")]
    with pytest.raises(MqttError):
        parser.feed(good)


def test_partial_packets_are_kept_between_feeds():
    parser = MqttParser(protocol_level=4)
    data = encode(Publish("a/b", b"x" * 300, 1, packet_id=3), 4)
    assert parser.feed(data[:1]) == []
    assert parser.feed(data[1:2]) == []
    assert parser.feed(data[2:100]) == []
    assert parser.feed(data[100:] + data[:5]) == [Publish("a/b", b"x" * 300, 1, packet_id=3)]
    assert parser.feed(data[5:]) == [Publish("a/b", b"x" * 300, 1, packet_id=3)]


# --------------------------------------------------------------------------- strings

@pytest.mark.parametrize("raw", [b"\xff", b"a\x00b", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82"])
def test_bad_utf8_or_nul_is_malformed(raw):  # [MQTT-1.5.4-1], [MQTT-1.5.4-2]
    assert error_code(frame(0x30, utf8(raw) + b"payload"), 4) == 0x81
    assert error_code(frame(0x10, connect_body(rest=b"\x00\x3c" + utf8(raw)))) == 0x81


def test_string_length_past_end_of_packet():
    assert error_code(frame(0x30, b"\x00\x10abc"), 4) == 0x81


# --------------------------------------------------------------------------- PUBLISH

def test_publish_qos_3():  # [MQTT-3.3.1-4]
    assert error_code(frame(0x36, utf8("t") + b"\x00\x01"), 4) == 0x81


def test_publish_packet_id_0():  # [MQTT-2.2.1-3]
    assert error_code(frame(0x32, utf8("t") + b"\x00\x00"), 4) == 0x82


def test_publish_dup_on_qos_0():  # [MQTT-3.3.1-2]
    assert error_code(frame(0x38, utf8("t")), 4) == 0x81


@pytest.mark.parametrize("topic", ["a/+", "#", "a/#", ""])
def test_publish_bad_topic_name(topic):
    assert error_code(frame(0x30, utf8(topic) + b"x"), 4) == 0x90
    assert error_code(frame(0x30, utf8(topic) + b"\x00x"), 5) == 0x90


def test_publish_empty_topic_allowed_with_alias_in_5():
    data = frame(0x30, utf8("") + b"\x03\x23\x00\x05" + b"payload")
    assert parse(data, 5) == [Publish("", b"payload", properties={"topic_alias": 5})]


def test_publish_topic_alias_0():
    assert error_code(frame(0x30, utf8("t") + b"\x03\x23\x00\x00"), 5) == 0x94


def test_publish_fast_and_slow_paths_agree():
    for level in (4, 5):
        for packet in (Publish("a/b", b"x"), Publish("a/b", b"", retain=True),
                       Publish("a", b"y", 1, packet_id=1), Publish("é/ü", b"z" * 200),
                       Publish("a", b"", 2, True, True, 65535)):
            assert parse(encode(packet, level), level) == [packet]


def test_qos0_publish_before_connect_uses_311_rules():
    assert parse(encode(Publish("t", b"p"), 4)) == [Publish("t", b"p")]


# --------------------------------------------------------------------------- acks

def test_v5_acks_short_forms():  # [MQTT 5.0 3.4.2.1]
    assert parse(b"\x40\x02\x00\x07", 5) == [PubAck(7)]
    assert parse(b"\x50\x03\x00\x07\x10", 5) == [PubRec(7, 0x10)]
    assert parse(b"\x62\x04\x00\x07\x92\x00", 5) == [PubRel(7, 0x92)]
    assert encode(PubAck(7), 5) == b"\x40\x02\x00\x07"
    assert encode(PubRec(7, 0x10), 5) == b"\x50\x03\x00\x07\x10"


def test_v4_ack_must_be_two_bytes():
    assert error_code(b"\x40\x03\x00\x07\x00", 4) == 0x81
    assert parse(b"\x70\x02\x00\x07", 4) == [PubComp(7)]


def test_v4_encode_drops_v5_only_fields():
    assert encode(PubAck(7, 0x80, {"reason_string": "no"}), 4) == b"\x40\x02\x00\x07"
    assert encode(Disconnect(0x8E), 4) == b"\xe0\x00"
    assert encode(UnsubAck(3, (0, 0x11)), 4) == b"\xb0\x02\x00\x03"
    with pytest.raises(ValueError):
        encode(Auth(0x18), 4)


def test_v5_disconnect_forms():
    assert parse(b"\xe0\x00", 5) == [Disconnect()]
    assert parse(b"\xe0\x01\x8e", 5) == [Disconnect(0x8E)]
    assert parse(b"\xe0\x02\x04\x00", 5) == [Disconnect(4)]
    assert error_code(b"\xe0\x01\x04", 4) == 0x81


# --------------------------------------------------------------------------- SUBSCRIBE

def test_subscribe_without_subscriptions():  # [MQTT-3.8.3-3]
    assert error_code(frame(0x82, b"\x00\x01"), 4) == 0x82
    assert error_code(frame(0x82, b"\x00\x01\x00"), 5) == 0x82


def test_unsubscribe_without_filters():  # [MQTT-3.10.3-2]
    assert error_code(frame(0xA2, b"\x00\x01"), 4) == 0x82


def test_subscribe_packet_id_0():  # Mosquitto's code: the spec names none
    assert error_code(frame(0x82, b"\x00\x00" + utf8("a") + b"\x00"), 4) == 0x81


@pytest.mark.parametrize("level,options,code", [
    (4, 0x03, 0x81), (4, 0x04, 0x81), (4, 0x80, 0x81),
    (5, 0x03, 0x81), (5, 0x40, 0x81), (5, 0x80, 0x81), (5, 0x30, 0x82)])
def test_subscription_options(level, options, code):  # [MQTT-3.8.3-4], [MQTT-3.8.3-5]
    props = b"\x00" if level == 5 else b""
    assert error_code(frame(0x82, b"\x00\x01" + props + utf8("a") + bytes((options,))),
                      level) == code


def test_subscription_options_v5_bits():
    data = frame(0x82, b"\x00\x01\x00" + utf8("a/+") + bytes((0b101110,)))
    assert parse(data, 5) == [Subscribe(1, (Subscription("a/+", 2, True, True, 2),))]


def test_subscribe_filters_are_not_validated_by_the_parser():
    # A bad filter gets a per-filter SUBACK code from the session, not a disconnect.
    data = frame(0x82, b"\x00\x01" + utf8("a/#/b") + b"\x01")
    assert parse(data, 4) == [Subscribe(1, (Subscription("a/#/b", 1),))]


# --------------------------------------------------------------------------- properties

def v5_puback_with_properties(raw_props: bytes) -> bytes:
    return frame(0x40, b"\x00\x01\x00" + bytes((len(raw_props),)) + raw_props)


def test_property_not_allowed_in_packet_type():  # [MQTT 5.0 2.2.2.2]
    assert error_code(v5_puback_with_properties(b"\x23\x00\x01"), 5) == 0x81


def test_unknown_property_identifier():
    assert error_code(v5_puback_with_properties(b"\x7f\x00"), 5) == 0x81


def test_repeated_property_is_protocol_error():
    assert error_code(v5_puback_with_properties(b"\x1f" + utf8("a") + b"\x1f" + utf8("b")),
                      5) == 0x82


def test_user_property_repeats_in_order():
    raw = b"\x26" + utf8("k") + utf8("1") + b"\x26" + utf8("k") + utf8("2")
    [ack] = parse(v5_puback_with_properties(raw), 5)
    assert ack.properties == {"user_property": [("k", "1"), ("k", "2")]}


def test_subscription_identifier_repeats_in_publish_only():
    raw = b"\x0b\x01\x0b\x81\x01"
    publish = frame(0x30, utf8("t") + bytes((len(raw),)) + raw + b"p")
    assert parse(publish, 5)[0].properties == {"subscription_identifier": [1, 129]}
    subscribe = frame(0x82, b"\x00\x01" + bytes((len(raw),)) + raw + utf8("a") + b"\x00")
    assert error_code(subscribe, 5) == 0x82


@pytest.mark.parametrize("raw", [
    b"\x21\x00\x00",  # receive maximum 0 [MQTT 5.0 3.1.2.11.3]
    b"\x27\x00\x00\x00\x00",  # maximum packet size 0
    b"\x17\x02",  # request problem information 2
    b"\x19\x02",  # request response information 2
])
def test_connect_property_values_out_of_range(raw):
    body = connect_body(level=5, rest=b"\x00\x3c" + bytes((len(raw),)) + raw + utf8("c"))
    assert error_code(frame(0x10, body)) == 0x82


def test_property_length_past_packet_end():
    assert error_code(frame(0x40, b"\x00\x01\x00\x09\x1f"), 5) == 0x81


def test_property_value_truncated():
    assert error_code(v5_puback_with_properties(b"\x02\x00\x00"), 5) == 0x81


def test_encode_rejects_unknown_or_misplaced_property():
    with pytest.raises(ValueError):
        encode(PubAck(1, 0, {"no_such_thing": 1}), 5)
    with pytest.raises(ValueError):
        encode(PubAck(1, 0, {"topic_alias": 1}), 5)


# --------------------------------------------------------------------------- topics

@pytest.mark.parametrize("name", ["a", "a/b", "/", "a//b", "$SYS/x", "é"])
def test_valid_topic_names(name):
    validate_topic_name(name)


@pytest.mark.parametrize("name", ["", "+", "a/+", "#", "a/#", "a+b", "a#"])
def test_invalid_topic_names(name):
    with pytest.raises(MqttError) as info:
        validate_topic_name(name)
    assert info.value.reason_code == 0x90


def test_empty_topic_name_allowed_with_alias():
    validate_topic_name("", alias=True)


@pytest.mark.parametrize("filt", [
    "a", "#", "+", "a/#", "a/+/b", "+/+", "/#", "a//b", "+/#", "$share/g/a/#",
    "$share/g/#", "$share/g/+", "$SYS/#"])
def test_valid_topic_filters(filt):
    validate_topic_filter(filt)


@pytest.mark.parametrize("filt", [
    "", "a#", "a/#/b", "#/a", "a/b#", "a+", "a/+b", "++", "$share/", "$share//a",
    "$share/g", "$share/g/", "$share/g+/a", "$share/#/a", "$share/g/a#"])
def test_invalid_topic_filters(filt):
    """Malformed (the connection ends), not 0x8F "correctly formed but not allowed"."""
    with pytest.raises(MqttError) as info:
        validate_topic_filter(filt)
    assert info.value.reason_code == 0x81


# --------------------------------------------------------------------------- live paho

def _read_packets(conn: socket.socket, parser: MqttParser, count: int) -> list:
    packets: list = []
    while len(packets) < count:
        data = conn.recv(65536)
        assert data, "client closed the connection"
        packets.extend(parser.feed(data))
    return packets


@pytest.mark.parametrize("protocol,level", [(paho.MQTTv311, 4), (paho.MQTTv5, 5)])
def test_live_paho_session_parses(protocol, level):
    server = socket.create_server(("127.0.0.1", 0))
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="live", protocol=protocol)
    try:
        client.connect("127.0.0.1", server.getsockname()[1], keepalive=30)
        conn, _ = server.accept()
        conn.settimeout(10)
        parser = MqttParser()
        [connect] = _read_packets(conn, parser, 1)
        assert (connect.client_id, connect.protocol_level) == ("live", level)
        conn.sendall(encode(ConnAck(), level))
        client.loop_read()
        kwargs = {}
        if level == 5:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("k", "v")
            kwargs["properties"] = props
        client.subscribe("a/+/c", qos=1)
        client.publish("a/b/c", b"hello", qos=1, **kwargs)
        client.unsubscribe("a/+/c")
        packets = _read_packets(conn, parser, 3)
        subscribe, publish, unsubscribe = packets
        assert subscribe.subscriptions[0].topic_filter == "a/+/c"
        assert subscribe.subscriptions[0].qos == 1
        assert (publish.topic, publish.payload, publish.qos) == ("a/b/c", b"hello", 1)
        if level == 5:
            assert publish.properties == {"user_property": [("k", "v")]}
        assert unsubscribe.topic_filters == ("a/+/c",)
        conn.close()
    finally:
        client.socket() and client.socket().close()
        server.close()


# --------------------------------------------------------------------------- hypothesis

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=12)
topic_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#"),
                      min_size=1, max_size=12)
binary = st.binary(max_size=24)
packet_ids = st.integers(1, 0xFFFF)
reason_codes = st.integers(0, 255)

_VALUE_STRATEGIES = {
    PropertyType.BYTE: st.integers(0, 1),
    PropertyType.TWO_BYTE_INT: st.integers(1, 0xFFFF),
    PropertyType.FOUR_BYTE_INT: st.integers(1, 0xFFFFFFFF),
    PropertyType.VARINT: st.integers(1, 268_435_455),
    PropertyType.UTF8: text,
    PropertyType.BINARY: binary,
    PropertyType.UTF8_PAIR: st.tuples(text, text),
}


def properties(kind: str) -> st.SearchStrategy[dict]:
    optional = {}
    for name, ptype, allowed in PROPERTY_TABLE.values():
        if kind not in allowed:
            continue
        value = _VALUE_STRATEGIES[ptype]
        if name == "user_property":
            value = st.lists(value, min_size=1, max_size=3)
        elif name == "subscription_identifier":
            value = st.lists(value, min_size=1, max_size=3 if kind == "publish" else 1)
        optional[name] = value
    return st.fixed_dictionaries({}, optional=optional)


def props_if(level: int, kind: str) -> st.SearchStrategy[dict]:
    return properties(kind) if level == 5 else st.just({})


def packets_for(level: int) -> st.SearchStrategy:
    """Every packet type except CONNECT (which sets the level itself)."""
    v5 = level == 5

    @st.composite
    def publish(draw):
        qos = draw(st.integers(0, 2))
        return Publish(draw(topic_names), draw(binary), qos, draw(st.booleans()),
                       draw(st.booleans()) if qos else False,
                       draw(packet_ids) if qos else None, draw(props_if(level, "publish")))

    def ack(cls, kind):
        return st.builds(cls, packet_ids, reason_codes if v5 else st.just(0),
                         props_if(level, kind))

    subscription = st.builds(
        Subscription, text, st.integers(0, 2),
        st.booleans() if v5 else st.just(False), st.booleans() if v5 else st.just(False),
        st.integers(0, 2) if v5 else st.just(0))
    suback_codes = st.lists(reason_codes if v5 else st.sampled_from([0, 1, 2, 0x80]),
                            max_size=4).map(tuple)
    return st.one_of(
        st.builds(ConnAck, st.booleans(), reason_codes if v5 else st.integers(0, 5),
                  props_if(level, "connack")),
        publish(),
        ack(PubAck, "puback"), ack(PubRec, "pubrec"), ack(PubRel, "pubrel"),
        ack(PubComp, "pubcomp"),
        st.builds(Subscribe, packet_ids, st.lists(subscription, min_size=1, max_size=3).map(tuple),
                  props_if(level, "subscribe")),
        st.builds(SubAck, packet_ids, suback_codes, props_if(level, "suback")),
        st.builds(Unsubscribe, packet_ids, st.lists(text, min_size=1, max_size=3).map(tuple),
                  props_if(level, "unsubscribe")),
        st.builds(UnsubAck, packet_ids, suback_codes if v5 else st.just(()),
                  props_if(level, "unsuback")),
        st.just(PingReq()), st.just(PingResp()),
        st.builds(Disconnect, reason_codes if v5 else st.just(0), props_if(level, "disconnect")),
        *([st.builds(Auth, reason_codes, properties("auth"))] if v5 else []),
    )


@st.composite
def connects(draw, level: int) -> Connect:
    v5 = level == 5
    will = None
    if draw(st.booleans()):
        will = Will(draw(topic_names), draw(binary), draw(st.integers(0, 2)), draw(st.booleans()),
                    draw(props_if(level, "will")))
    username = draw(st.none() | text)
    password = draw(st.none() | binary) if (username is not None or v5) else None
    return Connect("MQIsdp" if level == 3 else "MQTT", level, draw(text), draw(st.booleans()),
                   draw(st.integers(0, 0xFFFF)), username, password, will,
                   draw(props_if(level, "connect")))


@HYPOTHESIS
@given(st.sampled_from([3, 4, 5]).flatmap(connects))
def test_connect_round_trip(connect):
    parser = MqttParser()
    assert parser.feed(encode(connect, connect.protocol_level)) == [connect]
    assert parser.protocol_level == connect.protocol_level


@pytest.mark.parametrize("level", [4, 5])
@HYPOTHESIS
@given(data=st.data())
def test_packet_round_trip(level, data):
    packet = data.draw(packets_for(level))
    assert parse(encode(packet, level), level) == [packet]


@pytest.mark.parametrize("level", [4, 5])
@HYPOTHESIS
@given(data=st.data())
def test_byte_by_byte_feed_equals_whole_feed(level, data):
    packets = data.draw(st.lists(packets_for(level), min_size=1, max_size=5))
    connect = data.draw(connects(level))
    stream = encode(connect, level) + b"".join(encode(p, level) for p in packets)
    whole = MqttParser().feed(stream)
    assert whole == [connect, *packets]
    parser = MqttParser()
    single = [packet for i in range(len(stream)) for packet in parser.feed(stream[i:i + 1])]
    assert single == whole
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    parser = MqttParser()
    chunked = [packet for start, end in zip([0, *cuts], [*cuts, len(stream)])
               for packet in parser.feed(stream[start:end])]
    assert chunked == whole


def _outcome(stream: bytes, chunk: int) -> tuple[list, int | None]:
    parser = MqttParser(max_packet_size=4096)
    packets: list = []
    try:
        for i in range(0, len(stream), chunk):
            packets.extend(parser.feed(stream[i:i + chunk]))
    except MqttError as error:
        return packets + error.packets, error.reason_code
    return packets, None


@pytest.mark.parametrize("connect", [CONNECT_V4_MINIMAL, CONNECT_V5_MINIMAL])
@HYPOTHESIS
@given(garbage=st.binary(max_size=200))
def test_random_bytes_after_connect_raise_only_mqtt_error(connect, garbage):
    whole = _outcome(connect + garbage, len(connect) + len(garbage) or 1)
    assert _outcome(connect + garbage, 1) == whole


@pytest.mark.parametrize("level", [4, 5])
@settings(HYPOTHESIS, max_examples=100)
@given(data=st.data())
def test_mutated_valid_streams_raise_only_mqtt_error(level, data):
    packets = data.draw(st.lists(packets_for(level), min_size=1, max_size=4))
    stream = bytearray(encode(data.draw(connects(level)), level)
                       + b"".join(encode(p, level) for p in packets))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(stream) - 1))
        stream[index] = data.draw(st.integers(0, 255))
    whole = _outcome(bytes(stream), len(stream))
    assert _outcome(bytes(stream), 1) == whole
