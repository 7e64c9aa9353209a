"""Vhost limits (max-connections, max-queues) and user limits (max-connections, max-channels),
as RabbitMQ: the management API, the texts a refused client gets over AMQP, STOMP and MQTT,
``warren ctl``, definitions, and a restart."""

from __future__ import annotations

import re
import urllib.parse

import pika
import pytest
import requests
import stomp

from tests.mqtt.helpers import Client
from tests.polling import eventually
from tests.webconsole.test_ctl import ctl, rows


def _api(broker) -> requests.Session:
    s = requests.Session()
    s.auth = ("guest", "guest")
    s.base = broker.http_url  # type: ignore[attr-defined]
    return s


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


@pytest.fixture
def vhost(broker, unique):
    api = _api(broker)
    assert api.put(f"{api.base}/api/vhosts/{_q(unique)}", json={}, timeout=30).status_code == 201
    yield unique
    api.delete(f"{api.base}/api/vhosts/{_q(unique)}", timeout=30)


@pytest.fixture
def user(broker, unique):
    """A user with a password and full permissions on '/'."""
    api = _api(broker)
    name = unique + "-u"
    api.put(f"{api.base}/api/users/{_q(name)}", json={"password": "pw", "tags": ""},
            timeout=30).raise_for_status()
    api.put(f"{api.base}/api/permissions/%2F/{_q(name)}",
            json={"configure": ".*", "write": ".*", "read": ".*"}, timeout=30).raise_for_status()
    yield name
    api.delete(f"{api.base}/api/users/{_q(name)}", timeout=30)


def _connect(broker, vhost: str = "/", user: str = "guest", password: str = "guest"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.amqp_port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password), connection_attempts=1))


def _refused(broker, **kw) -> tuple[int, str]:
    """The connection.close a refused pika connection got (pika wraps a close during
    connection.open in ProbableAccessDeniedError, keeping the reply in its text)."""
    with pytest.raises(pika.exceptions.AMQPConnectionError) as e:
        _connect(broker, **kw)
    found = re.search(r'\((\d+)\) "(.*)"', str(e.value))
    assert found, str(e.value)
    return int(found.group(1)), found.group(2)


def _no_traceback(broker) -> None:
    assert not any("Traceback" in line for line in broker.lines)


def _set_vhost_limit(broker, vhost: str, name: str, value) -> requests.Response:
    api = _api(broker)
    return api.put(f"{api.base}/api/vhost-limits/{_q(vhost)}/{name}", json={"value": value},
                   timeout=30)


def _set_user_limit(broker, user: str, name: str, value) -> requests.Response:
    api = _api(broker)
    return api.put(f"{api.base}/api/user-limits/{_q(user)}/{name}", json={"value": value},
                   timeout=30)


# ---------------------------------------------------------------------------------- API
def test_vhost_limits_api_shapes(broker, vhost):
    api = _api(broker)
    assert api.get(f"{api.base}/api/vhost-limits/{_q(vhost)}", timeout=30).json() == []
    assert _set_vhost_limit(broker, vhost, "max-connections", 10).status_code == 204
    assert _set_vhost_limit(broker, vhost, "max-queues", 5).status_code == 204
    want = {"vhost": vhost, "value": {"max-connections": 10, "max-queues": 5}}
    assert api.get(f"{api.base}/api/vhost-limits/{_q(vhost)}", timeout=30).json() == [want]
    assert want in api.get(f"{api.base}/api/vhost-limits", timeout=30).json()
    # stored as RabbitMQ stores them: the vhost's runtime parameter vhost-limits/limits
    p = api.get(f"{api.base}/api/parameters/vhost-limits/{_q(vhost)}/limits", timeout=30)
    assert p.json()["value"] == want["value"]
    assert api.delete(f"{api.base}/api/vhost-limits/{_q(vhost)}/max-queues",
                      timeout=30).status_code == 204
    assert api.get(f"{api.base}/api/vhost-limits/{_q(vhost)}", timeout=30).json() == [
        {"vhost": vhost, "value": {"max-connections": 10}}]
    api.delete(f"{api.base}/api/vhost-limits/{_q(vhost)}/max-connections", timeout=30)
    assert api.get(f"{api.base}/api/vhost-limits/{_q(vhost)}", timeout=30).json() == []


