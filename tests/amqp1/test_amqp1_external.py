"""SASL EXTERNAL for AMQP 1.0 on the AMQPS port: the client certificate names the user (the
same name as for 0-9-1's EXTERNAL, ``cert_login.py``); refused without a certificate, for a
user who does not exist, and not offered without TLS."""

from __future__ import annotations

import pytest
from proton import ConnectionException, Message, SSLDomain
from proton.utils import BlockingConnection

from tests.tls.test_cert_login import DN, _add_user, _start, pki  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory, pki):  # noqa: F811
    proc = _start(tmp_path_factory, pki)
    _add_user(proc, DN)
    yield proc
    proc.stop()


def _domain(pki, client: str | None) -> SSLDomain:  # noqa: F811
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    domain.set_trusted_ca_db(pki["ca"])
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    if client:
        domain.set_credentials(pki[client]["cert"], pki[client]["key"], None)
    return domain


def _connect(broker, pki, client: str | None):  # noqa: F811
    return BlockingConnection(f"amqps://localhost:{broker.tls_ports['amqps']}",
                              ssl_domain=_domain(pki, client), allowed_mechs="EXTERNAL",
                              timeout=30)


def test_external_logs_in_as_the_certificates_name(tls_broker, pki, unique):  # noqa: F811
    conn = _connect(tls_broker, pki, "client")
    sender = conn.create_sender(f"/queue/{unique}")
    sender.send(Message(body=b"by certificate", user_id=DN.encode()))
    receiver = conn.create_receiver(f"/queue/{unique}")
    got = receiver.receive(timeout=30)
    receiver.accept()
    conn.close()
    # user-id is checked against the logged-in user by the core: it passed, so the login is DN
    assert bytes(got.body) == b"by certificate" and got.user_id == DN.encode()


@pytest.mark.parametrize("client", [None, "unknown"])
def test_external_refused(tls_broker, pki, client):  # noqa: F811
    # no certificate, or one naming no user: SASL fails (RabbitMQ logs why)
    with pytest.raises(ConnectionException):
        _connect(tls_broker, pki, client)


def test_external_not_offered_without_tls(tls_broker):
    with pytest.raises(ConnectionException):
        BlockingConnection(f"amqp://localhost:{tls_broker.amqp_port}",
                           allowed_mechs="EXTERNAL", timeout=30)


def test_zz_refusals_logged_without_traceback(tls_broker):
    log = tls_broker.log()
    assert "connection peer presented no TLS (x.509) certificate" in log
    assert "Traceback" not in log

