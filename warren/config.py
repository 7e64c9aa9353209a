"""One typed configuration: defaults that run, a TOML file, WARREN_* variables, then flags.

Later sources win: defaults < ``--config FILE`` (TOML, keys as below, flat or under
``[warren]``) < environment (``WARREN_AMQP_PORT=5673``) < command-line flags. A port of 0
disables that listener.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Config:
    data_dir: str = "./warren-data"
    bind: str = "0.0.0.0"
    amqp_port: int = 5672
    stomp_port: int = 61613
    mqtt_port: int = 1883
    http_port: int = 15672
    # TLS listeners open only when tls_cert and tls_key are set (0 = off even then)
    amqps_port: int = 5671
    stomps_port: int = 61614
    mqtts_port: int = 8883
    https_port: int = 15671
    tls_cert: str = ""                     # PEM: server certificate, then its chain
    tls_key: str = ""                      # PEM private key
    tls_ca: str = ""                       # PEM CA bundle to verify client certificates
    tls_verify_peer: bool = False          # require a client certificate
    store: str = "journal"                 # journal | sql | memory
    store_url: str = ""                    # SQL store URL; default sqlite file in data_dir
    journal_segment_size: int = 32 * 1024 ** 2  # bytes per journal segment file
    log_level: str = "info"
    node_name: str = "warren@localhost"
    default_user: str = "guest"
    default_pass: str = "guest"
    loopback_users: list[str] = field(default_factory=lambda: ["guest"])
    # AMQP limits and negotiation
    frame_max: int = 131072
    channel_max: int = 2047
    heartbeat: int = 60
    max_message_size: int = 128 * 1024 * 1024
    handshake_timeout: float = 10.0
    max_connections: int = 0               # 0 = unlimited
    # memory flow control: bytes of message data held before publishers are blocked
    memory_high_watermark: int = 2 * 1024 ** 3
    # paging: bytes of message bodies kept in memory before stored ones are paged out
    paging_budget: int = 256 * 1024 ** 2
    # STOMP / MQTT limits
    stomp_max_frame_size: int = 64 * 1024 * 1024  # ActiveMQ allows 256 MiB, RabbitMQ >16 MiB
    stomp_max_headers: int = 1000
    stomp_heartbeat: int = 10000           # ms the server offers
    mqtt_max_packet_size: int = 256 * 1024 * 1024
    mqtt_max_packet_size_unauthenticated: int = 65536  # before CONNECT, as RabbitMQ
    mqtt_allow_anonymous: bool = True      # as RabbitMQ: no user name = default_user
    mqtt_vhost: str = "/"                  # vhost of MQTT clients ("vhost:user" overrides)
    mqtt_exchange: str = "amq.topic"       # where MQTT topics are routed
    mqtt_max_inflight: int = 1000          # QoS 1/2 deliveries unacked per client (3.1.1)
    # HTTP (console, API, /metrics): a connection must send a whole request line and headers
    # within http_request_timeout seconds of opening or of its previous response (a client that
    # trickles bytes resets Twisted's idle timeout, not this); at most http_max_idle_connections
    # connections wait for a request at once, the oldest is closed for a new one
    http_request_timeout: float = 30.0
    http_idle_timeout: float = 60.0         # no byte at all for this long: closed
    http_max_idle_connections: int = 1000
    metrics_require_auth: bool = False      # /metrics* need HTTP Basic of any broker user
    # HA
    ha: str = "none"                       # none | shared-file | shared-db
    lease_ttl: float = 10.0
    lease_renew: float = 2.0

    @property
    def sql_url(self) -> str:
        return self.store_url or f"sqlite:///{os.path.abspath(self.data_dir)}/warren.db"

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name: f for f in fields(self)}
        for key, value in values.items():
            key = key.replace("-", "_")
            if key not in known:
                raise ValueError(f"unknown configuration key '{key}'")
            setattr(self, key, _coerce(known[key].type, value))


def _coerce(type_name: Any, value: Any) -> Any:
    t = str(type_name)
    if isinstance(value, str):
        if t == "int":
            return int(value)
        if t == "float":
            return float(value)
        if t == "bool":
            return value.lower() in ("1", "true", "yes", "on")
        if t.startswith("list"):
            return [v.strip() for v in value.split(",") if v.strip()]
    return value


def load(path: str | None = None, env: dict[str, str] | None = None,
         overrides: dict[str, Any] | None = None) -> Config:
    cfg = Config()
    if path:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        cfg.update(data.get("warren", data))
    env = os.environ if env is None else env
    from_env = {k[7:].lower(): v for k, v in env.items() if k.startswith("WARREN_")}
    known = {f.name for f in fields(cfg)}
    cfg.update({k: v for k, v in from_env.items() if k in known})
    cfg.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return cfg
