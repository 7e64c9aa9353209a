"""Refused logins are logged for the operator: user, peer address, protocol and the reason
(which the client is never told, as RabbitMQ), and never the password."""

from __future__ import annotations

import pika
import pytest
import requests
import stomp

from tests.mqtt.helpers import Client

SECRET = "s3cr3t-never-logged"


def _refused_line(broker, user: str) -> str:
    return broker.wait_for_line(f"login refused for user '{user}' from 127.0.0.1")


def test_amqp_wrong_password_and_unknown_user(broker, unique):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.amqp_port, credentials=pika.PlainCredentials("guest", SECRET),
            connection_attempts=1))
    assert _refused_line(broker, "guest").endswith("(AMQP): wrong password")
    user = unique + "-nobody"
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.amqp_port, credentials=pika.PlainCredentials(user, SECRET),
            connection_attempts=1))
    assert _refused_line(broker, user).endswith("(AMQP): no such user")
    assert not any(SECRET in line for line in broker.lines)


def test_amqp_vhost_without_access(broker, unique):
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.amqp_port, virtual_host=unique,
            credentials=pika.PlainCredentials("guest", "guest"), connection_attempts=1))
    line = broker.wait_for_line(f"access to vhost '{unique}' refused for user 'guest'")
    assert line.endswith("from 127.0.0.1 (AMQP): no such vhost")


def test_stomp_mqtt_and_http_refusals_are_logged(broker, unique):
    conn = stomp.Connection([("127.0.0.1", broker.stomp_port)])
    with pytest.raises(stomp.exception.ConnectFailedException):
        conn.connect(unique + "-s", SECRET, wait=True)
    assert _refused_line(broker, unique + "-s").endswith("(STOMP): no such user")

    client = Client(broker.mqtt_port, username=unique + "-m", password=SECRET, connect=False)
    client.connect(expect_ok=False)
    assert _refused_line(broker, unique + "-m").endswith("(MQTT): no such user")

    r = requests.get(broker.http_url + "/api/overview", auth=("guest", SECRET), timeout=30)
    assert r.status_code == 401
    broker.wait_for_line("login refused for user 'guest' from 127.0.0.1 (HTTP): wrong password")
    assert not any(SECRET in line for line in broker.lines)
