"""Logins by client certificate, as RabbitMQ: SASL EXTERNAL on AMQPS
(``rabbit_auth_mechanism_ssl``; AMQP 0-9-1 and 1.0) and ``ssl_cert_login`` for STOMP and MQTT
over TLS.

A throw-away CA signs the server's certificate and the clients'; a second CA plays the
stranger whose certificate the broker must not accept. The certificate's DN (or, with
``--ssl-cert-login-from common_name``, its CN) names a user who must exist; no password.
"""

from __future__ import annotations

import re
import ssl
import threading
from urllib.parse import quote

import paho.mqtt.client as mqtt
import pika
import pytest
import requests
import stomp
from cryptography import x509
from cryptography.x509.oid import NameOID
from pamqp import commands
from proton import ConnectionException, Message, SSLDomain
from proton.utils import BlockingConnection

from tests.amqp.raw_client import PROTOCOL_HEADER, RawAmqp
from tests.broker_process import BrokerProcess, free_port
from tests.polling import eventually
from tests.tls.pki import Authority, common_name

#: the client's subject, C then O then CN in the certificate; a comma in O to be escaped
SUBJECT = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, "warren, tests"),
                     x509.NameAttribute(NameOID.COMMON_NAME, "ext-client")])
#: ...as RabbitMQ renders it: last RDN first, RFC 4514 escapes
DN = "CN=ext-client,O=warren\\, tests,C=GB"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca, stranger = Authority(d), Authority(d, "untrusted CA")
    return {"ca": ca.ca_file,
            "server": ca.issue("server", common_name("localhost"), server=True),
            "client": ca.issue("client", SUBJECT),
            "unknown": ca.issue("unknown", common_name("nobody-by-this-name")),
            "san": ca.issue("san", common_name("not-this"), alt_names=[
                x509.RFC822Name("one@example.org"), x509.DNSName("client.example"),
                x509.RFC822Name("two@example.org")]),
            "untrusted": stranger.issue("untrusted", SUBJECT)}


def _start(tmp_path_factory, pki, *extra: str) -> BrokerProcess:
    ports = {name: free_port() for name in ("amqps", "stomps", "mqtts")}
    proc = BrokerProcess(tmp_path_factory.mktemp("certbroker"), extra_args=[
        "--tls-cert", pki["server"]["cert"], "--tls-key", pki["server"]["key"],
        "--tls-ca", pki["ca"], "--auth-mechanisms", "PLAIN,AMQPLAIN,EXTERNAL",
        "--stomp-ssl-cert-login", "--mqtt-ssl-cert-login",
        "--amqps-port", str(ports["amqps"]), "--stomps-port", str(ports["stomps"]),
        "--mqtts-port", str(ports["mqtts"]), "--https-port", "0", *extra])
    proc.start()
    proc.tls_ports = ports
    return proc


@pytest.fixture(scope="module")
def dn_broker(tmp_path_factory, pki):
    proc = _start(tmp_path_factory, pki)
    _add_user(proc, DN)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def cn_broker(tmp_path_factory, pki):
    proc = _start(tmp_path_factory, pki, "--ssl-cert-login-from", "common_name")
    _add_user(proc, "ext-client")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def san_broker(tmp_path_factory, pki):
    proc = _start(tmp_path_factory, pki, "--ssl-cert-login-from", "subject_alternative_name",
                  "--ssl-cert-login-san-type", "email", "--ssl-cert-login-san-index", "1")
    _add_user(proc, "two@example.org")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def strict_broker(tmp_path_factory, pki):
    """--tls-verify-peer: RabbitMQ's fail_if_no_peer_cert = true."""
    proc = _start(tmp_path_factory, pki, "--tls-verify-peer")
    _add_user(proc, DN)
    yield proc
    proc.stop()


def _add_user(broker: BrokerProcess, name: str) -> None:
    api, user = broker.http_url + "/api", quote(name, safe="")
    r = requests.put(f"{api}/users/{user}", json={"password": "not-used-here", "tags": ""},
                     auth=("guest", "guest"), timeout=30)
    assert r.status_code in (201, 204), r.text
    r = requests.put(f"{api}/permissions/%2F/{user}", auth=("guest", "guest"), timeout=30,
                     json={"configure": ".*", "write": ".*", "read": ".*"})
    assert r.status_code in (201, 204), r.text


