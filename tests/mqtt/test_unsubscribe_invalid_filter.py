"""An UNSUBSCRIBE naming a topic filter that is not well formed ends the connection:
DISCONNECT 0x81 Malformed Packet at 5.0, a close at 3.1.1, never an UNSUBACK. 5.0's UNSUBACK
has no code for it (0x8F is for a filter "correctly formed but not allowed", 0x11 for a valid
one not subscribed), and Mosquitto 2.0.11 answers the same (its "Invalid/Empty unsubscription
string"). The filters before it are unsubscribed, the ones after it stay subscribed in the
session, and nothing reaches the log as a traceback."""

from __future__ import annotations

import pytest

from tests.mqtt.helpers import Client, cid, session_raw
from warren.mqtt.codec import (Disconnect, Publish, SubAck, Subscribe, Subscription, UnsubAck,
                               Unsubscribe)

BAD = ["", "#/x", "a/b#", "a+/b", "a/#/b", "$share//x", "$share/g", "$share/g/"]


@pytest.mark.parametrize("level", [5, 4])
@pytest.mark.parametrize("bad", BAD)
def test_an_invalid_filter_in_unsubscribe_ends_the_connection(broker, unique, level, bad):
    client_id = cid("badunsub")
    before, after = f"{unique}/before", f"{unique}/after"
    raw, _ = session_raw(broker.mqtt_port, client_id, clean=False, level=level, expiry=60)
    raw.send(Subscribe(1, (Subscription(before, 1), Subscription(after, 1))))
    assert isinstance(raw.recv(), SubAck)
    raw.send(Unsubscribe(2, (before, bad, after)))
    reply = raw.recv()
    if level == 5:
        assert isinstance(reply, Disconnect) and reply.reason_code == 0x81, reply
        reply = raw.recv()
    assert reply is None, reply
    raw.close()

    # the session kept what the UNSUBSCRIBE did not reach, and lost what it did
    raw, connack = session_raw(broker.mqtt_port, client_id, clean=False, level=level,
                               expiry=60)
    assert connack.session_present
    other = Client(broker.mqtt_port)
    other.publish(before, b"gone", qos=1)
    other.publish(after, b"kept", qos=1)
    other.disconnect()
    packet = raw.recv()
    assert isinstance(packet, Publish) and packet.payload == b"kept", packet
    raw.send(Unsubscribe(3, (after, before)))
    unsuback = raw.recv()
    assert isinstance(unsuback, UnsubAck)
    if level == 5:
        assert unsuback.reason_codes == (0x00, 0x11)
    raw.send(Disconnect(0, {"session_expiry_interval": 0}) if level == 5 else Disconnect())
    raw.close()
    assert not [line for line in broker.lines if "Traceback" in line]
