"""The management API, endpoint by endpoint, with requests (and pika for live connections)."""

from __future__ import annotations

import base64

import pika
import pytest
import requests

from tests.polling import eventually
from tests.webconsole.conftest import ApiClient


def q(s: str) -> str:
    return requests.utils.quote(s, safe="")


def assert_error(r: requests.Response, status: int, error: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "reason"}, body
    if error is not None:
        assert body["error"] == error
    assert "Traceback" not in r.text
    return body


# ------------------------------------------------------------------------------- read-only
def test_overview(api):
    r = api.get("/api/overview")
    assert r.status_code == 200
    o = r.json()
    for key in ("management_version", "rabbitmq_version", "product_name", "node",
                "object_totals", "queue_totals", "message_stats", "listeners", "ha_role"):
        assert key in o
    assert o["ha_role"] == "standalone"  # no --ha: not a master of anything
    assert {"amqp", "http"} <= {listener["protocol"] for listener in o["listeners"]}
    assert "publish_details" in o["message_stats"]


def test_nodes_whoami_extensions_cluster_name(api, broker):
    nodes = api.get("/api/nodes").json()
    assert nodes[0]["name"] == "warren@localhost" and nodes[0]["running"] is True
    assert api.get(f"/api/nodes/{q(nodes[0]['name'])}").json()["type"] == "disc"
    assert_error(api.get("/api/nodes/nobody@nowhere"), 404, "Object Not Found")
    assert api.get("/api/whoami").json() == {"name": "guest", "tags": ["administrator"]}
    assert api.get("/api/extensions").json() == []
    assert api.put("/api/cluster-name", {"name": "warren-test"}).status_code == 204
    assert api.get("/api/cluster-name").json() == {"name": "warren-test"}


def test_health_checks(api):
    for path in ("/api/healthchecks/alarms", "/api/health/checks/alarms"):
        assert api.get(path).json() == {"status": "ok"}
    assert api.get("/api/aliveness-test/%2F").json() == {"status": "ok"}
    assert_error(api.get("/api/aliveness-test/nope"), 404)


def _ok(r: requests.Response) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def test_rabbitmq_health_checks_pass(api, broker):
    """RabbitMQ 3.10's answers on a healthy single node (checked against a real 3.10.8)."""
    for path in ("/api/healthchecks/node", "/api/healthchecks/node/warren%40localhost",
                 "/api/health/checks/alarms", "/api/health/checks/local-alarms",
                 "/api/health/checks/virtual-hosts",
                 "/api/health/checks/certificate-expiration/1/days"):
        assert _ok(api.get(path)) == {"status": "ok"}, path
    for path in ("/api/health/checks/node-is-quorum-critical",
                 "/api/health/checks/node-is-mirror-sync-critical"):
        assert _ok(api.get(path)) == {"status": "ok", "reason": "single node cluster"}
    port = broker.amqp_port
    assert _ok(api.get(f"/api/health/checks/port-listener/{port}")) == {"status": "ok",
                                                                         "port": port}
    for name in ("amqp", "AMQP091", "amqp0-9-1", "stomp", "mqtt", "http", "management"):
        r = _ok(api.get(f"/api/health/checks/protocol-listener/{name}"))
        assert r["status"] == "ok" and r["protocol"] in ("amqp", "stomp", "mqtt", "http")
    assert_error(api.get("/api/healthchecks/node/nobody%40nowhere"), 404, "Object Not Found")


def test_rabbitmq_health_checks_fail_with_503_and_reason(api, broker):
    r = api.get("/api/health/checks/port-listener/1")
    assert r.status_code == 503
    body = r.json()
    assert (body["status"], body["reason"], body["missing"]) == ("failed", "No active listener",
                                                                 1)
    assert broker.amqp_port in body["ports"] and broker.http_port in body["ports"]
    r = api.get("/api/health/checks/protocol-listener/foo")
    assert r.status_code == 503
    body = r.json()
    assert (body["status"], body["reason"], body["missing"]) == ("failed", "No active listener",
                                                                 "foo")
    assert {"amqp", "stomp", "mqtt", "http"} <= set(body["protocols"])
    body = assert_error(api.get("/api/health/checks/port-listener/abc"), 400, "bad_request")
    assert body["reason"] == "Invalid port"
    body = assert_error(api.get("/api/health/checks/certificate-expiration/x/days"), 400)
    assert body["reason"] == "Invalid expiration value."
    body = assert_error(api.get("/api/health/checks/certificate-expiration/1/fortnights"), 400)
    assert body["reason"] == ("Time unit not recognised. Supported units: days, weeks, "
                              "months, years.")