def _context(pki, client: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if client:
        ctx.load_cert_chain(pki[client]["cert"], pki[client]["key"])
    return ctx


def _amqps(broker, pki, client: str | None = "client", credentials=None):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="localhost", port=broker.tls_ports["amqps"], connection_attempts=1,
        ssl_options=pika.SSLOptions(_context(pki, client), "localhost"),
        credentials=credentials or pika.credentials.ExternalCredentials()))


def _connection_users(broker, protocol: str = "") -> dict[str, str]:
    """User -> AMQP auth mechanism ("" for others) of the connections of ``protocol``."""
    r = requests.get(broker.http_url + "/api/connections", auth=("guest", "guest"), timeout=30)
    return {c["user"]: c.get("auth_mechanism", "") for c in r.json()
            if c.get("protocol", "").startswith(protocol)}


def _connection(broker, user: str, protocol: str = "") -> dict:
    r = requests.get(broker.http_url + "/api/connections", auth=("guest", "guest"), timeout=30)
    return next(c for c in r.json()
                if c["user"] == user and c.get("protocol", "").startswith(protocol))


def _no_traceback(broker) -> None:
    assert not [line for line in broker.lines if "Traceback" in line or "Unhandled" in line]


# ---------------------------------------------------------------------- AMQP: EXTERNAL
def test_external_logs_in_as_the_certificate_dn(dn_broker, pki, unique):
    conn = _amqps(dn_broker, pki)
    ch = conn.channel()
    ch.queue_declare(unique)
    ch.basic_publish("", unique, b"by certificate")
    assert ch.basic_get(unique, auto_ack=True)[2] == b"by certificate"
    assert eventually(lambda: _connection_users(dn_broker).get(DN)) == "EXTERNAL"
    # RabbitMQ's TLS fields of the connection (3.10 lists the same for this certificate)
    listed = _connection(dn_broker, DN)
    assert (listed["ssl"], listed["peer_cert_subject"], listed["peer_cert_issuer"]) == \
        (True, DN, "CN=warren test CA")
    assert listed["ssl_protocol"] in ("tlsv1.2", "tlsv1.3")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ - \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
                        listed["peer_cert_validity"])
    conn.close()


def test_external_with_aio_pika(dn_broker, pki, unique):
    """aio-pika (aiormq) picks EXTERNAL from its URL's ``auth=external``."""
    import asyncio

    import aio_pika

    async def run():
        url = (f"amqps://localhost:{dn_broker.tls_ports['amqps']}/?auth=external"
               f"&cafile={quote(pki['ca'])}&certfile={quote(pki['client']['cert'])}"
               f"&keyfile={quote(pki['client']['key'])}")
        conn = await aio_pika.connect(url, timeout=30)
        async with conn:
            ch = await conn.channel()
            q = await ch.declare_queue(unique)
            await ch.default_exchange.publish(aio_pika.Message(b"async"), routing_key=unique)
            got = await q.get(timeout=30)
            await got.ack()
            assert eventually(lambda: _connection_users(dn_broker).get(DN)) == "EXTERNAL"
            return got.body

    assert asyncio.run(run()) == b"async"


def test_external_by_common_name(cn_broker, pki, unique):
    conn = _amqps(cn_broker, pki)
    conn.channel().queue_declare(unique)
    assert eventually(lambda: _connection_users(cn_broker).get("ext-client")) == "EXTERNAL"
    conn.close()
    _no_traceback(cn_broker)


def test_external_offered_only_on_tls(dn_broker, pki):
    """In the configured order (RabbitMQ 3.10 sorts them: "AMQPLAIN EXTERNAL PLAIN")."""
    plain = RawAmqp(dn_broker.amqp_port)
    plain.send(PROTOCOL_HEADER)
    assert plain.expect(commands.Connection.Start).mechanisms == "PLAIN AMQPLAIN"
    plain.close()
    tls = RawAmqp(dn_broker.tls_ports["amqps"])
    tls.sock = _context(pki, "client").wrap_socket(tls.sock, server_hostname="localhost")
    tls.send(PROTOCOL_HEADER)
    assert tls.expect(commands.Connection.Start).mechanisms == "PLAIN AMQPLAIN EXTERNAL"
    tls.close()


