"""AMQP URIs as RabbitMQ's shovel and federation plugins accept them (``amqp_uri.erl``).

``amqp://user:pass@host:port/vhost?heartbeat=10&connection_timeout=5000`` and ``amqps://…``
with TLS options in the query. The rules follow RabbitMQ's URI spec, so a URI copied from a
RabbitMQ shovel definition means the same thing here:

- user, password, host and vhost are percent-decoded (``%2F`` is ``/``); a bad escape is an
  error, not passed through;
- no path means vhost ``/``; a path of just ``/`` means the vhost named ``""`` (the spec's
  rule, kept so the two brokers agree); a second ``/`` in the path is an error (use ``%2F``);
- missing user/password default to guest/guest, the port to 5672 (5671 for ``amqps``);
- ``amqp://`` with no host is RabbitMQ's "direct" connection, this broker in-process:
  :func:`parse_uri` returns a :class:`LocalBroker` and the caller decides what that means;
- unknown query keys are ignored (as RabbitMQ does); known ones must parse.

Errors are :class:`InvalidURI` (a ``ValueError``) with RabbitMQ's shovel wording,
``"<uri>" not a valid URI: <reason>``, where ``<uri>`` is the redacted form: a password never
reaches a message or a log line. :attr:`AmqpURI.redacted` is what callers show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote_to_bytes, urlsplit

DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}
VERIFY_MODES = ("verify_peer", "verify_none")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_USERINFO = re.compile(r"://[^@/]*@")


class InvalidURI(ValueError):
    """A URI that cannot be used; ``str()`` is one line and never holds a password."""


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """The ``amqps`` query options (file paths as given; read when connecting)."""

    cacertfile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    # RabbitMQ's Erlang client defaults to verify_none; a bridge carrying a broker's messages
    # should not trust any peer silently, so ours defaults to verify_peer (system CAs when no
    # cacertfile is given). Write ?verify=verify_none to opt out, as in RabbitMQ.
    verify: str = "verify_peer"
    # None: send SNI for the URI's host; "disable": send none; else the name to send
    server_name_indication: str | None = None


@dataclass(frozen=True, slots=True)
class AmqpURI:
    """A parsed network URI. ``password`` stays out of ``repr`` and :attr:`redacted`."""

    scheme: str
    host: str
    port: int
    vhost: str
    username: str = "guest"
    password: str = field(default="guest", repr=False)
    heartbeat: int | None = None          # seconds; None: the client's default
    connection_timeout: int | None = None  # milliseconds, as RabbitMQ
    channel_max: int | None = None
    frame_max: int | None = None
    tls: TlsOptions | None = None          # set exactly when scheme is amqps

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def redacted(self) -> str:
        """The URI without credentials or query, safe to log (``amqp_uri:remove_credentials``)."""
        return f"{self.scheme}://{self.address}/{_quote_vhost(self.vhost)}"


@dataclass(frozen=True, slots=True)
class LocalBroker:
    """``amqp://`` with no host: this broker, in-process (RabbitMQ's direct connection)."""

    vhost: str = "/"
    username: str | None = None

    @property
    def redacted(self) -> str:
        """``amqp://`` for the default vhost, as RabbitMQ shows a local URI in its shovels'
        status and ``x-shovelled`` headers; ``amqp:///vhost`` for another."""
        if self.vhost == "/":
            return "amqp://"
        return f"amqp:///{_quote_vhost(self.vhost)}"


def redact(text: str) -> str:
    """Best-effort credential strip for text that may not even parse."""
    return _USERINFO.sub("://", text.split("?", 1)[0])


def parse_uri(text: str) -> AmqpURI | LocalBroker:
    """Parse one URI or raise :class:`InvalidURI`."""
    if not isinstance(text, str):
        raise InvalidURI(f"{text!r} not a valid URI: expected_string_uri")
    try:
        return _parse(text)
    except _Fault as fault:
        raise InvalidURI(f'"{redact(text)}" not a valid URI: {fault}') from None


class _Fault(Exception):
    """The reason part of an :class:`InvalidURI`, raised inside the parser."""


