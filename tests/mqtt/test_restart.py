"""Persistent sessions and retained messages survive a broker restart (and a kill -9)."""

from __future__ import annotations

import pytest

from tests.broker_process import BrokerProcess
from tests.mqtt.helpers import V5, Client, cid, v5_props
from paho.mqtt.packettypes import PacketTypes


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_session_and_retained_survive(tmp_path, how):
    b = BrokerProcess(tmp_path)
    b.start()
    try:
        client_id = cid("persist")
        sub = Client(b.mqtt_port, client_id=client_id, clean=False)
        sub.subscribe("plant/+/state", 1)
        sub.subscribe("plant/q0", 0)
        sub.disconnect()
        pub = Client(b.mqtt_port)
        for i in range(5):
            pub.publish("plant/a/state", f"s{i}".encode(), 1)    # PUBACK after fsync
        pub.publish("plant/b/state", b"r", 1, retain=True)
        pub.disconnect()
        if how == "kill":
            b.kill()
            b.start()
        else:
            b.restart()
        back = Client(b.mqtt_port, client_id=client_id, clean=False)
        assert back.session_present
        got = [back.get().payload for _ in range(6)]
        assert got == [b"s0", b"s1", b"s2", b"s3", b"s4", b"r"]
        # the subscriptions themselves came back: live messages still route
        Client(b.mqtt_port).publish("plant/c/state", b"after", 1)
        assert back.get().payload == b"after"
        late = Client(b.mqtt_port)
        late.subscribe("plant/b/state", 1)
        m = late.get()
        assert (m.payload, m.retain) == (b"r", True)
        back.disconnect()
    finally:
        b.stop()
        b.kill()


def test_v5_session_record_survives_restart(tmp_path):
    with BrokerProcess(tmp_path) as b:
        client_id = cid("v5")
        props = v5_props(PacketTypes.CONNECT, SessionExpiryInterval=3600)
        sub = Client(b.mqtt_port, protocol=V5, client_id=client_id, clean=False,
                     properties=props)
        sub.subscribe("v5/x", 2)
        sub.disconnect()
        Client(b.mqtt_port).publish("v5/x", b"q2", 2)
        b.restart()
        back = Client(b.mqtt_port, protocol=V5, client_id=client_id, clean=False,
                      properties=props)
        assert back.session_present
        m = back.get()
        assert (m.payload, m.qos) == (b"q2", 2)
        back.disconnect()
