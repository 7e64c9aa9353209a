"""One typed configuration: defaults that run, a TOML file, WARREN_* variables, then flags.

Later sources win: defaults < ``--config FILE`` (TOML, keys as below, flat or under
``[warren]``) < environment (``WARREN_AMQP_PORT=5673``) < command-line flags. A port of 0
disables that listener.

Every value is checked against its key's type (and, for a few keys, its choices) where it
enters, so a mistake is refused with a :class:`ConfigError` that names where it was written
(``amqp_port = "x" in /etc/warren.toml``, ``WARREN_AMQP_PORT=x``, ``--amqp-port 70000``) and
what to write instead; ``warren run`` prints that one line and exits. An unknown key, in the
file or as a ``WARREN_*`` variable, is a warning that names it (a typo must not pass silently,
nor stop a broker that an older config file still describes). Each value's source is kept in
``Config.sources`` so later start-up errors name the setting as the operator wrote it.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

#: ``WARREN_*`` variables that are not broker settings: ``warren ctl``'s (and ``WARREN_PG_BIN``
#: for the tests' private PostgreSQL, ``WARREN_RABBITMQ_SERVER`` for bench's and the tests'
#: RabbitMQ); they are neither keys nor worth a warning.
NOT_SETTINGS = frozenset({"WARREN_URL", "WARREN_USER", "WARREN_PASSWORD", "WARREN_PG_BIN",
                          "WARREN_RABBITMQ_SERVER"})

#: keys whose value is one of a few words
CHOICES: dict[str, tuple[str, ...]] = {
    "store": ("journal", "sql", "memory"),
    "ha": ("none", "shared-file", "shared-db"),
    "log_level": ("debug", "info", "warning", "error"),
    "password_hashing_module": ("rabbit_password_hashing_sha256",
                                "rabbit_password_hashing_sha512"),
    "ssl_cert_login_from": ("distinguished_name", "common_name", "subject_alternative_name"),
    "ssl_cert_login_san_type": ("dns", "email", "uri"),
    "auth_mechanisms": ("PLAIN", "AMQPLAIN", "EXTERNAL"),   # each item of the list
}


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message is the one line to print."""