def test_alarm_health_checks_are_503_while_publishers_are_blocked(tmp_path):
    from tests.broker_process import BrokerProcess
    with BrokerProcess(tmp_path, extra_args=["--memory-high-watermark", "1000000"]) as b:
        api = ApiClient(b.http_url)
        assert _ok(api.get("/api/health/checks/alarms")) == {"status": "ok"}
        assert api.put("/api/queues/%2F/big", {}).status_code == 201
        r = api.post("/api/exchanges/%2F/amq.default/publish",
                     {"routing_key": "big", "payload": "x" * 2_000_000, "properties": {},
                      "payload_encoding": "string"})
        assert r.json() == {"routed": True}
        alarm = [{"node": "warren@localhost", "resource": "memory"}]
        r = api.get("/api/health/checks/alarms")
        assert (r.status_code, r.json()) == (503, {
            "alarms": alarm, "reason": "There are alarms in effect in the cluster",
            "status": "failed"})
        r = api.get("/api/health/checks/local-alarms")
        assert (r.status_code, r.json()) == (503, {
            "alarms": alarm, "reason": "There are alarms in effect on the node",
            "status": "failed"})
        r = api.get("/api/healthchecks/node")
        assert (r.status_code, r.json()) == (503, {
            "status": "failed",
            "reason": "resource alarm(s) in effect:[{resource_limit,memory,warren@localhost}]"})
        assert api.delete("/api/queues/%2F/big/contents").status_code == 204
        assert _ok(api.get("/api/health/checks/alarms")) == {"status": "ok"}
        assert _ok(api.get("/api/healthchecks/node")) == {"status": "ok"}


def test_users_bulk_delete(api):
    for name in ("bulk-a", "bulk-b", "bulk-c"):
        assert api.put(f"/api/users/{name}", {"password": "x", "tags": ""}).status_code == 201
    # the literal path is not taken for a user named "bulk-delete"
    assert api.post("/api/users/bulk-delete", {"users": ["bulk-a", "bulk-b"]}).status_code == 204
    names = {u["name"] for u in api.get("/api/users").json()}
    assert not {"bulk-a", "bulk-b"} & names and "bulk-c" in names
    # as RabbitMQ: in order, stopping at the first unknown user
    r = api.post("/api/users/bulk-delete", {"users": ["bulk-c", "nobody-here", "guest"]})
    assert (r.status_code, r.json()) == (400, {"error": "bad_request",
                                               "reason": ["no_such_user", "nobody-here"]})
    names = {u["name"] for u in api.get("/api/users").json()}
    assert "bulk-c" not in names and "guest" in names
    body = assert_error(api.post("/api/users/bulk-delete", {}), 400, "bad_request")
    assert body["reason"] == "[{key_missing,users}]"
    r = api.get("/api/users/bulk-delete")          # the literal path's, as RabbitMQ: 405
    assert (r.status_code, r.headers["Allow"]) == (405, "POST")