def test_external_on_plain_tcp_and_an_unknown_mechanism_are_command_invalid(dn_broker):
    for mechanism, text in (("EXTERNAL", "invalid authentication mechanism 'EXTERNAL'"),
                            ("CRAM-MD5", "unknown authentication mechanism 'CRAM-MD5'")):
        raw = RawAmqp(dn_broker.amqp_port)
        raw.send(PROTOCOL_HEADER)
        raw.expect(commands.Connection.Start)
        raw.send_frame(commands.Connection.StartOk(
            client_properties={"capabilities": {"authentication_failure_close": True}},
            mechanism=mechanism, response="", locale="en_US"))
        close = raw.expect_connection_close()
        assert (close.reply_code, close.reply_text) == (503, f"COMMAND_INVALID - {text}")
        raw.close()
    _no_traceback(dn_broker)


def test_external_refuses_a_user_that_does_not_exist(dn_broker, pki):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as refused:
        _amqps(dn_broker, pki, "unknown")
    assert "Login was refused using authentication mechanism EXTERNAL" in str(refused.value)
    line = dn_broker.wait_for_line("login refused for user 'CN=nobody-by-this-name'")
    assert line.endswith("from 127.0.0.1 (AMQP): no such user")
    _no_traceback(dn_broker)


def test_external_without_a_client_certificate_is_refused(dn_broker, pki):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        _amqps(dn_broker, pki, client=None)
    dn_broker.wait_for_line("login refused for ? from 127.0.0.1 (AMQP): connection peer "
                            "presented no TLS (x.509) certificate")
    _no_traceback(dn_broker)


def test_a_certificate_from_an_untrusted_ca_fails_the_handshake(dn_broker, pki):
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        _amqps(dn_broker, pki, "untrusted")
    assert DN not in _connection_users(dn_broker)
    _no_traceback(dn_broker)


def test_password_login_still_works_with_a_certificate(dn_broker, pki, unique):
    conn = _amqps(dn_broker, pki, credentials=pika.PlainCredentials("guest", "guest"))
    conn.channel().queue_declare(unique)
    plain = pika.BlockingConnection(pika.URLParameters(dn_broker.amqp_url))
    listed = sorted((c["port"], c["auth_mechanism"], c["ssl"], c["peer_cert_subject"])
                    for c in requests.get(dn_broker.http_url + "/api/connections",
                                          auth=("guest", "guest"), timeout=30).json()
                    if c["user"] == "guest" and c["protocol"].startswith("AMQP"))
    assert listed == sorted([(dn_broker.tls_ports["amqps"], "PLAIN", True, DN),
                             (dn_broker.amqp_port, "PLAIN", False, None)])
    plain.close()
    conn.close()


# ---------------------------------------------------------------------- STOMP
def _stomp(broker, pki, client: str | None):
    port = broker.tls_ports["stomps"]
    conn = stomp.Connection12([("localhost", port)])
    files = pki[client] if client else {}
    conn.set_ssl(for_hosts=[("localhost", port)], ca_certs=pki["ca"],
                 cert_file=files.get("cert"), key_file=files.get("key"))
    return conn


def test_stomp_connect_without_login_uses_the_certificate(dn_broker, pki, unique):
    got = threading.Event()

    class Listener(stomp.ConnectionListener):
        def on_message(self, frame):
            got.set()

    conn = _stomp(dn_broker, pki, "client")
    conn.set_listener("l", Listener())
    conn.connect(wait=True)
    conn.subscribe(f"/queue/{unique}", id="1")
    conn.send(f"/queue/{unique}", "by certificate")
    assert got.wait(30)
    assert DN in eventually(lambda: _connection_users(dn_broker))
    assert _connection(dn_broker, DN, "STOMP")["peer_cert_subject"] == DN
    conn.disconnect()


def test_stomp_certificate_of_an_unknown_user_is_refused(dn_broker, pki):
    errors = []

    class Listener(stomp.ConnectionListener):
        def on_error(self, frame):
            errors.append((frame.headers.get("message"), frame.body))

    conn = _stomp(dn_broker, pki, "unknown")
    conn.set_listener("l", Listener())
    with pytest.raises(stomp.exception.ConnectFailedException):
        conn.connect(wait=True)
    conn.transport.disconnect_socket()   # TLS: the broker waits for our close_notify
    # RabbitMQ 3.10's ERROR frame, word for word
    assert errors == [("Bad CONNECT", "Access refused for user 'CN=nobody-by-this-name'\n")]
    line = dn_broker.wait_for_line("login refused for user 'CN=nobody-by-this-name' from "
                                   "127.0.0.1 (STOMP)")
    assert line.endswith("no such user")
    _no_traceback(dn_broker)