@dataclass
class Config:
    data_dir: str = "./warren-data"
    bind: str = "0.0.0.0"
    amqp_port: int = 5672
    stomp_port: int = 61613
    mqtt_port: int = 1883
    http_port: int = 15672
    stream_port: int = 5552                # RabbitMQ Stream protocol (rabbitmq_stream)
    # TLS listeners open only when tls_cert and tls_key are set (0 = off even then)
    amqps_port: int = 5671
    stomps_port: int = 61614
    mqtts_port: int = 8883
    https_port: int = 15671
    # STOMP and MQTT over WebSocket at /ws (RabbitMQ's Web-STOMP and Web-MQTT ports); the TLS
    # ones open only with tls_cert and tls_key, as above
    web_stomp_port: int = 15674
    web_mqtt_port: int = 15675
    web_stomp_tls_port: int = 15673
    web_mqtt_tls_port: int = 15676
    streams_port: int = 0                  # Stream protocol over TLS (RabbitMQ: 5551)
    tls_cert: str = ""                     # PEM: server certificate, then its chain
    tls_key: str = ""                      # PEM private key
    tls_ca: str = ""                       # PEM CA bundle to verify client certificates
    tls_verify_peer: bool = False          # require a client certificate
    # logins by client certificate (RabbitMQ's rabbit_auth_mechanism_ssl, ssl_cert_login):
    # the name is the certificate subject's DN or CN; the user must exist, no password
    ssl_cert_login_from: str = "distinguished_name"    # common_name, subject_alternative_name
    ssl_cert_login_san_type: str = "dns"   # subject_alternative_name: dns, email or uri...
    ssl_cert_login_san_index: int = 0      # ...the first (0) of that type, or a later one
    # AMQP SASL mechanisms offered, as RabbitMQ's auth_mechanisms; EXTERNAL (the client
    # certificate) only on TLS connections
    auth_mechanisms: list[str] = field(default_factory=lambda: ["PLAIN", "AMQPLAIN"])
    store: str = "journal"                 # journal | sql | memory
    store_url: str = ""                    # SQL store URL; default sqlite file in data_dir
    journal_segment_size: int = 32 * 1024 ** 2  # bytes per journal segment file
    # journal bytes written between two checkpoints of its index (a start after a crash
    # replays only what follows the last one); 0: none while running
    journal_checkpoint_bytes: int = 64 * 1024 ** 2
    # checkpoints after a full one that write only what changed (deltas); 0: all full
    journal_checkpoint_deltas: int = 64
    log_level: str = "info"
    node_name: str = "warren@localhost"
    default_user: str = "guest"
    default_pass: str = "guest"
    loopback_users: list[str] = field(default_factory=lambda: ["guest"])
    # hashing of new passwords, as RabbitMQ's password_hashing_module (sha256 or sha512)
    password_hashing_module: str = "rabbit_password_hashing_sha256"
    # AMQP limits and negotiation
    frame_max: int = 131072
    channel_max: int = 2047
    heartbeat: int = 60
    max_message_size: int = 128 * 1024 * 1024
    handshake_timeout: float = 10.0
    max_connections: int = 0               # 0 = unlimited
    # memory flow control: bytes of message data held before publishers are blocked; 0 (the
    # default) is memory_high_watermark_relative of the machine's RAM, as RabbitMQ's
    # vm_memory_high_watermark.relative = 0.4
    memory_high_watermark: int = 0
    memory_high_watermark_relative: float = 0.4
    # free-disk alarm on the data directory's file system (RabbitMQ's disk_free_limit):
    # publishers are blocked below disk_free_limit bytes free, or below
    # disk_free_limit_relative times the RAM when that is set (> 0); checked every
    # disk_check_interval seconds
    disk_free_limit: int = 50_000_000
    disk_free_limit_relative: float = 0.0
    disk_check_interval: float = 10.0
    # paging: bytes of messages kept in memory before stored ones are paged out
    paging_budget: int = 256 * 1024 ** 2
    # STOMP / MQTT limits
    stomp_max_frame_size: int = 64 * 1024 * 1024  # ActiveMQ allows 256 MiB, RabbitMQ >16 MiB
    stomp_max_headers: int = 1000
    stomp_heartbeat_floor: int = 100       # ms: shortest heart-beat interval agreed to
    stomp_ssl_cert_login: bool = False     # no login header over TLS: the certificate's name
    mqtt_max_packet_size: int = 256 * 1024 * 1024
    mqtt_max_packet_size_unauthenticated: int = 65536  # before CONNECT, as RabbitMQ
    mqtt_allow_anonymous: bool = True      # as RabbitMQ: no user name = default_user
    mqtt_ssl_cert_login: bool = False      # no user name over TLS: the certificate's name
    mqtt_vhost: str = "/"                  # vhost of MQTT clients ("vhost:user" overrides)
    mqtt_exchange: str = "amq.topic"       # where MQTT topics are routed
    mqtt_max_inflight: int = 1000          # QoS 1/2 deliveries unacked per client (3.1.1)
    mqtt_receive_maximum: int = 1000       # QoS 1/2 publishes a 5.0 client may have unacked
    # HTTP (console, API, /metrics): a connection must send a whole request line and headers
    # within http_request_timeout seconds of opening or of its previous response (a client that
    # trickles bytes resets Twisted's idle timeout, not this); at most http_max_idle_connections
    # connections wait for a request at once, the oldest is closed for a new one
    http_request_timeout: float = 30.0
    http_idle_timeout: float = 60.0         # no byte at all for this long: closed
    http_max_idle_connections: int = 1000
    metrics_require_auth: bool = False      # /metrics* need HTTP Basic of any broker user
    # freeze the survivors of full garbage collections so pauses follow growth, not heap
    # size (warren.gc_tuning); false = CPython's collector as it is by default
    gc_tuning: bool = True
    # HA
    ha: str = "none"                       # none | shared-file | shared-db
    lease_ttl: float = 10.0
    lease_renew: float = 2.0
    # ActiveMQ-style network connectors: [[network]] tables (warren.network.connector_config)
    network: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        #: key -> where its value came from, as the operator wrote it ("--amqp-port",
        #: "WARREN_AMQP_PORT", "amqp_port in /etc/warren.toml"); defaults name the flag
        self.sources: dict[str, str] = {}

    @property
    def sql_url(self) -> str:
        return self.store_url or f"sqlite:///{os.path.abspath(self.data_dir)}/warren.db"

    def setting(self, key: str) -> str:
        """How the operator names ``key``'s setting: where its value came from, else the flag."""
        return self.sources.get(key) or flag(key)

    def describe(self, key: str) -> str:
        """The setting with its value, as written where it came from: ``--amqp-port 5672``,
        ``WARREN_AMQP_PORT=5672``, ``amqp_port = 5672 in FILE`` (a URL's password hidden)."""
        value = getattr(self, key)
        if key == "store_url":
            value = _hide_password(self.sql_url)
        return _shown(self.setting(key), value)

    def update(self, values: dict[str, Any], source: Callable[[str], str] | None = None,
               warn: Callable[[str], None] | None = None) -> None:
        """Set ``values`` (keys as in the file). ``source(key)`` names where a key was
        written; an unknown key is passed to ``warn`` (raised when there is none)."""
        known = {f.name: f for f in fields(self)}
        for key, value in values.items():
            key = key.replace("-", "_")
            where = source(key) if source else key
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {_named_like(where, key, close[0])}?)" if close else ""
                message = f"unknown configuration key {where}{hint}"
                if warn is None:
                    raise ConfigError(message)
                warn(f"{message}: ignored")
                continue
            setattr(self, key, _coerce(key, known[key].type, value, where,
                                       getattr(Config, key, None)))
            if source:
                self.sources[key] = where


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _named_like(where: str, key: str, other: str) -> str:
    """``other`` spelt as ``key`` was in ``where`` (variable, flag or file key)."""
    if where.startswith("WARREN_"):
        return "WARREN_" + other.upper()
    if where.startswith("--"):
        return flag(other)
    return other