def test_rabbitmq_endpoints_tools_call(api, broker):
    """RabbitMQ 3.10 endpoints warren answers as a single RabbitMQ node does."""
    assert requests.get(broker.http_url + "/api/auth", timeout=30).json() == {
        "enable_uaa": False, "uaa_client_id": "", "uaa_location": ""}
    for path in ("/api/feature-flags", "/api/operator-policies", "/api/operator-policies/%2F",
                 "/api/vhost-limits", "/api/vhost-limits/%2F", "/api/user-limits",
                 "/api/user-limits/guest", "/api/topic-permissions",
                 "/api/users/guest/topic-permissions", "/api/vhosts/%2F/topic-permissions"):
        assert _ok(api.get(path)) == [], path
    assert_error(api.get("/api/operator-policies/%2F/nope"), 404)
    assert_error(api.get("/api/users/nobody-here/topic-permissions"), 404)
    assert api.put("/api/users/lonely-user", {"password": "x", "tags": ""}).status_code == 201
    try:
        alone = [u["name"] for u in _ok(api.get("/api/users/without-permissions"))]
        assert "lonely-user" in alone and "guest" not in alone
    finally:
        api.delete("/api/users/lonely-user")
    memory = _ok(api.get("/api/nodes/warren%40localhost/memory"))["memory"]
    assert memory["strategy"] == "rss" and memory["total"]["rss"] > 0
    assert {"binary", "queue_procs", "other_proc", "connection_readers", "mnesia"} <= set(memory)
    assert_error(api.get("/api/nodes/nobody%40nowhere/memory"), 404)
    relative = _ok(api.get("/api/nodes/warren%40localhost/memory/relative"))["memory"]
    assert relative["total"] == 100 and 0 <= relative["other_proc"] <= 100
    assert_error(api.get("/api/topic-permissions/%2F/guest"), 404)
    assert api.post("/api/vhosts/%2F/start/warren%40localhost").status_code == 204
    body = assert_error(api.post("/api/vhosts/nope/start/warren%40localhost"), 400)
    assert body["reason"] == ('Request to node warren@localhost failed with '
                              '{no_such_vhost,<<"nope">>}')
    body = assert_error(api.post("/api/vhosts/%2F/start/x%40y"), 400)
    assert body["reason"] == "Request to node x@y failed with nodedown"
    assert api.post("/api/rebalance/queues").status_code == 204
    old_name = _ok(api.get("/api/all-configuration"))
    assert {"queues", "exchanges", "bindings", "users", "vhosts"} <= set(old_name)


# ------------------------------------------------------------------------------- queues
def test_queue_lifecycle(api, unique):
    path = f"/api/queues/%2F/{q(unique)}"
    assert api.put(path, {"durable": True, "arguments": {"x-max-length": 5}}).status_code == 201
    assert api.put(path, {"durable": True, "arguments": {"x-max-length": 5}}).status_code == 204
    info = api.get(path).json()
    assert info["name"] == unique and info["durable"] is True
    assert info["arguments"] == {"x-max-length": 5}
    for key in ("messages", "messages_ready", "messages_unacknowledged", "consumers",
                "memory", "message_stats"):
        assert key in info
    assert any(x["name"] == unique for x in api.get("/api/queues").json())
    assert any(x["name"] == unique for x in api.get("/api/queues/%2F").json())
    # inequivalent redeclare: 400 with the AMQP text
    body = assert_error(api.put(path, {"durable": False}), 400, "bad_request")
    assert "inequivalent arg 'durable'" in body["reason"]
    assert api.delete(path).status_code == 204
    assert_error(api.get(path), 404, "Object Not Found")
    assert_error(api.delete(path), 404)


def test_publish_get_ackmodes_and_purge(api, unique):
    qpath = f"/api/queues/%2F/{q(unique)}"
    api.put(qpath, {"durable": False})
    pub = "/api/exchanges/%2F/amq.default/publish"
    for i in range(3):
        r = api.post(pub, {"routing_key": unique, "payload": f"m{i}", "payload_encoding": "string",
                           "properties": {"headers": {"n": i}, "delivery_mode": 2}})
        assert r.json() == {"routed": True}
    assert api.post(pub, {"routing_key": "no-such-queue-" + unique, "payload": "x",
                          "properties": {}}).json() == {"routed": False}
    raw = bytes(range(256))
    assert api.post(pub, {"routing_key": unique, "payload": base64.b64encode(raw).decode(),
                          "payload_encoding": "base64", "properties": {}}).json()["routed"]

    got = api.post(qpath + "/get", {"count": 2, "ackmode": "ack_requeue_true",
                                    "encoding": "auto"}).json()
    assert [m["payload"] for m in got] == ["m0", "m1"]
    assert got[0]["properties"]["headers"] == {"n": 0}
    assert got[0]["properties"]["delivery_mode"] == 2
    assert got[0]["payload_encoding"] == "string" and got[0]["payload_bytes"] == 2
    assert api.get(qpath).json()["messages"] == 4          # requeued
    again = api.post(qpath + "/get", {"count": 1, "ackmode": "ack_requeue_false",
                                      "encoding": "auto"}).json()
    assert again[0]["payload"] == "m0" and again[0]["redelivered"] is True
    b64 = api.post(qpath + "/get", {"count": 1, "ackmode": "reject_requeue_true",
                                    "encoding": "base64", "truncate": 1}).json()
    assert b64[0]["payload_encoding"] == "base64"
    assert base64.b64decode(b64[0]["payload"]) == b"m" and b64[0]["payload_bytes"] == 2
    rest = api.post(qpath + "/get", {"count": 10, "ackmode": "reject_requeue_false",
                                     "encoding": "auto"}).json()
    assert [m["payload_encoding"] for m in rest] == ["string", "string", "base64"]
    assert base64.b64decode(rest[2]["payload"]) == raw
    assert api.get(qpath).json()["messages"] == 0
    api.post(pub, {"routing_key": unique, "payload": "x", "properties": {}})
    assert api.delete(qpath + "/contents").status_code == 204
    assert api.get(qpath).json()["messages_ready"] == 0
    api.delete(qpath)


