"""Client-side TLS for ``amqps://`` links, from the URI's query options.

``verify_peer`` checks the broker's certificate against ``cacertfile`` (or the system's CAs)
and its name against ``server_name_indication`` when given, else the URI's host; that name is
also sent as SNI (Twisted always sends one, so ``server_name_indication=disable`` only means
"use the host"). ``verify_none`` checks nothing, as RabbitMQ's ``verify_none``. A client
certificate is ``certfile`` (+ ``keyfile`` when the key is not in it).
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet import ssl

from .uri import AmqpURI


def tls_options(uri: AmqpURI) -> Any:
    """Twisted client TLS options from the URI's ``amqps`` query."""
    tls = uri.tls
    assert tls is not None   # the URI parser sets it exactly for amqps, the only caller's case
    client_cert = None
    if tls.certfile:
        pem = _read(tls.certfile)
        if tls.keyfile:
            pem += b"\n" + _read(tls.keyfile)
        client_cert = ssl.PrivateCertificate.loadPEM(pem)
    if tls.verify == "verify_none":
        kwargs = {}
        if client_cert is not None:
            kwargs = {"privateKey": client_cert.privateKey.original,
                      "certificate": client_cert.original}
        return ssl.CertificateOptions(verify=False, **kwargs)
    trust = ssl.Certificate.loadPEM(_read(tls.cacertfile)) if tls.cacertfile \
        else ssl.platformTrust()
    name = tls.server_name_indication
    hostname = uri.host if name in (None, "disable") else name
    return ssl.optionsForClientTLS(hostname, trustRoot=trust, clientCertificate=client_cert)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def ssl_reason(exc: SSL.Error) -> str:
    """pyOpenSSL's error list as one short line ("certificate verify failed")."""
    try:
        reasons = [r[2] for r in exc.args[0] if len(r) > 2 and r[2]]
    except (IndexError, TypeError):
        reasons = []
    return "; ".join(reasons) or str(exc) or type(exc).__name__