def test_stomp_login_header_still_wins_over_the_certificate(dn_broker, pki):
    conn = _stomp(dn_broker, pki, "client")
    conn.connect("guest", "guest", wait=True)
    assert "guest" in eventually(lambda: _connection_users(dn_broker))
    conn.disconnect()


# ---------------------------------------------------------------------- MQTT
def _mqtt_connect(broker, pki, client: str, username: str | None = None,
                  while_connected=lambda: None) -> int:
    """CONNECT over TLS with ``client``'s certificate; the CONNACK's reason code.
    ``while_connected`` runs before the client disconnects."""
    done, codes = threading.Event(), []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cert-{client}",
                    protocol=mqtt.MQTTv311)
    c.tls_set(ca_certs=pki["ca"], certfile=pki[client]["cert"], keyfile=pki[client]["key"])
    if username is not None:
        c.username_pw_set(username, "guest")

    def on_connect(_c, _u, _flags, rc, _props=None):
        codes.append(rc.value if hasattr(rc, "value") else rc)
        done.set()

    c.on_connect = on_connect
    c.connect("localhost", broker.tls_ports["mqtts"])
    c.loop_start()
    try:
        assert done.wait(30)
        if codes[0] == 0:
            while_connected()
        return codes[0]
    finally:
        c.disconnect()
        c.loop_stop()


def test_mqtt_connect_without_user_name_uses_the_certificate(dn_broker, pki):
    """Not the anonymous login (on by default, as RabbitMQ), which would be guest."""
    def listed():
        eventually(lambda: DN in _connection_users(dn_broker, "MQTT"), "an MQTT connection")
        assert _connection(dn_broker, DN, "MQTT")["peer_cert_subject"] == DN

    assert _mqtt_connect(dn_broker, pki, "client", while_connected=listed) == 0
    _no_traceback(dn_broker)


def test_mqtt_certificate_of_an_unknown_user_is_refused(dn_broker, pki):
    # 3.1.1 CONNACK 4, bad user name or password: paho reports it as reason code 134
    assert _mqtt_connect(dn_broker, pki, "unknown") == 134
    line = dn_broker.wait_for_line("login refused for user 'CN=nobody-by-this-name' from "
                                   "127.0.0.1 (MQTT)")
    assert line.endswith("no such user")
    _no_traceback(dn_broker)


def test_mqtt_user_name_still_wins_over_the_certificate(dn_broker, pki):
    assert _mqtt_connect(dn_broker, pki, "client", username="guest", while_connected=lambda:
                         eventually(lambda: "guest" in _connection_users(dn_broker))) == 0


def test_stomp_without_a_client_certificate_is_the_default_user(dn_broker, pki):
    """No certificate name: the CONNECT without login is the default user's, as RabbitMQ."""
    eventually(lambda: not _connection_users(dn_broker, "STOMP"), "earlier STOMP clients gone")
    conn = _stomp(dn_broker, pki, None)
    conn.connect(wait=True)
    assert list(eventually(lambda: _connection_users(dn_broker, "STOMP"))) == ["guest"]
    conn.disconnect()


def test_certificate_logins_without_a_ca_are_warned_about(tmp_path):
    proc = BrokerProcess(tmp_path, extra_args=["--auth-mechanisms", "PLAIN,EXTERNAL",
                                               "--stomp-ssl-cert-login"])
    proc.start()
    try:
        proc.wait_for_line("EXTERNAL in --auth-mechanisms, --stomp-ssl-cert-login: no client "
                           "can log in by certificate without --tls-cert and --tls-ca")
    finally:
        proc.stop()


def _refused_stomp_over_tls(broker, pki) -> ssl.SSLSocket:
    """A raw STOMP client with the unknown user's certificate, after its ERROR frame."""
    import socket

    sock = _context(pki, "unknown").wrap_socket(
        socket.create_connection(("127.0.0.1", broker.tls_ports["stomps"]), timeout=30),
        server_hostname="localhost", suppress_ragged_eofs=False)
    sock.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n\n\x00")
    answer = b""
    while b"\x00" not in answer:
        chunk = sock.recv(4096)
        assert chunk, "closed before the ERROR frame"
        answer += chunk
    assert answer.startswith(b"ERROR\n")
    return sock