def test_get_and_publish_bad_arguments(api, unique):
    qpath = f"/api/queues/%2F/{q(unique)}"
    api.put(qpath, {})
    assert_error(api.post(qpath + "/get", {"count": "many", "ackmode": "ack_requeue_true"}),
                 400, "bad_request")
    assert_error(api.post(qpath + "/get", {"count": 1, "ackmode": "keep"}), 400)
    assert_error(api.post(qpath + "/get", {"count": 1, "encoding": "rot13"}), 400)
    pub = "/api/exchanges/%2F/amq.default/publish"
    assert_error(api.post(pub, {"routing_key": unique, "payload": "x",
                                "properties": {"delivery_mode": "fast"}}), 400)
    assert_error(api.post(pub, {"routing_key": unique, "payload": "%%%",
                                "payload_encoding": "base64", "properties": {}}), 400)
    assert_error(api.post(pub, {"routing_key": unique}), 400)
    assert_error(api.put(qpath, {"durable": "perhaps"}), 400)
    assert_error(api.put(qpath, {"arguments": "x-max-length=1"}), 400)
    assert_error(api.put(f"/api/queues/%2F/{q(unique)}-2",
                         {"arguments": {"x-max-length": "ten"}}), 400)
    api.delete(qpath)


def test_move_messages(api, unique):
    src, dst = f"/api/queues/%2F/{q(unique)}-a", f"/api/queues/%2F/{q(unique)}-b"
    api.put(src, {"durable": True})
    api.put(dst, {"durable": True})
    for i in range(5):
        api.post("/api/exchanges/%2F/amq.default/publish",
                 {"routing_key": unique + "-a", "payload": str(i),
                  "properties": {"delivery_mode": 2}})
    r = api.post(src + "/actions/move", {"destination": unique + "-b", "count": 2})
    assert r.json() == {"moved": 2}
    assert api.post(src + "/actions/move", {"destination": unique + "-b"}).json() == {"moved": 3}
    got = api.post(dst + "/get", {"count": 5, "ackmode": "ack_requeue_true"}).json()
    assert [m["payload"] for m in got] == ["0", "1", "2", "3", "4"]
    assert api.get(src).json()["messages"] == 0
    assert_error(api.post(src + "/actions/move", {"destination": "nope-" + unique}), 404)
    assert_error(api.post(src + "/actions/move", {"destination": unique + "-b",
                                                  "count": "x"}), 400)
    api.delete(src)
    api.delete(dst)


