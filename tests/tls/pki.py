"""A throw-away certificate authority for the TLS tests: a CA, a server certificate for
127.0.0.1/localhost, and client certificates with any subject, written as PEM files.

Every TLS test makes its own, so nothing secret or long-lived is kept in the repository, and
a test can make a second CA to play an untrusted client.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def common_name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Authority:
    """A CA whose certificates last a day; ``issue`` writes a certificate and its key."""

    def __init__(self, directory: Path, name: str = "warren test CA") -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = self._builder(common_name(name), self.key.public_key()) \
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True) \
            .sign(self.key, hashes.SHA256())
        self.ca_file = str(directory / f"{name.replace(' ', '-')}.pem")
        Path(self.ca_file).write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def _builder(self, subject: x509.Name, public_key) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.timezone.utc)
        issuer = getattr(self, "cert", None)
        return (x509.CertificateBuilder().subject_name(subject)
                .issuer_name(issuer.subject if issuer is not None else subject)
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1)))

    def issue(self, stem: str, subject: x509.Name, *, server: bool = False,
              alt_names: list[x509.GeneralName] | None = None) -> dict[str, str]:
        """Files ``{"cert": ..., "key": ...}`` of a new certificate for ``subject``; a server's
        names 127.0.0.1 and localhost, a client's ``alt_names`` if given."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(subject, key.public_key())
        if server:
            alt_names = [x509.DNSName("localhost"),
                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names),
                                            critical=False)
        if not server:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        paths = {"cert": self.directory / f"{stem}.pem", "key": self.directory / f"{stem}.key"}
        paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
        return {k: str(v) for k, v in paths.items()}


def make_pki(directory: Path) -> dict[str, str]:
    """A CA and a server certificate it signed, for tests that serve TLS and trust its CA:
    ``{"ca": ..., "cert": ..., "key": ...}``."""
    ca = Authority(directory)
    return {"ca": ca.ca_file, **ca.issue("server", common_name("localhost"), server=True)}
