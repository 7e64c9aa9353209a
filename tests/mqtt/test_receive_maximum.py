"""The server's Receive Maximum (MQTT 5.0): stated in CONNACK, enforced with DISCONNECT 0x93."""

from __future__ import annotations

from tests.mqtt.helpers import V5, Client, RawClient, cid
from warren.mqtt.codec import (Connect, Disconnect, PingReq, PingResp, PubComp, Publish,
                               PubRec, PubRel, encode)


def _connect5(port: int) -> tuple[RawClient, int]:
    raw = RawClient(port, level=5)
    raw.send(Connect(protocol_level=5, client_id=cid(), username="guest", password=b"guest"))
    ack = raw.recv()
    assert ack.reason_code == 0
    return raw, ack.properties["receive_maximum"]


def test_connack_states_receive_maximum(broker):
    client = Client(broker.mqtt_port, protocol=V5)
    assert 0 < client.connack_properties.ReceiveMaximum < 65535
    client.disconnect()


def test_one_qos2_publish_over_receive_maximum_is_disconnected(broker, unique):
    """Receive Maximum QoS 2 publishes awaiting PUBREL are fine; one more gets 0x93."""
    raw, limit = _connect5(broker.mqtt_port)
    raw.send_raw(b"".join(encode(Publish(f"{unique}/q2", b"x", 2, packet_id=i), 5)
                          for i in range(1, limit + 1)))
    for i in range(1, limit + 1):
        got = raw.recv()
        assert isinstance(got, PubRec) and got.packet_id == i
    raw.send(Publish(f"{unique}/q2", b"x", 2, packet_id=limit + 1))
    got = raw.recv()
    assert isinstance(got, Disconnect) and got.reason_code == 0x93
    assert raw.closed()


def test_completed_qos2_flows_free_their_slots(broker, unique):
    """PUBREL ends a flow: a client that completes its flows never meets the limit."""
    raw, limit = _connect5(broker.mqtt_port)
    for i in range(1, limit + 2):
        pid = (i % 65535) or 1
        raw.send(Publish(f"{unique}/ok", b"x", 2, packet_id=pid))
        assert raw.recv() == PubRec(pid, 0)
        raw.send(PubRel(pid))
        assert raw.recv() == PubComp(pid)
    raw.send(PingReq())
    assert isinstance(raw.recv(), PingResp)
    raw.close()


def test_qos1_publish_counts_towards_receive_maximum(broker, unique):
    """QoS 1 and 2 share the limit: with Receive Maximum QoS 2 flows open, a QoS 1 publish
    is one too many."""
    raw, limit = _connect5(broker.mqtt_port)
    raw.send_raw(b"".join(encode(Publish(f"{unique}/mix", b"x", 2, packet_id=i), 5)
                          for i in range(1, limit + 1)))
    for i in range(1, limit + 1):
        assert raw.recv().packet_id == i
    raw.send(Publish(f"{unique}/mix", b"x", 1, packet_id=limit + 1))
    got = raw.recv()
    assert isinstance(got, Disconnect) and got.reason_code == 0x93
    assert raw.closed()


def test_qos0_publish_is_not_limited(broker, unique):
    """Receive Maximum counts QoS 1/2 only: QoS 0 still flows with every slot taken."""
    raw, limit = _connect5(broker.mqtt_port)
    raw.send_raw(b"".join(encode(Publish(f"{unique}/z", b"x", 2, packet_id=i), 5)
                          for i in range(1, limit + 1)))
    for i in range(1, limit + 1):
        assert raw.recv().packet_id == i
    raw.send(Publish(f"{unique}/z", b"x", 0))
    raw.send(PingReq())
    assert isinstance(raw.recv(), PingResp)
    raw.close()


def test_a_client_still_writing_reads_the_disconnect(broker, unique):
    """paho's test_flow_control2: a client past the Receive Maximum answers the PUBRECs it
    reads with PUBRELs (written one by one, after the broker decided to disconnect it) before
    it reads on. The broker's close must not reset the connection under it: each write goes
    through, and the DISCONNECT 0x93 and then the end of the stream are there to read."""
    raw, limit = _connect5(broker.mqtt_port)
    raw.send_raw(b"".join(encode(Publish(f"{unique}/flow", b"x", 2, packet_id=i), 5)
                          for i in range(1, limit + 2)))
    for i in range(1, limit + 1):
        got = raw.recv()
        assert isinstance(got, PubRec) and got.packet_id == i
    for i in range(1, limit + 1):
        raw.send(PubRel(i))       # a reset by then: BrokenPipeError / ConnectionResetError
    got = raw.recv()
    assert isinstance(got, Disconnect) and got.reason_code == 0x93
    assert raw.sock.recv(65536) == b""    # our FIN, not a reset
    raw.close()