# ------------------------------------------------------------------------------- exchanges
def test_exchange_lifecycle_and_bindings(api, unique):
    ex = f"/api/exchanges/%2F/{q(unique)}"
    qpath = f"/api/queues/%2F/{q(unique)}"
    assert api.put(ex, {"type": "topic", "durable": True}).status_code == 201
    assert api.put(ex, {"type": "topic", "durable": True}).status_code == 204
    assert api.get(ex).json()["type"] == "topic"
    assert_error(api.put(ex, {"type": "fanout"}), 400)
    assert_error(api.put(f"/api/exchanges/%2F/{q(unique)}-x", {"type": "nonsense"}), 400)
    assert_error(api.put(f"/api/exchanges/%2F/{q(unique)}-x", {}), 400)
    assert_error(api.put("/api/exchanges/%2F/amq.newone", {"type": "direct"}), 403)
    assert api.get("/api/exchanges/%2F/amq.default").json()["name"] == ""
    api.put(qpath, {})

    bpath = f"/api/bindings/%2F/e/{q(unique)}/q/{q(unique)}"
    r = api.post(bpath, {"routing_key": "a.#", "arguments": {}})
    assert r.status_code == 201 and r.headers["Location"] == "a.%23"
    r = api.post(bpath, {"routing_key": "b", "arguments": {"x-k": "v"}})
    assert r.status_code == 201
    listed = api.get(bpath).json()
    assert {b["routing_key"] for b in listed} == {"a.#", "b"}
    props = {b["routing_key"]: b["properties_key"] for b in listed}
    assert props["a.#"] == "a.%23" and props["b"].startswith("b~")
    assert api.get(f"{bpath}/{q(props['b'])}").json()["arguments"] == {"x-k": "v"}
    assert api.get(f"{ex}/bindings/source").json()[0]["destination"] == unique
    assert {b["source"] for b in api.get(f"{qpath}/bindings").json()} == {"", unique}
    assert any(b["source"] == unique for b in api.get("/api/bindings/%2F").json())
    assert api.post("/api/exchanges/%2F/" + q(unique) + "/publish",
                    {"routing_key": "a.x", "payload": "p", "properties": {}}).json() == \
        {"routed": True}
    # exchange to exchange
    api.put(ex + "-dst", {"type": "fanout", "durable": False})
    e2e = f"/api/bindings/%2F/e/{q(unique)}/e/{q(unique)}-dst"
    assert api.post(e2e, {"routing_key": "k"}).status_code == 201
    assert api.get(f"{ex}-dst/bindings/destination").json()[0]["source"] == unique
    assert api.delete(f"{e2e}/k").status_code == 204
    assert api.get(e2e).json() == []
    # delete by packed key (as rabbitmqadmin sends it, quoted once more)
    assert api.delete(f"{bpath}/{q(props['a.#'])}").status_code == 204
    assert api.delete(f"{bpath}/{q(props['b'])}").status_code == 204
    assert_error(api.delete(f"{bpath}/{q(props['b'])}"), 404)
    assert api.get(bpath).json() == []
    assert_error(api.post(f"/api/bindings/%2F/e/{q(unique)}/q/nope", {}), 404)
    assert_error(api.post(f"/api/bindings/%2F/e/amq.default/q/{q(unique)}", {}), 403)
    assert api.delete(ex).status_code == 204
    assert api.delete(ex + "-dst").status_code == 204
    assert_error(api.delete(ex), 404)
    api.delete(qpath)


# ------------------------------------------------------------------------------- access
def test_vhosts_users_permissions(api, unique):
    vpath = f"/api/vhosts/{q(unique)}"
    assert api.put(vpath, {"description": "test vhost", "tags": "a,b"}).status_code == 201
    assert api.put(vpath, {"description": "test vhost"}).status_code == 204
    assert api.get(vpath).json()["description"] == "test vhost"
    user = f"/api/users/{q(unique)}"
    assert api.put(user, {"password": "secret", "tags": "management"}).status_code == 201
    info = api.get(user).json()
    assert info["tags"] == ["management"] and info["password_hash"]
    perm = f"/api/permissions/{q(unique)}/{q(unique)}"
    assert api.put(perm, {"configure": "^x", "write": ".*", "read": ""}).status_code == 201
    assert api.get(perm).json()["configure"] == "^x"
    assert api.get(f"{user}/permissions").json()[0]["vhost"] == unique
    # the creator (guest) got full permissions on the new vhost, as in RabbitMQ
    assert {p["user"] for p in api.get(f"{vpath}/permissions").json()} == {unique, "guest"}
    assert any(p["user"] == unique for p in api.get("/api/permissions").json())
    assert_error(api.put(perm, {"configure": "(", "write": "", "read": ""}), 400)
    assert_error(api.put(f"/api/permissions/nope-{q(unique)}/{q(unique)}",
                         {"configure": "", "write": "", "read": ""}), 400)
    # password_hash round trip: the same hash logs in with the same password
    h = info["password_hash"]
    assert api.put(user, {"password_hash": h, "tags": ["management"]}).status_code == 204
    me = ApiClient(api.base, (unique, "secret"))
    assert me.get("/api/whoami").json() == {"name": unique, "tags": ["management"]}
    assert [v["name"] for v in me.get("/api/vhosts").json()] == [unique]
    assert [p["user"] for p in me.get(f"{vpath}/permissions").json()] == [unique]
    assert_error(api.put(user, {"tags": 5}), 400)
    assert_error(api.put(f"/api/users/{q(unique)}-new", {"tags": ""}), 400)
    assert api.delete(perm).status_code == 204
    assert_error(api.get(perm), 404)
    assert api.delete(user).status_code == 204
    assert_error(api.get(user), 404)
    assert api.delete(vpath).status_code == 204
    assert_error(api.get(vpath), 404)
    assert_error(api.get(f"/api/queues/{q(unique)}"), 404)


