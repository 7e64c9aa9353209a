"""/api/topic-permissions, ``warren ctl *_topic_permissions`` and definitions, as RabbitMQ's.

Shapes checked against RabbitMQ's management plugin (``rabbit_mgmt_wm_topic_permission``):
``GET /api/topic-permissions/{vhost}/{user}`` is a list, PUT takes ``exchange``, ``write`` and
``read`` (``[{key_missing,...}]`` when one lacks, ``["invalid_regexp", ...]`` for a pattern
that does not compile, ``vhost_or_user_not_found``), DELETE clears all of the user's in the vhost or,
with ``/{exchange}``, one. What they enforce is tested in ``tests/test_topic_permissions.py``.
"""

from __future__ import annotations

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.broker_process import BrokerProcess
from tests.webconsole.conftest import ApiClient
from tests.webconsole.test_api import assert_error
from tests.webconsole.test_ctl import ctl, rows


def _put(api, user, exchange="amq.topic", write="^a", read=".*", vhost="%2F"):
    return api.put(f"/api/topic-permissions/{vhost}/{user}",
                   {"exchange": exchange, "write": write, "read": read})


def test_crud_and_listings(api, make_user, unique):
    user, _ = make_user()
    assert_error(api.get(f"/api/topic-permissions/%2F/{user}"), 404)
    assert _put(api, user).status_code == 201
    assert _put(api, user, write="^b").status_code == 204          # replaced
    assert _put(api, user, exchange=unique, write="", read="^r").status_code == 201
    mine = api.get(f"/api/topic-permissions/%2F/{user}").json()
    assert mine == [
        {"user": user, "vhost": "/", "exchange": "amq.topic", "write": "^b", "read": ".*"},
        {"user": user, "vhost": "/", "exchange": unique, "write": "", "read": "^r"}]
    assert [p for p in api.get("/api/topic-permissions").json() if p["user"] == user] == mine
    assert api.get(f"/api/users/{user}/topic-permissions").json() == mine
    assert [p for p in api.get("/api/vhosts/%2F/topic-permissions").json()
            if p["user"] == user] == mine
    assert_error(api.get("/api/users/nobody-at-all/topic-permissions"), 404)
    assert_error(api.get("/api/vhosts/no-such-vhost/topic-permissions"), 404)
    # one exchange, then all
    assert api.delete(f"/api/topic-permissions/%2F/{user}/{unique}").status_code == 204
    assert [p["exchange"] for p in
            api.get(f"/api/topic-permissions/%2F/{user}").json()] == ["amq.topic"]
    assert api.delete(f"/api/topic-permissions/%2F/{user}").status_code == 204
    assert_error(api.get(f"/api/topic-permissions/%2F/{user}"), 404)
    assert_error(api.delete(f"/api/topic-permissions/%2F/{user}"), 404)


@pytest.mark.parametrize("body, reason", [
    ({}, "[{key_missing,exchange},{key_missing,write},{key_missing,read}]"),
    ({"exchange": "amq.topic", "write": ".*"}, "[{key_missing,read}]"),
    # RabbitMQ 3.10 answers ["invalid_regexp","(",[[109,105,115,115,105,110,103,32,41],1]]
    # (PCRE's "missing )" at offset 1); the message here is Python's
    ({"exchange": "amq.topic", "write": "(", "read": ".*"},
     ["invalid_regexp", "(", [list(b"missing ), unterminated subpattern"), 0]]),
    ({"exchange": "amq.topic", "write": ".*", "read": "[a"},
     ["invalid_regexp", "[a", [list(b"unterminated character set"), 0]]),
    ({"exchange": 5, "write": ".*", "read": ".*"}, "exchange must be a string, got 5"),
])
def test_bad_bodies_are_400_and_change_nothing(api, make_user, body, reason):
    user, _ = make_user()
    r = api.put(f"/api/topic-permissions/%2F/{user}", body)
    assert assert_error(r, 400, "bad_request")["reason"] == reason
    assert_error(api.get(f"/api/topic-permissions/%2F/{user}"), 404)


def test_unknown_user_or_vhost(api, make_user):
    user, _ = make_user()
    body = assert_error(_put(api, "nobody-at-all"), 400, "bad_request")
    assert body["reason"] == "vhost_or_user_not_found"
    assert assert_error(_put(api, user, vhost="no-such-vhost"), 400)["reason"] == \
        "vhost_or_user_not_found"
    assert_error(api.get("/api/topic-permissions/%2F/nobody-at-all"), 404)


def test_administrators_only(api, broker, make_user):
    target, _ = make_user()
    for tags in ("management", "monitoring", "policymaker"):
        name, password = make_user(tags)
        other = ApiClient(broker.http_url, auth=(name, password))
        assert other.get("/api/topic-permissions").status_code == 403
        assert other.get(f"/api/users/{target}/topic-permissions").status_code == 403
        assert _put(other, target).status_code == 403
    assert_error(api.get(f"/api/topic-permissions/%2F/{target}"), 404)


