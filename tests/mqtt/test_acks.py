"""Acknowledgements of the wrong type or out of order, answered as Mosquitto answers them.

A PUBREC for a QoS 1 delivery, a PUBACK for a QoS 2 one, or a PUBCOMP before the PUBREC are
protocol errors: the connection closes (3.1.1) or gets DISCONNECT 0x82 (5.0). An unknown
packet id in PUBACK/PUBCOMP is ignored, and PUBREC/PUBREL for an unknown id are answered
(PUBREL/PUBCOMP, plain success as Mosquitto's, not 0x92): a client resends those after a
reconnect.
"""

from __future__ import annotations

import pytest

from tests.mqtt.helpers import Client, RawClient, cid
from warren.mqtt.codec import (Connect, Disconnect, PingReq, PingResp, PubAck, PubComp,
                               Publish, PubRec, PubRel, Subscribe, Subscription)


def _subscriber(port: int, level: int, topic: str, qos: int) -> RawClient:
    raw = RawClient(port, level)
    raw.send(Connect(protocol_level=level, client_id=cid(), username="guest",
                     password=b"guest"))
    assert raw.recv().reason_code == 0
    raw.send(Subscribe(1, (Subscription(topic, qos),)))
    assert raw.recv().reason_codes == (qos,)
    return raw


def _delivery(port: int, raw: RawClient, topic: str, qos: int) -> Publish:
    Client(port).publish(topic, b"m", qos)
    got = raw.recv()
    assert isinstance(got, Publish) and got.qos == qos
    return got


def _assert_protocol_error(raw: RawClient, level: int) -> None:
    if level == 5:
        got = raw.recv()
        assert isinstance(got, Disconnect) and got.reason_code == 0x82
    assert raw.closed()


def _assert_still_open(raw: RawClient) -> None:
    raw.send(PingReq())
    assert isinstance(raw.recv(), PingResp)


@pytest.mark.parametrize("qos, wrong", [(1, PubRec), (2, PubAck), (2, PubComp), (1, PubComp)],
                         ids=["pubrec-for-qos1", "puback-for-qos2", "pubcomp-before-pubrec",
                              "pubcomp-for-qos1"])
@pytest.mark.parametrize("level", [4, 5])
def test_a_wrong_ack_of_a_delivery_is_a_protocol_error(broker, unique, level, qos, wrong):
    raw = _subscriber(broker.mqtt_port, level, f"{unique}/a", qos)
    got = _delivery(broker.mqtt_port, raw, f"{unique}/a", qos)
    raw.send(wrong(got.packet_id))
    _assert_protocol_error(raw, level)


@pytest.mark.parametrize("level", [4, 5])
def test_qos2_flow_in_order_still_completes(broker, unique, level):
    raw = _subscriber(broker.mqtt_port, level, f"{unique}/e", 2)
    got = _delivery(broker.mqtt_port, raw, f"{unique}/e", 2)
    raw.send(PubRec(got.packet_id))
    rel = raw.recv()
    assert isinstance(rel, PubRel) and rel.packet_id == got.packet_id
    raw.send(PubRec(got.packet_id))          # a resent PUBREC gets the PUBREL again
    assert raw.recv() == rel
    raw.send(PubComp(got.packet_id))
    _assert_still_open(raw)


@pytest.mark.parametrize("level", [4, 5])
def test_unknown_ids_are_tolerated(broker, unique, level):
    """As Mosquitto: PUBACK/PUBCOMP for an unknown id ignored, PUBREC/PUBREL answered."""
    raw = _subscriber(broker.mqtt_port, level, f"{unique}/f", 1)
    missing = 0   # not 0x92 at 5.0 either: Mosquitto's plain success
    raw.send(PubAck(4242))
    raw.send(PubComp(4243))
    raw.send(PubRel(4244))
    assert raw.recv() == PubComp(4244, missing)
    raw.send(PubRec(4245))
    assert raw.recv() == PubRel(4245, missing)
    _assert_still_open(raw)


def test_pubrel_resent_after_reconnect_gets_a_plain_pubcomp(broker, unique):
    """Mosquitto's 03-publish-c2b-disconnect-qos2 at 5.0: the client missed the PUBCOMP,
    reconnects to its session and resends the PUBREL; the answer is PUBCOMP with remaining
    length 2 (success), not 0x92."""
    client_id = cid()

    def connect() -> RawClient:
        raw = RawClient(broker.mqtt_port, level=5)
        raw.send(Connect(protocol_level=5, client_id=client_id, clean_start=False,
                         username="guest", password=b"guest",
                         properties={"session_expiry_interval": 60}))
        assert raw.recv().reason_code == 0
        return raw

    raw = connect()
    raw.send(Publish(f"{unique}/q2", b"x", 2, packet_id=1))
    assert raw.recv().packet_id == 1                 # PUBREC
    raw.send(PubRel(1))
    assert raw.recv() == PubComp(1)
    raw.close()
    raw = connect()
    raw.send_raw(b"\x62\x02\x00\x01")                # the PUBREL again
    data = b""
    while len(data) < 4:
        chunk = raw.sock.recv(4 - len(data))
        assert chunk, data
        data += chunk
    assert data == b"\x70\x02\x00\x01"
    raw.close()
