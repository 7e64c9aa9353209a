"""The DN string a client certificate logs in as must be the one RabbitMQ derives
(``rabbit_ssl``), or users created for RabbitMQ would not match: RFC 4514 order (last RDN
first), RabbitMQ's attribute names, ``+`` inside a multi-valued RDN, and its escapes."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from tests.tls.pki import Authority, common_name
from warren.cert_login import distinguished_name, login_name


def _attr(oid, value):
    return x509.NameAttribute(oid, value)


def test_order_names_and_multi_valued_rdns():
    subject = x509.Name([
        x509.RelativeDistinguishedName([_attr(NameOID.DOMAIN_COMPONENT, "org")]),
        x509.RelativeDistinguishedName([_attr(NameOID.COUNTRY_NAME, "GB")]),
        x509.RelativeDistinguishedName([_attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "ops"),
                                        _attr(NameOID.EMAIL_ADDRESS, "a@b.example")]),
        x509.RelativeDistinguishedName([_attr(NameOID.SERIAL_NUMBER, "42")]),
        x509.RelativeDistinguishedName([_attr(NameOID.COMMON_NAME, "client")]),
    ])
    rendered = distinguished_name(subject)
    assert rendered.startswith("CN=client,SERIALNUMBER=42,")
    assert rendered.endswith(",C=GB,DC=org")
    middle = rendered.split(",")[2]
    assert set(middle.split("+")) == {"OU=ops", "EMAILADDRESS=a@b.example"}


def test_escapes_as_rabbitmq():
    def dn(value):
        return distinguished_name(x509.Name([_attr(NameOID.COMMON_NAME, value)]))

    assert dn('a,b+c"d\\e<f>g;h') == 'CN=a\\,b\\+c\\"d\\\\e\\<f\\>g\\;h'
    assert dn("#lead") == "CN=\\#lead"
    assert dn(" both ") == "CN=\\ both\\ "
    assert dn("mid#dle") == "CN=mid#dle"
    assert dn("café") == "CN=caf\\C3\\A9"      # each UTF-8 byte, upper-case hex
    assert dn("tab\there~") == "CN=tab\\09here\\7E"


def test_unknown_attribute_is_its_dotted_oid():
    oid = ObjectIdentifier("1.2.3.4.5")
    subject = x509.Name([_attr(oid, "x"), _attr(NameOID.COMMON_NAME, "c")])
    assert distinguished_name(subject) == "CN=c,1.2.3.4.5=x"


def _cert(tmp_path, subject: x509.Name, alt_names=None) -> x509.Certificate:
    files = Authority(tmp_path).issue("c", subject, alt_names=alt_names)
    with open(files["cert"], "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def test_common_name_mode_joins_several_and_finds_none(tmp_path):
    two = x509.Name([_attr(NameOID.COMMON_NAME, "a"), _attr(NameOID.COMMON_NAME, "b,c")])
    assert login_name(_cert(tmp_path, two), "common_name") == "a,b,c"
    no_cn = _cert(tmp_path, x509.Name([_attr(NameOID.ORGANIZATION_NAME, "o")]))
    assert login_name(no_cn, "common_name") is None
    assert login_name(_cert(tmp_path, x509.Name([])), "distinguished_name") is None


def test_subject_alternative_name_by_type_and_index(tmp_path):
    cert = _cert(tmp_path, common_name("ignored"), [
        x509.DNSName("first.example"), x509.RFC822Name("one@example.org"),
        x509.DNSName("second.example"), x509.UniformResourceIdentifier("urn:warren:client")])
    san = "subject_alternative_name"
    assert login_name(cert, san) == "first.example"
    assert login_name(cert, san, "dns", 1) == "second.example"
    assert login_name(cert, san, "email") == "one@example.org"
    assert login_name(cert, san, "uri") == "urn:warren:client"
    assert login_name(cert, san, "email", 1) is None      # no second e-mail name
    assert login_name(_cert(tmp_path, common_name("no-san")), san) is None