def test_vhost_limits_bad_input(broker, vhost):
    api = _api(broker)
    # RabbitMQ 3.10's answers, word for word
    bad = _set_vhost_limit(broker, vhost, "max-connections", "ten")
    assert (bad.status_code, bad.json()["reason"]) == (
        400, 'Validation failed\n\nmax-connections should be a number, actually was '
             '<<"ten">>\n')
    bad = _set_vhost_limit(broker, vhost, "max-channels", 3)    # a user limit, not a vhost's
    assert (bad.status_code, bad.json()["reason"]) == (
        400, 'Validation failed\n\nUnrecognised terms [{<<"max-channels">>,3}] in limits\n')
    r = api.put(f"{api.base}/api/vhost-limits/{_q(vhost)}/max-queues", json={"v": 1},
                timeout=30)
    assert r.status_code == 400 and r.json()["reason"] == "[{key_missing,value}]"
    assert _set_vhost_limit(broker, vhost + "-none", "max-queues", 1).status_code == 404
    assert api.get(f"{api.base}/api/vhost-limits/{_q(vhost)}", timeout=30).json() == []
    _no_traceback(broker)


def test_user_limits_api_shapes_and_rights(broker, user):
    api = _api(broker)
    assert _set_user_limit(broker, user, "max-connections", 3).status_code == 204
    assert _set_user_limit(broker, user, "max-channels", 7).status_code == 204
    want = {"user": user, "value": {"max-connections": 3, "max-channels": 7}}
    assert api.get(f"{api.base}/api/user-limits/{_q(user)}", timeout=30).json() == [want]
    assert want in api.get(f"{api.base}/api/user-limits", timeout=30).json()
    assert api.get(f"{api.base}/api/users/{_q(user)}", timeout=30).json()["limits"] == \
        want["value"]
    bad = _set_user_limit(broker, user, "max-queues", 1)     # RabbitMQ 3.10's answer
    assert (bad.status_code, bad.json()["reason"]) == (
        400, 'Unrecognised terms [{<<"max-queues">>,1}] in user-limits')
    bad = _set_user_limit(broker, user, "max-channels", True)
    assert bad.status_code == 400
    assert _set_user_limit(broker, user + "-none", "max-channels", 1).status_code == 404
    # only administrators read or change them
    r = requests.put(f"{api.base}/api/user-limits/{_q(user)}/max-connections",
                     json={"value": 100}, auth=(user, "pw"), timeout=30)
    assert r.status_code in (401, 403)
    # a password change keeps the limits (RabbitMQ updates the user record in place)
    api.put(f"{api.base}/api/users/{_q(user)}", json={"password": "pw", "tags": ""},
            timeout=30).raise_for_status()
    assert api.get(f"{api.base}/api/user-limits/{_q(user)}", timeout=30).json() == [want]
    assert api.delete(f"{api.base}/api/user-limits/{_q(user)}/max-channels",
                      timeout=30).status_code == 204
    assert api.get(f"{api.base}/api/user-limits/{_q(user)}", timeout=30).json() == [
        {"user": user, "value": {"max-connections": 3}}]


# ---------------------------------------------------------------------------------- enforcement
def test_vhost_max_connections_over_every_protocol(broker, vhost):
    assert _set_vhost_limit(broker, vhost, "max-connections", 1).status_code == 204
    first = _connect(broker, vhost)
    code, text = _refused(broker, vhost=vhost)
    assert (code, text) == (530, f"NOT_ALLOWED - access to vhost '{vhost}' refused for user "
                                 "'guest': connection limit (1) is reached")
    conn = stomp.Connection([("127.0.0.1", broker.stomp_port)], vhost=vhost)
    with pytest.raises(stomp.exception.ConnectFailedException):
        conn.connect("guest", "guest", wait=True)
    mqtt = Client(broker.mqtt_port, username=f"{vhost}:guest", connect=False)
    mqtt.connect(expect_ok=False)
    assert mqtt.connack.is_failure and str(mqtt.connack) == "Not authorized"   # 3.1.1: 5
    mqtt.drop()
    # the one connection in the vhost still works; once it is gone another may come in
    first.channel().queue_declare("", exclusive=True)
    first.close()
    eventually(lambda: _try_connect(broker, vhost), "a connection once the first closed")
    _no_traceback(broker)


def _try_connect(broker, vhost: str) -> bool:
    try:
        _connect(broker, vhost).close()
    except pika.exceptions.AMQPConnectionError:
        return False
    return True