def test_deleting_the_user_or_vhost_drops_them(api, make_user, unique):
    user, _ = make_user()
    assert api.put(f"/api/vhosts/{unique}").status_code == 201
    assert api.put(f"/api/permissions/{unique}/{user}",
                   {"configure": ".*", "write": ".*", "read": ".*"}).status_code == 201
    assert _put(api, user, vhost=unique).status_code == 201
    assert _put(api, user).status_code == 201
    assert api.delete(f"/api/vhosts/{unique}").status_code == 204
    assert [p["vhost"] for p in api.get(f"/api/users/{user}/topic-permissions").json()] == ["/"]
    assert api.delete(f"/api/users/{user}").status_code == 204
    assert [p for p in api.get("/api/topic-permissions").json() if p["user"] == user] == []


def test_definitions_export_and_import(api, make_user):
    user, _ = make_user()
    assert _put(api, user, write="^{username}\\.", read="^r").status_code == 201
    defs = api.get("/api/definitions").json()
    exported = [p for p in defs["topic_permissions"] if p["user"] == user]
    assert exported == [{"user": user, "vhost": "/", "exchange": "amq.topic",
                         "write": "^{username}\\.", "read": "^r"}]
    assert api.delete(f"/api/topic-permissions/%2F/{user}").status_code == 204
    # RabbitMQ's file shape imports back
    doc = {"users": [], "vhosts": [], "permissions": [], "topic_permissions": exported}
    assert api.post("/api/definitions", doc).status_code == 204
    assert api.get(f"/api/topic-permissions/%2F/{user}").json() == exported
    bad = {"topic_permissions": [dict(exported[0], write="(")]}
    assert_error(api.post("/api/definitions", bad), 400)
    lacking = {"topic_permissions": [{"user": user, "vhost": "/", "write": ".*"}]}
    assert_error(api.post("/api/definitions", lacking), 400)
    assert api.get(f"/api/topic-permissions/%2F/{user}").json() == exported


def test_console_publish_refused_as_rabbitmq(api, broker, make_user):
    """RabbitMQ publishes for the console on a channel and answers its closing with 400 and
    "<code> <reply text>" (checked against 3.10)."""
    user, password = make_user("management")
    assert _put(api, user, write="^ok\\.").status_code == 201
    as_user = ApiClient(broker.http_url, auth=(user, password))
    body = {"routing_key": "ok.x", "payload": "p", "payload_encoding": "string",
            "properties": {}}
    r = as_user.post("/api/exchanges/%2F/amq.topic/publish", body)
    assert r.status_code == 200 and r.json() == {"routed": False}
    r = as_user.post("/api/exchanges/%2F/amq.topic/publish", dict(body, routing_key="no.x"))
    assert assert_error(r, 400, "bad_request")["reason"] == (
        "403 ACCESS_REFUSED - write access to topic 'no.x' in exchange 'amq.topic' in vhost "
        f"'/' refused for user '{user}'")


def test_ctl_set_list_clear(broker, api, make_user, unique):
    user, _ = make_user()
    ctl(broker, "set_topic_permissions", user, "amq.topic", "^a\\.", "^b\\.")
    ctl(broker, "set_topic_permissions", user, unique, ".*", ".*")
    listed = [r for r in rows(ctl(broker, "list_topic_permissions").stdout) if r[0] == user]
    assert listed == [[user, "amq.topic", "^a\\.", "^b\\."], [user, unique, ".*", ".*"]]
    ctl(broker, "clear_topic_permissions", user, unique)
    assert [p["exchange"] for p in api.get(f"/api/users/{user}/topic-permissions").json()] == \
        ["amq.topic"]
    ctl(broker, "clear_topic_permissions", user)
    assert api.get(f"/api/users/{user}/topic-permissions").json() == []
    bad = ctl(broker, "set_topic_permissions", user, "amq.topic", "(", ".*", check=False)
    assert bad.returncode == 2
    assert bad.stderr == ("Error: invalid regular expression '(': missing ), unterminated "
                          "subpattern at position 0\n")


@pytest.mark.parametrize("store", ["journal", "sqlite"])
def test_topic_permissions_survive_a_restart(tmp_path, store):
    args = {} if store == "journal" else {"store": "sql",
                                          "store_url": f"sqlite:///{tmp_path}/defs.db"}
    with BrokerProcess(tmp_path / "data", **args) as b:
        api = ApiClient(b.http_url)
        assert api.put("/api/users/tp-user", {"password": "pw", "tags": ""}).status_code == 201
        assert api.put("/api/permissions/%2F/tp-user",
                       {"configure": ".*", "write": ".*", "read": ".*"}).status_code == 201
        assert _put(api, "tp-user", write="^ok\\.").status_code == 201
        assert _put(api, "tp-user", exchange="gone", write="^x").status_code == 201
        assert api.delete("/api/topic-permissions/%2F/tp-user/gone").status_code == 204
        b.restart()
        assert [p["exchange"] for p in api.get("/api/topic-permissions").json()] == \
            ["amq.topic"]
        assert api.get("/api/topic-permissions/%2F/tp-user").json()[0]["write"] == "^ok\\."
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            port=b.amqp_port, credentials=pika.PlainCredentials("tp-user", "pw")))
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.basic_publish("amq.topic", "ok.x", b"allowed")
            with pytest.raises(ChannelClosedByBroker) as e:
                ch.basic_publish("amq.topic", "no.x", b"refused")
            assert e.value.reply_code == 403
        finally:
            conn.close()
        assert not [line for line in b.lines if "Traceback" in line]
