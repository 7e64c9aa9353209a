"""An UNSUBSCRIBE naming a topic filter that is not well formed ends the connection:
DISCONNECT 0x81 Malformed Packet at 5.0, a close at 3.1.1, never an UNSUBACK. 5.0's UNSUBACK
has no code for it (0x8F is for a filter "correctly formed but not allowed", 0x11 for a valid
one not subscribed), and Mosquitto 2.0.11 answers the same (its "Invalid/Empty unsubscription
string"). The filters before it are unsubscribed, the ones after it stay subscribed in the
session, and nothing reaches the log as a traceback."""

from __future__ import annotations

import pytest

from tests.mqtt.helpers import (assert_malformed_end, assert_session_holds_only, cid,
                                session_raw)
from warren.mqtt.codec import SubAck, Subscribe, Subscription, Unsubscribe

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
    assert_malformed_end(raw, level)
    # the session kept what the UNSUBSCRIBE did not reach, and lost what it did
    assert_session_holds_only(broker, client_id, level, held=after, not_held=before)
