"""TLS for every listener: one server context made from the configured PEM files.

AMQPS (5671), STOMP over TLS (61614), MQTTS (8883) and HTTPS (15671) open only when both
``tls_cert`` and ``tls_key`` are set, as RabbitMQ opens its ``ssl_listeners`` only with
``ssl_options`` configured. With ``tls_ca`` the chain of client certificates is checked;
``tls_verify_peer`` then makes a client certificate mandatory (RabbitMQ's
``fail_if_no_peer_cert``). Twisted's ``CertificateOptions`` picks safe protocol versions and
ciphers; we add nothing of our own.

Closing is ours, though: Twisted's TLS layer, after sending its close_notify, keeps the socket
until the client answers with its own, and a client that never does (one refused at login
that just sits there) would keep its connection, and its place under ``max_connections``, for
good. Erlang's TLS, RabbitMQ's, closes the socket after its alert; :func:`listening_factory`
gives the client ``CLOSE_NOTIFY_GRACE`` seconds to answer, then closes it.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory

#: seconds a closed TLS connection waits for the client's close_notify before its socket closes
CLOSE_NOTIFY_GRACE = 5.0


class TlsConfigError(ValueError):
    """The certificate, key or CA file cannot be used; the message says which and why."""


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TlsConfigError(f"cannot read TLS {what} '{path}': {e.strerror}") from None


def server_context(cert_path: str, key_path: str, ca_path: str = "",
                   verify_peer: bool = False) -> Any:
    """An IOpenSSLServerConnectionCreator for ``reactor.listenSSL``."""
    try:
        certs = _split_pem(_read(cert_path, "certificate"))
        leaf = crypto.load_certificate(crypto.FILETYPE_PEM, certs[0])
        chain = [crypto.load_certificate(crypto.FILETYPE_PEM, c) for c in certs[1:]]
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, _read(key_path, "key"))
        ca = [ssl.Certificate.loadPEM(c).original
              for c in _split_pem(_read(ca_path, "CA file"))] if ca_path else None
    except crypto.Error as e:
        raise TlsConfigError(f"bad TLS certificate or key: {e}") from None
    return _ServerOptions(privateKey=key, certificate=leaf, extraCertChain=chain,
                          verify=bool(ca), caCerts=ca, requireCertificate=verify_peer)


class _ServerOptions(ssl.CertificateOptions):
    """Twisted's options with an ALPN answer OpenSSL accepts when nothing overlaps.

    Twisted installs an ALPN callback on every server context and, when the client offers
    only protocols the listener does not speak, answers with an empty name, which OpenSSL
    turns into an ``internal_error`` alert: the handshake of any client that offers ALPN
    (``amqp``, ``mqtt``, anything) fails. Only the WebSocket listeners name a protocol
    (``http/1.1``, which browsers need); the others, like RabbitMQ's, choose none and go on.
    """

    def _makeContext(self, *args: Any, **kwargs: Any) -> Any:
        context = super()._makeContext(*args, **kwargs)
        context.set_alpn_select_callback(_alpn_select)
        return context


def _alpn_select(connection: Any, offered: list[bytes]) -> Any:
    """The first protocol the listener speaks that the client offered, else none at all."""
    wrapped = connection.get_app_data().factory.wrappedFactory
    speaks: Any = IProtocolNegotiationFactory(wrapped, None)
    for protocol in (speaks.acceptableProtocols() if speaks is not None else ()):
        if protocol in offered:
            return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS


def _split_pem(data: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    parts = [p + marker for p in data.split(marker) if b"-----BEGIN CERTIFICATE-----" in p]
    if not parts:
        raise TlsConfigError("no PEM certificate found")
    return parts


class _ClosingTLSProtocol(BufferingTLSTransport):
    """Twisted's TLS transport (small writes batched per turn), whose socket closes
    ``CLOSE_NOTIFY_GRACE`` seconds after it was asked to close whether or not the client
    answered, and sends its close_notify right away though a producer is registered."""

    _abort_call: Any = None
    _lost = False

    def loseConnection(self) -> None:
        super().loseConnection()
        if self._producer is not None:
            # Twisted sends close_notify only once the producer is gone; the listeners
            # register themselves for good, so without this no close would ever be sent
            self.unregisterProducer()  # type: ignore[no-untyped-call]
        if self._abort_call is None and not self._lost and self.transport is not None:
            clock: Any = self.factory._clock
            self._abort_call = clock.callLater(CLOSE_NOTIFY_GRACE, self._abort)

    def _abort(self) -> None:
        self._abort_call = None
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        super().connectionLost(reason)


def listening_factory(context: Any, factory: Any, clock: Any) -> Any:
    """``factory`` behind TLS with ``context``, for ``listenTCP`` (what ``listenSSL`` does,
    with the closing above)."""
    tls = TLSMemoryBIOFactory(context, False, factory, clock)
    tls.protocol = _ClosingTLSProtocol
    return tls
