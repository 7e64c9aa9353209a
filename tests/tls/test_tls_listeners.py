"""TLS listeners (AMQPS, STOMP+TLS, MQTTS, HTTPS) with a certificate made for the test.

A throw-away CA signs a server certificate for 127.0.0.1/localhost; each real client verifies
the broker against that CA, so these tests fail if the broker serves the wrong certificate or
speaks plain TCP on a TLS port.
"""

from __future__ import annotations

import socket
import ssl
import threading

import paho.mqtt.client as mqtt
import pika
import pytest
import requests
import stomp

from tests.broker_process import BrokerProcess, free_port
from tests.tls.pki import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory, pki):
    ports = {name: free_port() for name in ("amqps", "stomps", "mqtts", "https")}
    proc = BrokerProcess(tmp_path_factory.mktemp("tlsbroker"), extra_args=[
        "--tls-cert", pki["cert"], "--tls-key", pki["key"],
        "--amqps-port", str(ports["amqps"]), "--stomps-port", str(ports["stomps"]),
        "--mqtts-port", str(ports["mqtts"]), "--https-port", str(ports["https"])])
    proc.start()
    proc.tls_ports = ports
    yield proc
    proc.stop()


def _client_context(pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=pki["ca"])


def test_each_tls_listener_logs_its_port(tls_broker):
    for label, key in (("AMQP 0-9-1 and 1.0 over TLS", "amqps"), ("STOMP over TLS", "stomps"),
                       ("MQTT over TLS", "mqtts"), ("HTTP API over TLS", "https")):
        tls_broker.wait_for_line(f"{label} listening on 127.0.0.1:{tls_broker.tls_ports[key]}")


def test_amqps_with_pika_verifies_and_round_trips(tls_broker, pki, unique):
    params = pika.ConnectionParameters(
        host="localhost", port=tls_broker.tls_ports["amqps"],
        ssl_options=pika.SSLOptions(_client_context(pki), "localhost"))
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.queue_declare(unique)
    ch.basic_publish("", unique, b"over tls")
    _m, _p, body = ch.basic_get(unique, auto_ack=True)
    assert body == b"over tls"
    conn.close()


def test_amqps_refuses_a_client_that_does_not_trust_the_ca(tls_broker):
    ctx = ssl.create_default_context()  # system CAs only: our test CA is unknown
    params = pika.ConnectionParameters(host="localhost", port=tls_broker.tls_ports["amqps"],
                                       ssl_options=pika.SSLOptions(ctx, "localhost"),
                                       connection_attempts=1)
    with pytest.raises(ssl.SSLCertVerificationError):
        pika.BlockingConnection(params)


def test_plain_amqp_still_served_beside_tls(tls_broker, unique):
    conn = pika.BlockingConnection(pika.URLParameters(tls_broker.amqp_url))
    conn.channel().queue_declare(unique)
    conn.close()


def test_stomp_over_tls(tls_broker, pki, unique):
    got = threading.Event()
    bodies = []

    class Listener(stomp.ConnectionListener):
        def on_message(self, frame):
            bodies.append(frame.body)
            got.set()

    c = stomp.Connection12([("localhost", tls_broker.tls_ports["stomps"])])
    c.set_ssl(for_hosts=[("localhost", tls_broker.tls_ports["stomps"])], ca_certs=pki["ca"])
    c.set_listener("l", Listener())
    c.connect("guest", "guest", wait=True)
    c.subscribe(f"/queue/{unique}", id="1")
    c.send(f"/queue/{unique}", "secret")
    assert got.wait(10)
    assert bodies == ["secret"]
    c.disconnect()