def test_stomp_and_mqtt_connections_count_against_the_vhost(broker, vhost):
    assert _set_vhost_limit(broker, vhost, "max-connections", 2).status_code == 204
    conn = stomp.Connection([("127.0.0.1", broker.stomp_port)], vhost=vhost)
    conn.connect("guest", "guest", wait=True)
    mqtt = Client(broker.mqtt_port, username=f"{vhost}:guest")
    code, text = _refused(broker, vhost=vhost)
    assert code == 530 and text.endswith("connection limit (2) is reached")
    conn.disconnect()
    mqtt.disconnect()
    eventually(lambda: _try_connect(broker, vhost), "room again after STOMP and MQTT left")


def test_zero_refuses_all_and_negative_is_no_limit(broker, vhost):
    assert _set_vhost_limit(broker, vhost, "max-connections", 0).status_code == 204
    code, text = _refused(broker, vhost=vhost)
    assert code == 530 and text.endswith("connection limit (0) is reached")
    assert _set_vhost_limit(broker, vhost, "max-connections", -1).status_code == 204
    conns = [_connect(broker, vhost) for _ in range(3)]
    for c in conns:
        c.close()


def test_vhost_max_queues(broker, vhost):
    assert _set_vhost_limit(broker, vhost, "max-queues", 2).status_code == 204
    conn = _connect(broker, vhost)
    ch = conn.channel()
    ch.queue_declare("q1")
    ch.queue_declare("q2", durable=True)
    ch.queue_declare("q1")                 # redeclaring an existing queue is no new queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("q3")
    assert (e.value.reply_code, e.value.reply_text) == (
        406, f"PRECONDITION_FAILED - cannot declare queue 'q3': queue limit in vhost "
             f"'{vhost}' (2) is reached")
    ch = conn.channel()                    # a channel error: the connection stays
    ch.queue_delete("q1")
    ch.queue_declare("q3")
    api = _api(broker)
    r = api.put(f"{api.base}/api/queues/{_q(vhost)}/q4", json={}, timeout=30)
    assert r.status_code == 400 and "queue limit in vhost" in r.json()["reason"]
    conn.close()


def test_user_max_connections(broker, user):
    assert _set_user_limit(broker, user, "max-connections", 1).status_code == 204
    first = _connect(broker, user=user, password="pw")
    code, text = _refused(broker, user=user, password="pw")
    assert (code, text) == (530, f"NOT_ALLOWED - connection refused for user '{user}': "
                                 "user connection limit (1) is reached")
    conn = stomp.Connection([("127.0.0.1", broker.stomp_port)])
    with pytest.raises(stomp.exception.ConnectFailedException):
        conn.connect(user, "pw", wait=True)
    other = _connect(broker)               # other users are not limited
    other.close()
    first.close()
    eventually(lambda: _try_user(broker, user), "a connection once the first closed")


def _try_user(broker, user: str) -> bool:
    try:
        _connect(broker, user=user, password="pw").close()
    except pika.exceptions.AMQPConnectionError:
        return False
    return True


def test_user_max_channels_over_all_connections(broker, user):
    assert _set_user_limit(broker, user, "max-channels", 2).status_code == 204
    a = _connect(broker, user=user, password="pw")
    b = _connect(broker, user=user, password="pw")
    a.channel()
    b.channel()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        b.channel()
    assert (e.value.reply_code, e.value.reply_text) == (
        530, f"NOT_ALLOWED - number of channels opened for user '{user}' has reached the "
             "maximum allowed user limit of (2)")
    # b's channel went with b: a may open one more
    eventually(lambda: _opens_channel(a), "a channel once b's closed")
    a.close()


def _opens_channel(conn) -> bool:
    try:
        conn.channel()
    except pika.exceptions.ConnectionClosedByBroker:
        raise
    return True


