"""Clean and persistent sessions, offline queueing, DUP redelivery, takeover, expiry."""

from __future__ import annotations

import socket

from paho.mqtt.packettypes import PacketTypes

from tests.mqtt.helpers import V5, V311, Client, RawClient, cid, v5_props
from warren.mqtt.codec import Connect, PubAck, Publish, Subscribe, Subscription


def test_persistent_session_queues_while_offline(broker, unique):
    client_id = cid()
    sub = Client(broker.mqtt_port, client_id=client_id, clean=False)
    sub.subscribe(f"{unique}/p", 1)
    sub.disconnect()
    pub = Client(broker.mqtt_port)
    for i in range(5):
        pub.publish(f"{unique}/p", f"m{i}".encode(), 1)
    back = Client(broker.mqtt_port, client_id=client_id, clean=False)
    assert back.session_present
    assert [back.get().payload for _ in range(5)] == [f"m{i}".encode() for i in range(5)]


def test_clean_session_forgets_subscriptions(broker, unique):
    client_id = cid()
    sub = Client(broker.mqtt_port, client_id=client_id, clean=False)
    sub.subscribe(f"{unique}/c", 1)
    sub.disconnect()
    fresh = Client(broker.mqtt_port, client_id=client_id, clean=True)
    assert not fresh.session_present
    pub = Client(broker.mqtt_port)
    pub.publish(f"{unique}/c", b"lost", 1)
    fresh.subscribe(f"{unique}/marker", 1)
    pub.publish(f"{unique}/marker", b"marker", 1)
    assert [m.payload for m in fresh.drain_until(b"marker")] == [b"marker"]


def test_unacked_redelivered_with_dup_on_reconnect(broker, unique):
    client_id = cid()
    raw = RawClient(broker.mqtt_port)
    raw.send(Connect(client_id=client_id, clean_start=False, username="guest",
                     password=b"guest"))
    assert raw.recv().reason_code == 0
    raw.send(Subscribe(1, (Subscription(f"{unique}/d", 1),)))
    raw.recv()  # SUBACK
    Client(broker.mqtt_port).publish(f"{unique}/d", b"once", 1)
    first = raw.recv()
    assert isinstance(first, Publish) and not first.dup
    raw.close()   # no PUBACK
    again = RawClient(broker.mqtt_port)
    again.send(Connect(client_id=client_id, clean_start=False, username="guest",
                       password=b"guest"))
    assert again.recv().session_present
    resent = again.recv()
    assert (resent.payload, resent.dup, resent.packet_id) == (b"once", True, first.packet_id)
    again.send(PubAck(resent.packet_id))
    again.send(Subscribe(2, (Subscription(f"{unique}/end", 1),)))
    assert again.recv().packet_id == 2       # SUBACK; nothing else was pending
    again.close()


def test_qos2_duplicate_publish_routed_once(broker, unique):
    from warren.mqtt.codec import PubRec, PubRel, PubComp
    sub = Client(broker.mqtt_port)
    sub.subscribe(f"{unique}/q2", 2)
    raw = RawClient(broker.mqtt_port)
    raw.send(Connect(client_id=cid(), username="guest", password=b"guest"))
    raw.recv()
    raw.send(Publish(f"{unique}/q2", b"exactly-once", 2, packet_id=7))
    assert isinstance(raw.recv(), PubRec)
    raw.send(Publish(f"{unique}/q2", b"exactly-once", 2, dup=True, packet_id=7))
    assert isinstance(raw.recv(), PubRec)
    raw.send(PubRel(7))
    assert isinstance(raw.recv(), PubComp)
    raw.send(Publish(f"{unique}/q2", b"marker", 2, packet_id=8))
    raw.recv()
    raw.send(PubRel(8))
    raw.recv()
    assert [m.payload for m in sub.drain_until(b"marker")] == [b"exactly-once", b"marker"]