def test_policies(api, unique):
    path = f"/api/policies/%2F/{q(unique)}"
    body = {"pattern": f"^{unique}", "definition": {"max-length": 1}, "priority": 3,
            "apply-to": "queues"}
    assert api.put(path, body).status_code == 201
    assert api.put(path, body).status_code == 204
    got = api.get(path).json()
    assert got["definition"] == {"max-length": 1} and got["apply-to"] == "queues"
    assert any(p["name"] == unique for p in api.get("/api/policies/%2F").json())
    qpath = f"/api/queues/%2F/{q(unique)}"
    api.put(qpath, {})
    assert api.get(qpath).json()["policy"] == unique
    assert_error(api.put(path, {**body, "definition": {"no-such-key": 1}}), 400)
    assert_error(api.put(path, {**body, "pattern": "("}), 400)
    assert_error(api.put(path, {**body, "priority": "high"}), 400)
    assert api.delete(path).status_code == 204
    assert_error(api.delete(path), 404)
    api.delete(qpath)


def test_definitions_per_vhost_export_and_import(api, unique):
    api.put(f"/api/queues/%2F/{q(unique)}", {"durable": True})
    defs = api.get("/api/definitions/%2F").json()
    assert any(x["name"] == unique for x in defs["queues"])
    assert "users" not in defs and all("vhost" not in x for x in defs["queues"])
    api.put(f"/api/vhosts/{q(unique)}", {})
    assert api.post(f"/api/definitions/{q(unique)}", defs).status_code == 204
    assert api.get(f"/api/queues/{q(unique)}/{q(unique)}").status_code == 200
    assert_error(api.post("/api/definitions", {"queues": "lots"}), 400)
    assert_error(api.post("/api/definitions", [1, 2]), 400)
    api.delete(f"/api/vhosts/{q(unique)}")
    api.delete(f"/api/queues/%2F/{q(unique)}")


# ------------------------------------------------------------------------------- connections
def test_connections_channels_consumers_and_close(api, broker, unique):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        ch = conn.channel()
        ch.queue_declare(unique, auto_delete=True)
        ch.basic_consume(unique, lambda *a: None, consumer_tag="tag-" + unique)
        conns = api.get("/api/connections").json()
        mine = [c for c in conns if c["user"] == "guest" and c["protocol"] == "AMQP 0-9-1"]
        assert mine
        name = mine[-1]["name"]
        assert api.get(f"/api/connections/{q(name)}").json()["name"] == name
        assert api.get(f"/api/connections/{q(name)}/channels").json()
        assert any(c["name"].startswith(name) for c in api.get("/api/channels").json())
        consumers = api.get("/api/consumers/%2F").json()
        assert any(c["consumer_tag"] == "tag-" + unique and c["queue"]["name"] == unique
                   for c in consumers)
        assert api.get(f"/api/queues/%2F/{q(unique)}").json()["consumers"] == 1
        r = api.delete(f"/api/connections/{q(name)}", headers={"X-Reason": "test says bye"})
        assert r.status_code == 204
        with pytest.raises(pika.exceptions.AMQPError):
            for _ in range(100):
                conn.process_data_events(time_limit=0.1)
        # pika has seen the close; the broker forgets the connection once its socket is gone
        eventually(lambda: api.get(f"/api/connections/{q(name)}").status_code == 404,
                   "the closed connection to leave /api/connections")
    finally:
        if conn.is_open:
            conn.close()


