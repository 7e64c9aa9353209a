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

from tests.mqtt.helpers import (assert_malformed_end, assert_session_holds_only, cid,
                                session_raw)
from warren.mqtt.codec import Subscribe, Subscription

BAD = ["", "#/x", "a/b#", "a+/b", "a/#/b", "$share//x", "$share/g", "$share/g/", "$share/g+/x"]


@pytest.mark.parametrize("level", [5, 4])
@pytest.mark.parametrize("bad", BAD)
def test_an_invalid_filter_in_subscribe_ends_the_connection(broker, unique, level, bad):
    client_id = cid("badsub")
    before, after = f"{unique}/before", f"{unique}/after"
    raw, _ = session_raw(broker.mqtt_port, client_id, clean=False, level=level, expiry=60)
    raw.send(Subscribe(1, (Subscription(before, 1), Subscription(bad, 1),
                           Subscription(after, 1))))
    assert_malformed_end(raw, level)
    # the session has the filter before the bad one, not the one after it
    assert_session_holds_only(broker, client_id, level, held=before, not_held=after)