def _parse(text: str) -> AmqpURI | LocalBroker:
    if any(c.isspace() for c in text):
        raise _Fault("unable_to_parse_uri: whitespace in URI")
    try:
        parts = urlsplit(text)
    except ValueError as e:
        raise _Fault(f"unable_to_parse_uri: {e}") from None
    scheme = parts.scheme.lower()
    if "://" not in text:
        raise _Fault("unable_to_parse_uri: expected scheme://")
    if scheme not in DEFAULT_PORTS:
        raise _Fault(f"unexpected_uri_scheme: {parts.scheme or '(none)'}")
    if parts.fragment:
        raise _Fault("unable_to_parse_uri: fragment not allowed")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    host, port = _host_port(hostport)
    vhost = _vhost(parts.path)
    username = password = None
    if userinfo or "@" in parts.netloc:
        user_raw, colon, pass_raw = userinfo.partition(":")
        username = _unescape(user_raw, "username")
        password = _unescape(pass_raw, "password") if colon else None
    query = _query(parts.query)
    if not host:
        if port is not None:
            raise _Fault("port_requires_host")
        if scheme == "amqps":
            raise _Fault("amqps requires a host")
        return LocalBroker(vhost=vhost, username=username)
    mechanisms = query.get("auth_mechanism")
    if mechanisms is not None and mechanisms not in ("plain", "amqplain"):
        raise _Fault(f"unknown_mechanism: {mechanisms} (only plain is supported)")
    return AmqpURI(
        scheme=scheme, host=host, port=port or DEFAULT_PORTS[scheme], vhost=vhost,
        username="guest" if username is None else username,
        password="guest" if password is None else password,
        heartbeat=_integer(query, "heartbeat", 0, 65535),
        connection_timeout=_integer(query, "connection_timeout", 0, 2**32 - 1),
        channel_max=_integer(query, "channel_max", 0, 65535),
        frame_max=_frame_max(query),
        tls=_tls(query) if scheme == "amqps" else None)


def _host_port(hostport: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise _Fault("unable_to_parse_uri: bad IPv6 host")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text = hostport.partition(":")
        host = _unescape(host, "host")
        port_text = port_text if colon else None
    if port_text is None:
        return host, None
    if not port_text.isdigit():
        raise _Fault(f"not_an_integer: port {port_text!r}")
    port = int(port_text)
    if not 0 < port <= 65535:
        raise _Fault(f"port_out_of_range: {port}")
    return host, port


def _vhost(path: str) -> str:
    if not path:
        return "/"
    rest = path[1:]
    if "/" in rest:
        raise _Fault(f"invalid_vhost: {rest!r} (write '/' in a vhost name as %2F)")
    return _unescape(rest, "vhost")


def _unescape(raw: str, what: str) -> str:
    bad = _BAD_ESCAPE.search(raw)
    if bad:
        if what == "password":
            raise _Fault("invalid_entity in password")
        raise _Fault(f"invalid_entity in {what}: {raw[bad.start():bad.start() + 3]!r}")
    try:
        return unquote_to_bytes(raw).decode()
    except UnicodeDecodeError:
        raise _Fault(f"{what} is not UTF-8 after percent-decoding") from None


def _query(query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as e:
        raise _Fault(f"unable_to_parse_uri: query: {e}") from None
    return dict(pairs)


def _integer(query: dict[str, str], key: str, low: int, high: int) -> int | None:
    text = query.get(key)
    if text is None:
        return None
    try:
        value = int(text, 10)
    except ValueError:
        raise _Fault(f"invalid_amqp_params_parameter: {key}: not_an_integer {text!r}") from None
    if not low <= value <= high:
        raise _Fault(f"invalid_amqp_params_parameter: {key}: {value} not in {low}..{high}")
    return value


def _frame_max(query: dict[str, str]) -> int | None:
    value = _integer(query, "frame_max", 0, 2**32 - 1)
    if value is not None and 0 < value < 4096:
        # AMQP 0-9-1 §4.2.1: frame-min-size is 4096; 0 means "no limit"
        raise _Fault(f"invalid_amqp_params_parameter: frame_max: {value} below 4096")
    return value


def _tls(query: dict[str, str]) -> TlsOptions:
    verify = query.get("verify", "verify_peer")
    if verify not in VERIFY_MODES:
        raise _Fault(f"invalid_ssl_parameter: verify: {verify!r} "
                     f"(expected verify_peer or verify_none)")
    sni = query.get("server_name_indication")
    if sni == "":
        raise _Fault("invalid_ssl_parameter: server_name_indication is empty")
    paths = {}
    for key in ("cacertfile", "certfile", "keyfile"):
        value = query.get(key)
        if value == "":
            raise _Fault(f"invalid_ssl_parameter: {key} is empty")
        paths[key] = value
    if paths["keyfile"] and not paths["certfile"]:
        raise _Fault("invalid_ssl_parameter: keyfile given without certfile")
    return TlsOptions(verify=verify, server_name_indication=sni, **paths)


def _quote_vhost(vhost: str) -> str:
    return "".join(c if c.isalnum() or c in "-._~" else
                   "".join(f"%{b:02X}" for b in c.encode()) for c in vhost)
