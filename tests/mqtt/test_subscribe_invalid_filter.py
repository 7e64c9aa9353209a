"""A SUBSCRIBE naming a topic filter that is not well formed ends the connection, as an
UNSUBSCRIBE's does: DISCONNECT 0x81 Malformed Packet at 5.0, a close at 3.1.1, no SUBACK. 5.0's
0x8F is for a filter "correctly formed but not allowed for this Client", and a malformed
packet is a protocol violation that closes the connection [MQTT 5.0 4.13].

Mosquitto 2.0.11, tried with a raw socket: DISCONNECT 0x81 at 5.0 and a close at 3.1.1 for
``''``, ``#/x``, ``a/b#``, ``a+/b``, ``$share/g+/x`` and a filter with U+0000 ("Invalid
subscription string ... disconnecting"; warren's parser already refused U+0000 as it decodes
the string); the filters before the bad one in the packet stay
subscribed in the session, those after it are not reached. It grants ``$share//x``,
``$share/g`` and ``$share/g/``, which break [MQTT-4.8.2-1] / [MQTT-4.8.2-2]: warren ends the
connection for them too, as it does for an UNSUBSCRIBE.

A filter that is well formed but refused keeps its own SUBACK code: tests/test_topic_permissions
(0x80 at 3.1.1, 0x87 at 5.0)."""

from __future__ import annotations

import pytest

from tests.mqtt.helpers import Client, cid, session_raw
from warren.mqtt.codec import (Disconnect, Publish, Subscribe, Subscription, UnsubAck,
                               Unsubscribe)

BAD = ["", "#/x", "a/b#", "a+/b", "a/#/b", "$share//x", "$share/g", "$share/g/", "$share/g+/x"]


@pytest.mark.parametrize("level", [5, 4])
@pytest.mark.parametrize("bad", BAD)
def test_an_invalid_filter_in_subscribe_ends_the_connection(broker, unique, level, bad):
    client_id = cid("badsub")
    before, after = f"{unique}/before", f"{unique}/after"
    raw, _ = session_raw(broker.mqtt_port, client_id, clean=False, level=level, expiry=60)
    raw.send(Subscribe(1, (Subscription(before, 1), Subscription(bad, 1),
                           Subscription(after, 1))))
    reply = raw.recv()
    if level == 5:
        assert isinstance(reply, Disconnect) and reply.reason_code == 0x81, reply
        reply = raw.recv()
    assert reply is None, reply
    raw.close()

    # the session has the filter before the bad one, not the one after it
    raw, connack = session_raw(broker.mqtt_port, client_id, clean=False, level=level,
                               expiry=60)
    assert connack.session_present
    other = Client(broker.mqtt_port)
    other.publish(after, b"not subscribed", qos=1)
    other.publish(before, b"subscribed", qos=1)
    other.disconnect()
    packet = raw.recv()
    assert isinstance(packet, Publish) and packet.payload == b"subscribed", packet
    raw.send(Unsubscribe(2, (before, after)))
    unsuback = raw.recv()
    assert isinstance(unsuback, UnsubAck)
    if level == 5:
        assert unsuback.reason_codes == (0x00, 0x11)
    raw.send(Disconnect(0, {"session_expiry_interval": 0}) if level == 5 else Disconnect())
    raw.close()
    assert not [line for line in broker.lines if "Traceback" in line]