#: settings that cannot be negative, with what their 0 means
NOT_NEGATIVE = {
    "memory_high_watermark": "0: memory_high_watermark_relative of the RAM",
    "memory_high_watermark_relative": "0 blocks every publisher, as RabbitMQ",
    "disk_free_limit": "0: no free-disk alarm",
    "disk_free_limit_relative": "0: disk_free_limit in bytes instead",
}
_KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false",
          "str": "a string", "list[str]": "a list of strings"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(key: str, type_name: Any, value: Any, where: str, default: Any = None) -> Any:
    """``value`` as ``key``'s type, or a ConfigError naming ``where`` and what to write."""
    t = str(type_name)
    ok, out = True, value
    if t.startswith("list[dict"):   # [[network]]: tables, only from the config file
        ok = isinstance(value, list) and all(isinstance(v, dict) for v in value)
        if not ok:
            raise ConfigError(f"{_shown(where, value)}: not a list of tables: write them as "
                              f"[[{key}]] tables in the config file")
        return value
    if isinstance(value, str) and t != "str":
        text = value.strip()
        try:
            if t == "int":
                out = int(text)
            elif t == "float":
                out = float(text)
            elif t == "bool":
                if text.lower() not in _TRUE + _FALSE:
                    raise ValueError(text)
                out = text.lower() in _TRUE
            elif t.startswith("list"):
                out = [v.strip() for v in value.split(",") if v.strip()]
        except ValueError:
            ok = False
    elif t == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        out = float(value) if ok else value
    elif t == "bool":
        ok = isinstance(value, bool)
    elif t == "str":
        ok = isinstance(value, str)
    elif t.startswith("list"):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    if not ok:
        shown = (",".join(default) if isinstance(default, list)
                 else str(default).lower() if isinstance(default, bool) else default)
        example = f" (default {shown!r})" if t == "str" else f" (default {shown})"
        raise ConfigError(f"{_shown(where, value)}: not {_KINDS.get(t, t)}: "
                          f"give {_KINDS.get(t, t)}{example if default is not None else ''}")
    if key in CHOICES and any(v not in CHOICES[key]
                              for v in (out if isinstance(out, list) else [out])):
        raise ConfigError(f"{_shown(where, value)}: not one of {', '.join(CHOICES[key])}: "
                          f"give one of them")
    if key in NOT_NEGATIVE and out < 0:
        raise ConfigError(f"{_shown(where, value)}: below 0: give 0 or more "
                          f"({NOT_NEGATIVE[key]})")
    if key.endswith("_port") and not 0 <= out <= 65535:
        raise ConfigError(f"{_shown(where, value)}: not a port: give 1 to 65535, or 0 to turn "
                          f"that listener off")
    return out


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: nothing to hide that can be found
        return url


