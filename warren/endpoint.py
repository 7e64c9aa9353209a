"""Who is at the other end of a socket: the facts every listener needs when a client connects.

All front ends (AMQP 0-9-1 and 1.0, STOMP, MQTT, Stream, HTTP) ask the same questions of a new
transport: the peer and local addresses, the RabbitMQ-style connection name (``peer -> local``),
and whether the peer is on loopback (the default user ``guest`` may only log in from there, as
in RabbitMQ). A listener's connection keeps the answers as :class:`AcceptedConnection` fields.
Every listener also wants ``TCP_NODELAY``: replies are batched per read already, and a small
batch (a confirm, a PUBACK, one delivery at 1000 msg/s) must not wait for Nagle plus the
peer's delayed ACK (~40 ms).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from .cert_login import certificate_login
from .config import Config


def is_loopback(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or (mapped is not None and mapped.is_loopback)


@dataclass(frozen=True, slots=True)
class Endpoint:
    peer_host: str
    peer_port: int
    host: str
    port: int

    @property
    def name(self) -> str:
        return f"{self.peer_host}:{self.peer_port} -> {self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.peer_host)


def accept(transport: Any) -> Endpoint:
    """Describe a freshly connected transport and switch Nagle off on it."""
    if hasattr(transport, "setTcpNoDelay"):
        transport.setTcpNoDelay(True)
    peer = transport.getPeer()
    host = transport.getHost()
    return Endpoint(str(getattr(peer, "host", "?")), int(getattr(peer, "port", 0) or 0),
                    str(getattr(host, "host", "?")), int(getattr(host, "port", 0) or 0))


class AcceptedConnection:
    """Mixin for a listener's connection: who is at the other end, for its logs, the
    management API's connection list and guest's loopback rule. Placeholders until
    :meth:`accepted` is called from ``connectionMade``."""

    transport: Any
    config: Config                  # its TLS login settings
    peer: tuple[str, int] = ("?", 0)
    local: tuple[str, int] = ("?", 0)
    name: str = "?"
    loopback: bool = False

    def accepted(self, transport: Any) -> Endpoint:
        """Take the facts of the transport just connected (and switch Nagle off on it)."""
        ep = accept(transport)
        self.peer = (ep.peer_host, ep.peer_port)
        self.local = (ep.host, ep.port)
        self.name = ep.name
        self.loopback = ep.loopback
        return ep

    def certificate_name(self) -> str | None:
        """The name the TLS client certificate logs in as (``cert_login.py``), if any."""
        return certificate_login(self.transport, self.config).name
