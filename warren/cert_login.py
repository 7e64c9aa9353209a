"""The user name a client's TLS certificate logs in as, for SASL EXTERNAL and ``ssl_cert_login``.

AMQP's EXTERNAL mechanism and the STOMP and MQTT ``ssl_cert_login`` settings all log a client
in as the name its certificate gives, without a password (RabbitMQ's
``rabbit_auth_mechanism_ssl``); the three front ends ask this one module for that name, so it
is the same string whichever protocol the client speaks.

``ssl_cert_login_from`` picks the name, as in RabbitMQ:

- ``distinguished_name`` (the default): the subject DN as RabbitMQ renders it, RFC 4514 order
  (the last RDN of the certificate first: ``CN=client,O=warren,C=GB``), the attribute names
  RabbitMQ uses (``EMAILADDRESS``, ``SERIALNUMBER``, ...; dotted OIDs for the rest), the
  values of a multi-valued RDN joined with ``+``, and RFC 4514 escapes; like RabbitMQ we also
  write control characters and every byte of non-ASCII text as ``\\XX``, so such a name is
  the same string here as there.
- ``common_name``: the subject's CN; several CNs are joined with ``,``.
- ``subject_alternative_name``: the ``ssl_cert_login_san_index``-th (counted from 0) subject
  alternative name of ``ssl_cert_login_san_type`` (``dns``, ``email`` or ``uri``).

A certificate is only ever seen when it was verified: the listeners ask for one only with a
CA configured (``tls_ca``), and OpenSSL ends the handshake if it does not chain to that CA.
That is RabbitMQ's condition too (``ssl_options.verify = verify_peer``), so no name is taken
from an unverified certificate.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

#: attribute names in a DN, as RabbitMQ spells them; any other is its dotted OID
_ATTRIBUTE_NAMES = {
    NameOID.SURNAME: "SN", NameOID.GIVEN_NAME: "GIVENNAME", NameOID.INITIALS: "INITIALS",
    NameOID.GENERATION_QUALIFIER: "GENERATIONQUALIFIER", NameOID.COMMON_NAME: "CN",
    NameOID.LOCALITY_NAME: "L", NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.ORGANIZATION_NAME: "O", NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.TITLE: "TITLE", NameOID.COUNTRY_NAME: "C", NameOID.SERIAL_NUMBER: "SERIALNUMBER",
    NameOID.PSEUDONYM: "PSEUDONYM", NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.EMAIL_ADDRESS: "EMAILADDRESS", NameOID.STREET_ADDRESS: "STREET",
    NameOID.USER_ID: "UID",
}

#: the client's refusal reasons, as RabbitMQ logs them
NOT_TLS = "not a TLS-enabled connection"
NO_CERTIFICATE = "connection peer presented no TLS (x.509) certificate"
NO_NAME = "no name found"


class CertificateLogin:
    """The outcome of looking for a certificate name: ``name``, or why there is none."""

    __slots__ = ("name", "refusal")

    def __init__(self, name: str | None, refusal: str = "") -> None:
        self.name = name
        self.refusal = refusal


def is_tls(transport: Any) -> bool:
    """Whether the connection is TLS (a TLS transport can tell its peer's certificate)."""
    return callable(getattr(transport, "getPeerCertificate", None))


def certificate_login(transport: Any, config: Any) -> CertificateLogin:
    """The name the peer's certificate logs in as, read once the TLS handshake is done;
    ``config`` gives ``ssl_cert_login_from`` (and ``ssl_cert_login_san_type``/``_index``)."""
    if not is_tls(transport):
        return CertificateLogin(None, NOT_TLS)
    peer = transport.getPeerCertificate()
    if peer is None:
        return CertificateLogin(None, NO_CERTIFICATE)
    name = login_name(peer.to_cryptography(), config.ssl_cert_login_from,
                      config.ssl_cert_login_san_type, config.ssl_cert_login_san_index)
    return CertificateLogin(name, "" if name else NO_NAME)


#: ``ssl_cert_login_san_type`` -> the SAN entries it picks (RabbitMQ's names)
SAN_TYPES: dict[str, type[x509.DNSName] | type[x509.RFC822Name]
                | type[x509.UniformResourceIdentifier]] = {
    "dns": x509.DNSName, "email": x509.RFC822Name, "uri": x509.UniformResourceIdentifier}


def login_name(cert: x509.Certificate, login_from: str, san_type: str = "dns",
               san_index: int = 0) -> str | None:
    """The certificate's name per ``ssl_cert_login_from``: the subject's DN, its CN(s), or
    the ``san_index``-th (from 0) subject alternative name of ``san_type``; None if none."""
    if login_from == "subject_alternative_name":
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return None
        names = san.get_values_for_type(SAN_TYPES[san_type])
        return names[san_index] if 0 <= san_index < len(names) else None
    subject = cert.subject
    if login_from == "common_name":
        cns = [_text(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        return ",".join(cns) or None
    return distinguished_name(subject) or None


def distinguished_name(subject: x509.Name) -> str:
    """``subject`` as RabbitMQ renders a DN (see the module docstring)."""
    return ",".join("+".join(_attribute(a) for a in rdn) for rdn in reversed(subject.rdns))


def _attribute(attribute: x509.NameAttribute) -> str:
    oid: ObjectIdentifier = attribute.oid
    name = _ATTRIBUTE_NAMES.get(oid, oid.dotted_string)
    return f"{name}={escape(_text(attribute.value))}"


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


_SPECIAL = frozenset('"+,;<>\\')


def escape(value: str) -> str:
    """An attribute value escaped per RFC 4514, plus RabbitMQ's ``\\XX`` for control
    characters, ``~``, DEL and each UTF-8 byte of non-ASCII text."""
    out = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        if (i == 0 and ch in " #") or (i == last and i > 0 and ch == " ") or ch in _SPECIAL:
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) >= 126:
            out.append("".join(f"\\{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


#: a plain TCP connection's TLS fields, as RabbitMQ lists them
_NOT_TLS_FIELDS: dict[str, Any] = {"ssl": False, "ssl_protocol": None,
                                   "peer_cert_subject": None, "peer_cert_issuer": None,
                                   "peer_cert_validity": None}


class TlsFields:
    """A connection's TLS fields for ``/api/connections`` (RabbitMQ's ``ssl``,
    ``ssl_protocol``, ``peer_cert_subject``/``issuer``/``validity``), so an operator sees
    which certificate a client logged in with. Kept once the handshake is done: the API lists
    every connection, and the certificate does not change."""

    __slots__ = ("_fields",)

    def __init__(self) -> None:
        self._fields: dict[str, Any] | None = None

    def of(self, transport: Any) -> dict[str, Any]:
        if self._fields is not None:
            return self._fields
        if not is_tls(transport):
            self._fields = _NOT_TLS_FIELDS
            return self._fields
        handle = transport.getHandle()
        fields: dict[str, Any] = {**_NOT_TLS_FIELDS, "ssl": True}
        if handle.get_peer_finished() is not None:   # the handshake is done: keep the fields
            fields["ssl_protocol"] = handle.get_protocol_version_name().lower()
            peer = transport.getPeerCertificate()
            if peer is not None:
                cert = peer.to_cryptography()
                fields.update(peer_cert_subject=distinguished_name(cert.subject),
                              peer_cert_issuer=distinguished_name(cert.issuer),
                              peer_cert_validity=f"{_time(cert.not_valid_before_utc)} - "
                                                 f"{_time(cert.not_valid_after_utc)}")
            self._fields = fields
        return fields


def _time(moment: Any) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
