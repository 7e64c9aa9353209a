"""``amqps://`` links to warren's TLS listener, with the test CA from ``tests/tls``."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.broker_process import BrokerProcess, free_port


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory, pki):
    port = free_port()
    proc = BrokerProcess(tmp_path_factory.mktemp("tlsbroker"), extra_args=[
        "--tls-cert", pki["cert"], "--tls-key", pki["key"], "--amqps-port", str(port)])
    proc.start()
    proc.amqps_port = port
    yield proc
    proc.stop()


def amqps(broker, query: str) -> str:
    return f"amqps://guest:guest@localhost:{broker.amqps_port}/%2F?{query}"


def test_amqps_verifies_the_broker_against_cacertfile(tls_broker, pki, unique, link_driver):
    link = link_driver(amqps(tls_broker, f"cacertfile={quote(pki['ca'])}&verify=verify_peer"))
    assert link.event("ready")["uri"].startswith("amqps://localhost:")
    link.call("declare_queue", queue=unique)
    assert link.call("publish", routing_key=unique, count=5)["confirmed"] == 5
    assert len(link.call("consume", queue=unique, count=5)["bodies"]) == 5


def test_amqps_refuses_a_broker_it_cannot_verify(tls_broker, link_driver):
    link = link_driver(amqps(tls_broker, "verify=verify_peer"))   # system CAs only
    line = link.event("state", reason=lambda r: "TLS" in (r or ""))
    assert line["state"] == "starting"
    assert line["reason"] == (f"TLS handshake with localhost:{tls_broker.amqps_port} failed: "
                              f"certificate verify failed")
    assert link.call("status")["connects"] == 0


def test_amqps_verify_none_connects_without_a_ca(tls_broker, link_driver):
    link = link_driver(amqps(tls_broker, "verify=verify_none"))
    link.event("ready")


def test_amqps_missing_certificate_file_is_a_reason_not_a_crash(tls_broker, link_driver):
    link = link_driver(amqps(tls_broker, "cacertfile=/nonexistent/ca.pem"))
    line = link.event("state", reason=lambda r: "TLS setup" in (r or ""))
    assert "/nonexistent/ca.pem" in line["reason"]