# ------------------------------------------------------------------------------- lists
def test_pagination_columns_sort_and_regex(api, unique):
    for i in range(5):
        api.put(f"/api/queues/%2F/{q(unique)}-{i}", {"durable": False})
    page = api.get("/api/queues/%2F", params={"page": 2, "page_size": 2, "name": unique}).json()
    assert page["page"] == 2 and page["page_size"] == 2 and page["filtered_count"] == 5
    assert page["page_count"] == 3 and page["item_count"] == 2
    assert [x["name"] for x in page["items"]] == [f"{unique}-2", f"{unique}-3"]
    cols = api.get("/api/queues/%2F", params={"columns": "name,message_stats.publish",
                                              "name": unique}).json()
    assert set(cols[0]) == {"name", "message_stats"} and set(cols[0]["message_stats"]) == \
        {"publish"}
    rx = api.get("/api/queues/%2F", params={"name": f"{unique}-[13]$", "use_regex": "true",
                                            "sort": "name", "sort_reverse": "true"}).json()
    assert [x["name"] for x in rx] == [f"{unique}-3", f"{unique}-1"]
    assert_error(api.get("/api/queues/%2F", params={"page": 99}), 400)
    assert_error(api.get("/api/queues/%2F", params={"page": "x"}), 400)
    assert_error(api.get("/api/queues", params={"name": "(", "use_regex": "true"}), 400)
    for i in range(5):
        api.delete(f"/api/queues/%2F/{q(unique)}-{i}")