def test_mqtts_with_paho(tls_broker, pki):
    got = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-client")
    client.tls_set(ca_certs=pki["ca"])
    client.username_pw_set("guest", "guest")
    client.on_message = lambda c, u, m: got.set()
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p=None: connected.set()
    client.connect("localhost", tls_broker.tls_ports["mqtts"])
    client.loop_start()
    try:
        assert connected.wait(10)
        sub = threading.Event()
        client.on_subscribe = lambda *a: sub.set()
        client.subscribe("tls/topic", qos=1)
        assert sub.wait(10)
        client.publish("tls/topic", b"x", qos=1)
        assert got.wait(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_https_api(tls_broker, pki):
    r = requests.get(f"https://localhost:{tls_broker.tls_ports['https']}/api/overview",
                     auth=("guest", "guest"), verify=pki["ca"], timeout=30)
    assert r.status_code == 200
    assert "node" in r.json()


def test_unreadable_certificate_stops_start_with_a_reason(tmp_path):
    proc = BrokerProcess(tmp_path, extra_args=["--tls-cert", str(tmp_path / "missing.pem"),
                                               "--tls-key", str(tmp_path / "missing.key")])
    proc.start(wait=False)
    proc.wait_for_line("cannot read TLS certificate")
    assert proc.proc.wait(30) != 0


def test_certificate_expiration_and_tls_listener_health_checks(tls_broker, pki):
    """RabbitMQ's /api/health/checks/certificate-expiration: the test certificate expires in a
    day, so it passes for 0 days and fails (503, every TLS listener listed) for a week."""
    api = requests.Session()
    api.auth = ("guest", "guest")
    base = tls_broker.http_url
    r = api.get(f"{base}/api/health/checks/certificate-expiration/0/days", timeout=30)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    r = api.get(f"{base}/api/health/checks/certificate-expiration/1/weeks", timeout=30)
    assert r.status_code == 503
    body = r.json()
    assert (body["status"], body["reason"]) == ("failed", "Certificates expiring")
    listed = {(e["protocol"], e["port"]) for e in body["expired"]}
    ports = tls_broker.tls_ports
    assert listed == {("amqp/ssl", ports["amqps"]), ("stomp/ssl", ports["stomps"]),
                      ("mqtt/ssl", ports["mqtts"]), ("https", ports["https"]),
                      ("https/web-stomp", tls_broker.web_stomp_tls_port),
                      ("https/web-mqtt", tls_broker.web_mqtt_tls_port)}
    expiry = body["expired"][0]
    assert expiry["certfile"] == pki["cert"] and len(expiry["certfile_expires_on"]) == 1
    assert expiry["cacertfile_expires_on"] == []
    for name, protocol in (("amqps", "amqp/ssl"), ("stomps", "stomp/ssl"),
                           ("mqtt+tls", "mqtt/ssl"), ("https", "https")):
        r = api.get(f"{base}/api/health/checks/protocol-listener/{name}", timeout=30)
        assert r.json() == {"status": "ok", "protocol": protocol}
    r = api.get(f"{base}/api/health/checks/port-listener/{ports['amqps']}", timeout=30)
    assert r.json() == {"status": "ok", "port": ports["amqps"]}


def _handshake(pki, port: int, alpn: list[str]) -> ssl.SSLSocket:
    context = _client_context(pki)
    context.set_alpn_protocols(alpn)
    sock = socket.create_connection(("localhost", port), timeout=10)
    return context.wrap_socket(sock, server_hostname="localhost")


@pytest.mark.parametrize("key", ["amqps", "stomps", "mqtts"])
def test_a_client_offering_alpn_is_served_after_a_browser_was(tls_broker, pki, key):
    """A browser's wss:// handshake agrees on http/1.1 by ALPN; that choice must stay with the
    WebSocket listeners. A client offering ALPN protocols of its own to another TLS listener
    (where the broker, like RabbitMQ, picks none) still gets its handshake."""
    with _handshake(pki, tls_broker.web_stomp_tls_port, ["h2", "http/1.1"]) as browser:
        assert browser.selected_alpn_protocol() == "http/1.1"
    with _handshake(pki, tls_broker.tls_ports[key], ["x-test"]) as client:
        assert client.selected_alpn_protocol() is None
        if key == "amqps":
            client.sendall(b"AMQP\x00\x00\x09\x01")
            assert client.recv(1) == b"\x01"      # a method frame: connection.start