def test_takeover_disconnects_first_connection(broker, unique):
    client_id = cid()
    first = Client(broker.mqtt_port, protocol=V5, client_id=client_id)
    second = Client(broker.mqtt_port, protocol=V5, client_id=client_id)
    assert first.disconnected.wait(10)
    assert first.disconnect_reason.value == 0x8E      # session taken over
    first.paho.loop_stop()
    second.subscribe(f"{unique}/t", 1)
    Client(broker.mqtt_port).publish(f"{unique}/t", b"to-second", 1)
    assert second.get().payload == b"to-second"


def test_takeover_v311(broker, unique):
    client_id = cid()
    raw = RawClient(broker.mqtt_port)
    raw.send(Connect(client_id=client_id, username="guest", password=b"guest"))
    raw.recv()
    second = Client(broker.mqtt_port, client_id=client_id)
    assert raw.closed()
    second.disconnect()


def test_v5_session_expiry_zero_ends_session(broker, unique):
    client_id = cid()
    sub = Client(broker.mqtt_port, protocol=V5, client_id=client_id, clean=False)
    sub.subscribe(f"{unique}/e", 1)
    sub.disconnect()
    back = Client(broker.mqtt_port, protocol=V5, client_id=client_id, clean=False)
    assert not back.session_present


def test_v5_session_expiry_keeps_session(broker, unique):
    client_id = cid()
    props = v5_props(PacketTypes.CONNECT, SessionExpiryInterval=300)
    sub = Client(broker.mqtt_port, protocol=V5, client_id=client_id, clean=False,
                 properties=props)
    sub.subscribe(f"{unique}/k", 1)
    sub.disconnect()
    Client(broker.mqtt_port).publish(f"{unique}/k", b"waiting", 1)
    back = Client(broker.mqtt_port, protocol=V5, client_id=client_id, clean=False,
                  properties=props)
    assert back.session_present
    assert back.get().payload == b"waiting"
    back.disconnect()


def test_receive_maximum_limits_inflight(broker, unique):
    raw = RawClient(broker.mqtt_port, level=5)
    raw.send(Connect(protocol_level=5, client_id=cid(), username="guest", password=b"guest",
                     properties={"receive_maximum": 2}))
    raw.recv()
    raw.send(Subscribe(1, (Subscription(f"{unique}/rm", 1),)))
    raw.recv()
    pub = Client(broker.mqtt_port)
    for i in range(4):
        pub.publish(f"{unique}/rm", f"{i}".encode(), 1)
    a, b = raw.recv(), raw.recv()
    assert [a.payload, b.payload] == [b"0", b"1"]
    raw.sock.settimeout(0.3)
    try:
        extra = raw.recv()
    except socket.timeout:
        extra = None
    assert extra is None            # window full: nothing more until an ack
    raw.sock.settimeout(10)
    raw.send(PubAck(a.packet_id))
    assert raw.recv().payload == b"2"


def _raw_connect(port: int, client_id: str, clean: bool, level: int = 4) -> tuple:
    raw = RawClient(port, level)
    raw.send(Connect(protocol_level=level, client_id=client_id, clean_start=clean,
                     username="guest", password=b"guest"))
    return raw, raw.recv()


def test_clean_session_taken_over_by_persistent_one_ends(broker, unique):
    """[MQTT-3.1.2-6] a clean session ends with its connection, also when a persistent
    connection with the same client id takes it over: no session present, and the old
    subscriptions deliver nothing to the new session."""
    client_id = cid()
    old, ack = _raw_connect(broker.mqtt_port, client_id, clean=True)
    assert ack.reason_code == 0
    old.send(Subscribe(1, (Subscription(f"{unique}/old", 1),)))
    assert old.recv().reason_codes == (1,)
    new, ack = _raw_connect(broker.mqtt_port, client_id, clean=False)
    assert (ack.reason_code, ack.session_present) == (0, False)
    assert old.closed()
    new.send(Subscribe(1, (Subscription(f"{unique}/marker", 1),)))
    assert new.recv().reason_codes == (1,)
    pub = Client(broker.mqtt_port)
    pub.publish(f"{unique}/old", b"stale", 1)
    pub.publish(f"{unique}/marker", b"marker", 1)
    got = new.recv()
    assert (got.topic, got.payload) == (f"{unique}/marker", b"marker")
    new.send(PubAck(got.packet_id))
    new.close()
    # and the session the new connection made is persistent: it is there next time
    again, ack = _raw_connect(broker.mqtt_port, client_id, clean=False)
    assert (ack.reason_code, ack.session_present) == (0, True)
    again.close()