# ---------------------------------------------------------------------------------- ctl
def test_ctl_vhost_and_user_limits(broker, vhost, user):
    ctl(broker, "-V", vhost, "set_vhost_limits", '{"max-connections": 4, "max-queues": 9}')
    assert ctl(broker, "-V", vhost, "list_vhost_limits").stdout.strip() == \
        '{"max-connections": 4, "max-queues": 9}'
    assert [vhost, '{"max-connections": 4, "max-queues": 9}'] in \
        rows(ctl(broker, "list_vhost_limits", "--global").stdout)
    # set_vhost_limits replaces the whole set, as rabbitmqctl
    ctl(broker, "-V", vhost, "set_vhost_limits", '{"max-queues": 1}')
    assert ctl(broker, "-V", vhost, "list_vhost_limits").stdout.strip() == '{"max-queues": 1}'
    bad = ctl(broker, "-V", vhost, "set_vhost_limits", '{"max-queues": "x"}', check=False)
    assert bad.returncode != 0 and "max-queues should be a number" in bad.stderr
    bad = ctl(broker, "-V", vhost, "set_vhost_limits", "{not json", check=False)
    assert bad.returncode != 0 and "JSON decoding error" in bad.stderr
    ctl(broker, "-V", vhost, "clear_vhost_limits")
    assert ctl(broker, "-V", vhost, "list_vhost_limits").stdout.strip() == "{}"

    ctl(broker, "set_user_limits", user, '{"max-connections": 2}')
    ctl(broker, "set_user_limits", user, '{"max-channels": 5}')     # added to the first
    assert ctl(broker, "list_user_limits", "--user", user).stdout.strip() == \
        '{"max-connections": 2, "max-channels": 5}'
    assert [user, '{"max-connections": 2, "max-channels": 5}'] in \
        rows(ctl(broker, "list_user_limits").stdout)
    ctl(broker, "clear_user_limits", user, "max-connections")
    assert ctl(broker, "list_user_limits", "--user", user).stdout.strip() == \
        '{"max-channels": 5}'
    ctl(broker, "clear_user_limits", user, "all")
    assert ctl(broker, "list_user_limits", "--user", user).stdout.strip() == "{}"


# ---------------------------------------------------------------------------------- durable
def test_definitions_carry_limits_as_rabbitmq(broker, vhost, user):
    api = _api(broker)
    _set_vhost_limit(broker, vhost, "max-queues", 7).raise_for_status()
    _set_user_limit(broker, user, "max-channels", 3).raise_for_status()
    defs = api.get(f"{api.base}/api/definitions", timeout=30).json()
    [vh] = [v for v in defs["vhosts"] if v["name"] == vhost]
    assert vh["limits"] == {"max-queues": 7}
    assert {"vhost": vhost, "component": "vhost-limits", "name": "limits",
            "value": {"max-queues": 7}} in defs["parameters"]
    [u] = [x for x in defs["users"] if x["name"] == user]
    assert u["limits"] == {"max-channels": 3}
    assert [v for v in defs["vhosts"] if v["name"] == "/"][0]["limits"] in ([], {})

    # imported elsewhere: a new vhost and user take the limits from the document
    other_vh, other_user = vhost + "-imp", user + "-imp"
    doc = {"vhosts": [{"name": other_vh, "limits": {"max-connections": 5}}],
           "users": [{"name": other_user, "password_hash": u["password_hash"], "tags": [],
                      "limits": {"max-connections": 1}}]}
    api.post(f"{api.base}/api/definitions", json=doc, timeout=30).raise_for_status()
    assert api.get(f"{api.base}/api/vhost-limits/{_q(other_vh)}", timeout=30).json() == [
        {"vhost": other_vh, "value": {"max-connections": 5}}]
    assert api.get(f"{api.base}/api/user-limits/{_q(other_user)}", timeout=30).json() == [
        {"user": other_user, "value": {"max-connections": 1}}]
    bad = {"users": [{"name": other_user + "x", "password_hash": "", "tags": [],
                      "limits": {"max-queues": 1}}]}
    r = api.post(f"{api.base}/api/definitions", json=bad, timeout=30)
    assert r.status_code == 400 and "Unrecognised terms" in r.json()["reason"]
    assert other_user + "x" not in [x["name"] for x in
                                    api.get(f"{api.base}/api/users", timeout=30).json()]
    api.delete(f"{api.base}/api/vhosts/{_q(other_vh)}", timeout=30)
    api.delete(f"{api.base}/api/users/{_q(other_user)}", timeout=30)


def test_limits_survive_a_restart(tmp_path):
    from tests.broker_process import BrokerProcess
    with BrokerProcess(tmp_path / "data") as b:
        _set_vhost_limit(b, "/", "max-connections", 0).raise_for_status()
        _set_user_limit(b, "guest", "max-channels", 4).raise_for_status()
        b.restart()
        api = _api(b)
        assert api.get(f"{api.base}/api/vhost-limits/%2F", timeout=30).json() == [
            {"vhost": "/", "value": {"max-connections": 0}}]
        assert api.get(f"{api.base}/api/user-limits/guest", timeout=30).json() == [
            {"user": "guest", "value": {"max-channels": 4}}]
        code, _ = _refused(b)
        assert code == 530
