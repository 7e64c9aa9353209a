"""wss://: Web-STOMP and Web-MQTT on their TLS ports, with the broker's TLS settings.

The clients verify the broker against the test CA, so these fail if the WebSocket ports serve
plain TCP or the wrong certificate.
"""

from __future__ import annotations

import ssl

import pika
import pytest
import requests

from tests.mqtt.helpers import Client, cid
from tests.tls.pki import make_pki
from tests.websocket.clients import StompWs, tls_websocket_broker


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory, pki):
    with tls_websocket_broker(tmp_path_factory.mktemp("wss"), pki) as proc:
        yield proc


def context(pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=pki["ca"])


def test_listeners_log_their_tls_ports(tls_broker):
    tls_broker.wait_for_line(
        f"Web-STOMP over TLS listening on 127.0.0.1:{tls_broker.web_stomp_tls_port}")
    tls_broker.wait_for_line(
        f"Web-MQTT over TLS listening on 127.0.0.1:{tls_broker.web_mqtt_tls_port}")


def test_web_stomp_over_wss_with_pika(tls_broker, pki, unique):
    client = StompWs(tls_broker.web_stomp_tls_port, tls=context(pki))
    assert client.connected[0] == "CONNECTED"
    client.send_frame("SUBSCRIBE", {"id": "1", "destination": f"/queue/{unique}",
                                    "receipt": "s"})
    assert client.frame()[0] == "RECEIPT"
    conn = pika.BlockingConnection(pika.URLParameters(tls_broker.amqp_url))
    conn.channel().basic_publish("", unique, b"secure")
    assert client.frame()[::2] == ("MESSAGE", b"secure")
    conn.close()
    client.close()


def test_web_mqtt_over_wss_with_pika(tls_broker, pki):
    topic = cid("wss")
    client = Client(tls_broker.web_mqtt_tls_port, websocket=True, tls=context(pki))
    client.subscribe(f"{topic}/x", 1)
    conn = pika.BlockingConnection(pika.URLParameters(tls_broker.amqp_url))
    conn.channel().basic_publish("amq.topic", f"{topic}.x", b"secure mqtt")
    assert client.get().payload == b"secure mqtt"
    conn.close()
    client.disconnect()


def test_wss_refuses_a_client_that_does_not_trust_the_ca(tls_broker):
    with pytest.raises(ssl.SSLCertVerificationError):
        StompWs(tls_broker.web_stomp_tls_port, tls=ssl.create_default_context())


def test_a_client_offering_alpn_gets_http_1_1(tls_broker, pki):
    """Browsers offer h2 and http/1.1 over ALPN; the handshake must pick http/1.1, not fail."""
    tls = context(pki)
    tls.set_alpn_protocols(["h2", "http/1.1"])
    client = StompWs(tls_broker.web_stomp_tls_port, tls=tls)
    assert client.ws.sock.selected_alpn_protocol() == "http/1.1"
    assert client.connected[0] == "CONNECTED"
    client.close()


@pytest.mark.parametrize("alias, protocol", [("web-mqtt+tls", "https/web-mqtt"),
                                             ("webstomp+ssl", "https/web-stomp")])
def test_protocol_listener_health_check_for_the_tls_ones(tls_broker, alias, protocol):
    r = requests.get(f"{tls_broker.http_url}/api/health/checks/protocol-listener/{alias}",
                     auth=("guest", "guest"), timeout=30)
    assert (r.status_code, r.json()) == (200, {"status": "ok", "protocol": protocol})