def test_a_refused_tls_client_gets_the_brokers_close_notify(dn_broker, pki):
    """A clean TLS close (recv gives b""), not the socket closed under it after the grace
    period (a ragged EOF: SSLEOFError)."""
    sock = _refused_stomp_over_tls(dn_broker, pki)
    try:
        assert sock.recv(4096) == b""
    finally:
        sock.close()


def test_a_refused_client_that_keeps_its_tls_socket_open_is_closed(dn_broker, pki):
    """The broker sends its close_notify; a client that never answers with its own must not
    keep the connection (and its place under max_connections) for ever."""
    sock = _refused_stomp_over_tls(dn_broker, pki)
    port = sock.getsockname()[1]
    try:
        eventually(lambda: port not in {c["peer_port"] for c in requests.get(
            dn_broker.http_url + "/api/connections", auth=("guest", "guest"),
            timeout=30).json()}, "the refused connection gone")
    finally:
        sock.close()
    _no_traceback(dn_broker)


def test_tls_verify_peer_refuses_a_client_without_a_certificate(strict_broker, pki, unique):
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        _amqps(strict_broker, pki, client=None,
               credentials=pika.PlainCredentials("guest", "guest"))
    conn = _amqps(strict_broker, pki)
    conn.channel().queue_declare(unique)
    conn.close()
    _no_traceback(strict_broker)


def test_external_by_subject_alternative_name(san_broker, pki, unique):
    """The second (index 1) e-mail name of the certificate, as RabbitMQ's
    ssl_cert_login_san_type = email, ssl_cert_login_san_index = 1."""
    conn = _amqps(san_broker, pki, "san")
    conn.channel().queue_declare(unique)
    assert eventually(lambda: _connection_users(san_broker).get("two@example.org")) == \
        "EXTERNAL"
    conn.close()
    assert _mqtt_connect(san_broker, pki, "san", while_connected=lambda: eventually(
        lambda: "two@example.org" in _connection_users(san_broker, "MQTT"))) == 0
    _no_traceback(san_broker)


# ------------------------------------------------------------------ AMQP 1.0's EXTERNAL
def _proton_tls(pki, client: str | None) -> SSLDomain:
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    domain.set_trusted_ca_db(pki["ca"])
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    if client:
        domain.set_credentials(pki[client]["cert"], pki[client]["key"], None)
    return domain


def _amqp1s(broker, pki, client: str | None):
    return BlockingConnection(f"amqps://localhost:{broker.tls_ports['amqps']}",
                              ssl_domain=_proton_tls(pki, client), allowed_mechs="EXTERNAL",
                              timeout=30)


def test_amqp1_external_logs_in_as_the_certificates_name(dn_broker, pki, unique):
    conn = _amqp1s(dn_broker, pki, "client")
    sender = conn.create_sender(f"/queue/{unique}")
    sender.send(Message(body=b"by certificate", user_id=DN.encode()))
    receiver = conn.create_receiver(f"/queue/{unique}")
    got = receiver.receive(timeout=30)
    receiver.accept()
    conn.close()
    # user-id is checked against the logged-in user by the core: it passed, so the login is DN
    assert bytes(got.body) == b"by certificate" and got.user_id == DN.encode()


@pytest.mark.parametrize("client", [None, "unknown"])
def test_amqp1_external_refused(dn_broker, pki, client):
    # no certificate, or one naming no user: SASL fails (RabbitMQ logs why)
    with pytest.raises(ConnectionException):
        _amqp1s(dn_broker, pki, client)


def test_amqp1_external_not_offered_without_tls(dn_broker):
    with pytest.raises(ConnectionException):
        BlockingConnection(f"amqp://localhost:{dn_broker.amqp_port}",
                           allowed_mechs="EXTERNAL", timeout=30)


def test_zz_amqp1_refusals_logged_without_traceback(dn_broker):
    log = dn_broker.log()
    assert "(AMQP 1.0): connection peer presented no TLS (x.509) certificate" in log
    assert "Traceback" not in log
