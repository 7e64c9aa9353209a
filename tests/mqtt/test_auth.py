"""CONNECT authentication against warren's users; client-id rules; anonymous logins.

As RabbitMQ's MQTT plugin (``mqtt.allow_anonymous = true`` by default), a CONNECT without a user
name logs in as the default user, which is still refused from non-loopback addresses;
``mqtt_allow_anonymous = false`` turns that off.
"""

from __future__ import annotations

import pytest

from tests.broker_process import BrokerProcess
from tests.mqtt.helpers import V5, V311, Client, RawClient
from warren.mqtt.codec import ConnAck, Connect


@pytest.mark.parametrize("protocol,code", [(V311, 0x86), (V5, 0x86)])  # paho shows 3.1.1 code 4 as 0x86
def test_bad_password_refused(broker, protocol, code):
    c = Client(broker.mqtt_port, protocol=protocol, password="wrong", connect=False)
    c.connect(expect_ok=False)
    assert c.connack.value == code


def test_anonymous_allowed_by_default_as_default_user(broker):
    raw = RawClient(broker.mqtt_port)
    raw.send(Connect(client_id="anon"))
    assert raw.recv().reason_code == 0
    raw.close()


def test_unknown_vhost_refused_v5(broker):
    raw = RawClient(broker.mqtt_port, level=5)
    raw.send(Connect(protocol_level=5, client_id="vh", username="nowhere:guest",
                     password=b"guest"))
    assert raw.recv().reason_code == 0x87


def test_empty_client_id_needs_clean_session(broker):
    raw = RawClient(broker.mqtt_port)
    raw.send(Connect(client_id="", clean_start=False, username="guest", password=b"guest"))
    assert raw.recv().reason_code == 2      # identifier rejected


def test_empty_client_id_assigned_v5(broker):
    raw = RawClient(broker.mqtt_port, level=5)
    raw.send(Connect(protocol_level=5, client_id="", username="guest", password=b"guest"))
    ack = raw.recv()
    assert ack.reason_code == 0
    assert ack.properties["assigned_client_identifier"].startswith("warren-")


def test_anonymous_refused_when_configured(tmp_path):
    with BrokerProcess(tmp_path, env={"WARREN_MQTT_ALLOW_ANONYMOUS": "false"}) as b:
        raw = RawClient(b.mqtt_port)
        raw.send(Connect(client_id="anon"))
        ack = raw.recv()
        assert isinstance(ack, ConnAck) and ack.reason_code == 5   # not authorized
        assert raw.recv() is None
