"""The console as an attacker meets it: security headers on every response, no server
version, and only administrators closing other users' connections (RabbitMQ's rule)."""

from __future__ import annotations

import pika
import pytest
import requests

from tests.webconsole.conftest import ApiClient

PATHS = ["/", "/index.html", "/app.js", "/api/overview", "/api/openapi.json", "/metrics",
         "/api/no-such-thing", "/no-such-file"]


@pytest.mark.parametrize("path", PATHS)
def test_every_response_carries_the_security_headers(broker, path):
    r = requests.get(broker.http_url + path, auth=("guest", "guest"), timeout=30)
    h = r.headers
    assert "frame-ancestors 'none'" in h["Content-Security-Policy"], path
    assert "script-src 'self'" in h["Content-Security-Policy"]
    assert h["X-Frame-Options"] == "DENY"
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Server"] == "warren", h["Server"]


def test_unauthenticated_answers_carry_them_too(broker):
    r = requests.get(broker.http_url + "/api/queues", timeout=30)
    assert r.status_code == 401
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Server"] == "warren"


def _connection_name(api: ApiClient, user: str) -> str:
    for _ in range(200):
        named = [c["name"] for c in api.get("/api/connections").json() if c["user"] == user]
        if named:
            return named[0]
        requests.get(api.base + "/api/overview", timeout=30)  # stats catch up between tries
    raise AssertionError(f"no connection of {user} listed")


def test_only_administrators_close_other_users_connections(broker, api, make_user):
    watcher, watcher_pw = make_user(tags="monitoring")
    owner, owner_pw = make_user(tags="management")
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.amqp_port, credentials=pika.PlainCredentials(owner, owner_pw)))
    try:
        name = _connection_name(api, owner)
        quoted = requests.utils.quote(name, safe="")
        r = ApiClient(broker.http_url, (watcher, watcher_pw)).delete(f"/api/connections/{quoted}")
        assert r.status_code == 403, r.text
        assert r.json()["reason"] == "User not authorised to access object"
        conn.process_data_events(time_limit=0)
        assert conn.is_open
        # the owner may close its own connection
        r = ApiClient(broker.http_url, (owner, owner_pw)).delete(f"/api/connections/{quoted}")
        assert r.status_code == 204
    finally:
        if conn.is_open:
            try:
                conn.close()
            except pika.exceptions.AMQPError:
                pass


def test_administrator_closes_any_connection(broker, api, make_user):
    owner, owner_pw = make_user(tags="management")
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.amqp_port, credentials=pika.PlainCredentials(owner, owner_pw)))
    name = _connection_name(api, owner)
    r = api.delete(f"/api/connections/{requests.utils.quote(name, safe='')}")
    assert r.status_code == 204
    with pytest.raises(pika.exceptions.AMQPError):
        for _ in range(200):
            conn.process_data_events(time_limit=0.05)
