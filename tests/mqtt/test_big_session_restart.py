"""A persistent session of thousands of subscriptions, changed by big SUBSCRIBEs and
UNSUBSCRIBEs (its record written in parts over several turns, ``session_records.py``), comes
back intact after a restart and after a kill -9: every filter with its QoS, in order of
delivery, none of those unsubscribed."""

from __future__ import annotations

import pytest

from tests.broker_process import BrokerProcess
from tests.mqtt.helpers import cid, deliveries_until, session_raw
from warren.mqtt.codec import (Disconnect, PubAck, Publish, SubAck, Subscribe, Subscription,
                               UnsubAck, Unsubscribe, encode)


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_a_big_persistent_session_survives_intact(tmp_path, how):
    b = BrokerProcess(tmp_path, extra_args=["--log-level", "debug"])
    b.start()
    try:
        client_id = cid("big-persist")
        raw, _ = session_raw(b.mqtt_port, client_id, clean=False)
        expected: dict[str, int] = {}
        packets = [
            Subscribe(1, tuple(Subscription(f"a/{i}", i % 3) for i in range(2500))
                      + (Subscription("end", 0), Subscription("sync", 0))),
            Unsubscribe(2, tuple(f"a/{i}" for i in range(1000))),
            Subscribe(3, tuple(Subscription(f"a/{i}", (i + 1) % 3)
                               for i in [*range(1500, 2500), *range(200)])),
            Subscribe(4, tuple(Subscription(f"c/{i}", 2) for i in range(100))),
        ]
        for packet in packets:
            raw.send(packet)
            answer = raw.recv()
            if isinstance(packet, Subscribe):
                assert isinstance(answer, SubAck), answer
                expected.update((s.topic_filter, s.qos) for s in packet.subscriptions)
            else:
                assert isinstance(answer, UnsubAck), answer
                for f in packet.topic_filters:
                    expected.pop(f)
        raw.send(Disconnect())
        assert raw.closed()
        # the record of the whole set is written (a line), then stored: the PUBACK of a
        # QoS 1 message the session's durable queue takes comes after a sync of everything
        # written before it
        b.wait_for_line(f"MQTT session {client_id!r} of vhost '/' saved: {len(expected)} "
                        "subscriptions")
        pub, _ = session_raw(b.mqtt_port, cid("pub"), clean=True)
        pub.send(Publish("sync", b"x", 1, packet_id=1))
        assert isinstance(pub.recv(), PubAck)
        pub.close()
        if how == "kill":
            b.kill()
            b.start()
        else:
            b.restart()
        sub, ack = session_raw(b.mqtt_port, client_id, clean=False)
        assert ack.session_present
        pub, _ = session_raw(b.mqtt_port, cid("pub"), clean=True)
        topics = [*(f"a/{i}" for i in range(2500)), *(f"c/{i}" for i in range(200))]
        pub.send_raw(b"".join(encode(Publish(t, t.encode(), 2, packet_id=n + 1), 4)
                              for n, t in enumerate(topics)))
        pub.send(Publish("end", b"end", 0))
        got = deliveries_until(sub, "end")
        pub.close()
        sub.close()
        assert got == {t: q for t, q in expected.items() if t != "end"}
        assert not [line for line in b.lines if "Traceback" in line]
    finally:
        b.stop()
        b.kill()