# ------------------------------------------------------------------------------- errors & auth
def test_errors(api, unique):
    assert_error(api.get("/api/no-such-thing"), 404, "Object Not Found")
    assert_error(api.get("/api/queues/no-such-vhost"), 404)
    assert_error(api.get(f"/api/queues/%2F/{q(unique)}"), 404)
    assert_error(api.get(f"/api/exchanges/%2F/{q(unique)}"), 404)
    r = api.request("PUT", f"/api/queues/%2F/{q(unique)}", data=b"{not json",
                    headers={"Content-Type": "application/json"})
    assert_error(r, 400, "bad_request")
    r = api.request("PUT", f"/api/queues/%2F/{q(unique)}", data=b"[1]",
                    headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    r = api.request("POST", "/api/overview", json={})
    assert_error(r, 405)
    assert "GET" in r.headers["Allow"]
    assert_error(api.request("PATCH", "/api/queues"), 405)
    assert api.get("/api/overview").status_code == 200     # still alive


def test_authentication(api, broker):
    anon = ApiClient(broker.http_url, None)
    r = anon.get("/api/overview")
    assert_error(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert_error(ApiClient(broker.http_url, ("guest", "wrong")).get("/api/overview"), 401)
    assert_error(ApiClient(broker.http_url, ("nobody", "x")).get("/api/queues"), 401)
    r = anon.request("GET", "/api/overview", headers={"Authorization": "Basic !!!"})
    assert_error(r, 401)


def test_tags_decide_access(api, broker, make_user, unique):
    plain = ApiClient(broker.http_url, make_user(""))
    assert_error(plain.get("/api/overview"), 403, "not_authorised")
    mgmt = ApiClient(broker.http_url, make_user("management"))
    assert mgmt.get("/api/overview").status_code == 200
    assert mgmt.get("/api/queues").status_code == 200
    for path in ("/api/users", "/api/permissions", "/api/definitions", "/api/nodes",
                 "/api/policies"):
        assert_error(mgmt.get(path), 403)
    assert_error(mgmt.put(f"/api/vhosts/{q(unique)}", {}), 403)
    assert_error(mgmt.put(f"/api/users/{q(unique)}", {"password": "x", "tags": ""}), 403)
    # a management user may declare in its vhost, within its permissions
    assert mgmt.put(f"/api/queues/%2F/{q(unique)}", {}).status_code == 201
    assert mgmt.delete(f"/api/queues/%2F/{q(unique)}").status_code == 204
    monitor = ApiClient(broker.http_url, make_user("monitoring"))
    assert monitor.get("/api/nodes").status_code == 200
    assert_error(monitor.get("/api/users"), 403)
    pm = ApiClient(broker.http_url, make_user("policymaker"))
    assert pm.put(f"/api/policies/%2F/{q(unique)}",
                  {"pattern": "^zzz", "definition": {"max-length": 1}}).status_code == 201
    assert pm.delete(f"/api/policies/%2F/{q(unique)}").status_code == 204
    # no permissions in the vhost: 403 on resources there
    stranger = ApiClient(broker.http_url, make_user("management", perms=False))
    assert stranger.get("/api/vhosts").json() == []
    assert_error(stranger.get("/api/queues/%2F"), 403)
    # restricted permissions: configure refused by pattern
    name, pw = make_user("management")
    api.put(f"/api/permissions/%2F/{name}", {"configure": "^only-", "write": ".*", "read": ".*"})
    narrow = ApiClient(broker.http_url, (name, pw))
    assert_error(narrow.put(f"/api/queues/%2F/{q(unique)}", {}), 403, "access_refused")


def test_csrf_protection(api, unique):
    path = f"/api/queues/%2F/{q(unique)}"
    # an HTML form post: form content type, no X-Requested-With
    r = api.request("PUT", path, data={"durable": "true"})
    assert r.status_code == 415
    r = api.request("POST", "/api/exchanges/%2F/amq.default/publish",
                    data=b'{"routing_key":"x","payload":"y","properties":{}}',
                    headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    # another site's page, even with JSON
    r = api.put(path, {}, headers={"Origin": "http://evil.example"})
    assert_error(r, 403)
    r = api.delete(path, headers={"Origin": "null"})
    assert_error(r, 403)
    # same origin, or X-Requested-With: fine
    host = api.base.split("//", 1)[1]
    assert api.put(path, {}, headers={"Origin": f"http://{host}"}).status_code == 201
    r = api.request("PUT", path, data=b"{}",
                    headers={"Content-Type": "text/plain", "X-Requested-With": "XMLHttpRequest"})
    assert r.status_code == 204
    assert api.delete(path).status_code == 204


def test_state_changes_are_logged(api, broker, unique):
    api.put(f"/api/queues/%2F/{q(unique)}", {})
    line = broker.wait_for_line(f"PUT /api/queues/%2F/{q(unique)} by user 'guest'")
    assert "-> 201" in line
    api.delete(f"/api/queues/%2F/{q(unique)}")
    broker.wait_for_line(f"DELETE /api/queues/%2F/{q(unique)} by user 'guest'")


def test_publish_to_internal_exchange_is_refused(api, unique):
    """The console publishes through the core's pipeline: same rule, same text as AMQP."""
    api.put(f"/api/exchanges/%2F/{q(unique)}", {"type": "fanout", "internal": True})
    body = assert_error(api.post(f"/api/exchanges/%2F/{q(unique)}/publish",
                                 {"routing_key": "", "payload": "x", "properties": {}}), 403)
    assert f"cannot publish to internal exchange '{unique}' in vhost '/'" in body["reason"]
    api.delete(f"/api/exchanges/%2F/{q(unique)}")


def test_connections_of_a_user_listed_and_closed(api, broker, make_user):
    name, password = make_user("")
    other, other_pw = make_user("management")
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=broker.amqp_port,
        credentials=pika.PlainCredentials(name, password)))
    try:
        listed = api.get(f"/api/connections/username/{name}").json()
        assert [c["user"] for c in listed] == [name]
        assert api.get("/api/connections/username/nobody-here").json() == []
        stranger = ApiClient(broker.http_url, auth=(other, other_pw))
        assert_error(stranger.get(f"/api/connections/username/{name}"), 403)
        assert_error(stranger.delete(f"/api/connections/username/{name}"), 403)
        r = api.delete(f"/api/connections/username/{name}", headers={"X-Reason": "bye"})
        assert r.status_code == 204
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
            conn.process_data_events(time_limit=10)
        assert (e.value.reply_code, e.value.reply_text) == (320, "CONNECTION_FORCED - bye")
        assert api.get(f"/api/connections/username/{name}").json() == []
    finally:
        if conn.is_open:
            conn.close()


def test_publisher_confirms_are_counted(broker, unique):
    """message_stats.confirm and rabbitmq_channel_messages_confirmed_total count the messages
    a publisher got confirms for, as RabbitMQ counts them (they stayed 0 before)."""
    from tests.polling import eventually
    api = ApiClient(broker.http_url)

    def confirmed() -> int:
        return api.get("/api/overview").json().get("message_stats", {}).get("confirm", 0)

    def metric() -> float:
        text = requests.get(broker.http_url + "/metrics", timeout=30).text
        line = [x for x in text.splitlines()
                if x.startswith("rabbitmq_channel_messages_confirmed_total ")]
        return float(line[0].split()[1]) if line else 0.0

    before, before_metric = confirmed(), metric()
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        ch = conn.channel()
        ch.queue_declare(unique)
        ch.confirm_delivery()
        for i in range(5):
            ch.basic_publish("", unique, b"m")
        eventually(lambda: confirmed() >= before + 5, "confirm counted", timeout=20)
        eventually(lambda: metric() >= before_metric + 5, "metric counted", timeout=20)
    finally:
        conn.close()