def _recv_exactly(raw: RawClient, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = raw.sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _connect_31(port: int, client_id: str, clean: bool) -> RawClient:
    raw = RawClient(port, 3)
    raw.send(Connect(protocol_name="MQIsdp", protocol_level=3, client_id=client_id,
                     clean_start=clean, username="guest", password=b"guest"))
    return raw


def test_mqtt31_empty_client_id_refused_with_identifier_rejected(broker):
    """MQTT 3.1 client ids are 1-23 characters: an empty one gets CONNACK 2 and a close."""
    raw = _connect_31(broker.mqtt_port, "", clean=True)
    assert _recv_exactly(raw, 4) == b"\x20\x02\x00\x02"
    assert raw.closed()


def test_mqtt31_connack_has_no_session_present_flag(broker, unique):
    """The 3.1 CONNACK is 20 02 00 00 even when a persistent session is resumed."""
    client_id = cid()[:23]
    first = _connect_31(broker.mqtt_port, client_id, clean=False)
    assert _recv_exactly(first, 4) == b"\x20\x02\x00\x00"
    first.send(Subscribe(1, (Subscription(f"{unique}/s", 1),)))
    assert first.recv().reason_codes == (1,)
    first.send_raw(b"\xe0\x00")   # DISCONNECT
    assert first.closed()
    again = _connect_31(broker.mqtt_port, client_id, clean=False)
    assert _recv_exactly(again, 4) == b"\x20\x02\x00\x00"
    # the session was resumed all the same: its subscription delivers
    Client(broker.mqtt_port).publish(f"{unique}/s", b"kept", 1)
    got = again.recv()
    assert (got.topic, got.payload) == (f"{unique}/s", b"kept")
    again.close()


def test_mqtt31_resent_pubrel_with_dup_flag_is_completed(broker, unique):
    """MQTT 3.1 lets a resent PUBREL carry DUP (first byte 0x6A): it is completed, as by
    Mosquitto (its 03-publish-c2b-disconnect-qos2 test)."""
    raw = _connect_31(broker.mqtt_port, cid()[:23], clean=True)
    assert _recv_exactly(raw, 4) == b"\x20\x02\x00\x00"
    raw.send(Publish(f"{unique}/q2", b"x", 2, packet_id=1))
    assert _recv_exactly(raw, 4) == b"\x50\x02\x00\x01"          # PUBREC
    raw.send_raw(b"\x6a\x02\x00\x01")                             # PUBREL, DUP set
    assert _recv_exactly(raw, 4) == b"\x70\x02\x00\x01"          # PUBCOMP
    raw.close()


def test_mqtt311_pubrel_with_dup_flag_is_malformed(broker, unique):
    """At 3.1.1 PUBREL's flags are fixed at 0010 [MQTT-3.6.1-1]: DUP set closes the
    connection, and the broker serves the next client."""
    raw = RawClient(broker.mqtt_port)
    raw.send(Connect(client_id=cid(), username="guest", password=b"guest"))
    assert raw.recv().reason_code == 0
    raw.send(Publish(f"{unique}/q2", b"x", 2, packet_id=1))
    assert raw.recv().packet_id == 1
    raw.send_raw(b"\x6a\x02\x00\x01")
    assert raw.closed()
    Client(broker.mqtt_port).publish(f"{unique}/after", b"ok", 1)