def _quoted(value: Any) -> str:
    """A flag's or variable's value as a shell would need it: quoted when it has spaces."""
    text = str(value)
    return repr(text) if not text or any(c.isspace() or c in "'\"" for c in text) else text


def _shown(where: str, value: Any) -> str:
    """``where`` with the value as the operator wrote it there."""
    if where.startswith("WARREN_"):
        return f"{where}={_quoted(value)}"
    if where.startswith("--"):
        return f"{where} {_quoted(value)}"
    key, _, rest = where.partition(" ")  # "amqp_port in FILE"
    shown = f'"{value}"' if isinstance(value, str) else str(value).lower() \
        if isinstance(value, bool) else repr(value)
    return f"{key} = {shown} {rest}".rstrip()


def load(path: str | None = None, env: Mapping[str, str] | None = None,
         overrides: dict[str, Any] | None = None,
         warn: Callable[[str], None] | None = None) -> Config:
    """The configuration from defaults, ``path``, ``env`` (``os.environ``) and ``overrides``
    (flags). Raises :class:`ConfigError` with one line to print; unknown keys and variables
    go to ``warn`` (the ``warren.config`` logger by default)."""
    if warn is None:
        import logging
        warn = logging.getLogger("warren.config").warning
    cfg = Config()
    if path:
        cfg.update(_read_toml(path), source=lambda k: f"{k} in {path}", warn=warn)
    environ: Mapping[str, str] = os.environ if env is None else env
    from_env = {k: v for k, v in environ.items()
                if k.startswith("WARREN_") and k not in NOT_SETTINGS}
    cfg.update({k[7:].lower(): v for k, v in from_env.items()},
               source=lambda k: f"WARREN_{k.upper()}",
               warn=lambda m: warn(m.replace("configuration key", "variable", 1)))
    cfg.update({k: v for k, v in (overrides or {}).items() if v is not None},
               source=flag)
    return cfg


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file: check the path, or leave out "
                          f"--config to run with the defaults") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path}: a directory, not a file: give the TOML file") \
            from None
    except OSError as error:
        raise ConfigError(f"--config {path}: cannot read it ({error.strerror}): give the user "
                          f"running warren read access") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"--config {path}: not valid TOML: {error}: fix that line") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"--config {path}: not UTF-8 text ({error.reason}): save it as "
                          f"UTF-8") from None
    section = data.get("warren", data)
    if not isinstance(section, dict):
        raise ConfigError(f"--config {path}: 'warren' is not a table: write the keys under "
                          f"[warren] or at the top of the file")
    if section is not data and "network" in data:
        # [[network]] tables at the top level of a file with a [warren] table
        section = {**section, "network": data["network"]}
    return section
