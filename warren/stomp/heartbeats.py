"""STOMP heart-beat negotiation: the client's ``heart-beat: cx,cy`` decides both directions.

STOMP 1.1/1.2 "Heart-beating": the client can send every ``cx`` ms and wants one every ``cy``
ms. As ActiveMQ (checked against 5.17) the server sends every ``cy`` ms, expects one every
``cx`` ms, and answers with the spec's server view of that, ``heart-beat: cy,cx``; so a client
that asks for 1 s heart-beats to notice a dead broker gets them every second. RabbitMQ also
honours the client's numbers (rounded to whole seconds) but echoes the header unswapped; the
swapped answer is the one the spec's formula turns into the same intervals on the client.

The one thing warren adds is a floor (``stomp_heartbeat_floor``, 100 ms by default): a client
asking for a heart-beat every millisecond would make the broker write or check a timer a
thousand times a second per connection. A raised value is what CONNECTED reports, so the
client computes the same intervals the broker keeps. ``0`` in either place turns that direction
off, and STOMP 1.0 has no heart-beats at all (``heart-beat:0,0``).

How long a silent client is tolerated is :data:`GRACE` times the interval it promised: the spec
asks receivers for an error margin without fixing one; RabbitMQ and ActiveMQ allow up to about
twice the interval, and so does warren.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import StompError

__all__ = ["GRACE", "Heartbeats", "negotiate"]

#: a client is dropped after this many promised intervals without a byte from it
GRACE = 2.0


@dataclass(frozen=True, slots=True)
class Heartbeats:
    """What one CONNECT negotiated, in ms (0 = off)."""

    send_ms: int       # the broker writes a heart-beat after this long without output
    expect_ms: int     # the client promised a byte at least this often

    @property
    def header(self) -> str:
        """CONNECTED's ``heart-beat`` value: the server's (sx, sy) of the spec."""
        return f"{self.send_ms},{self.expect_ms}"


def parse(value: str | None) -> tuple[int, int]:
    """The client's (cx, cy); a malformed header is an ERROR (as ActiveMQ's ProtocolException)."""
    if value is None:
        return 0, 0
    parts = value.split(",")
    if len(parts) != 2 or not all(p.strip().isascii() and p.strip().isdigit() for p in parts):
        raise StompError("Invalid heart-beat header",
                         f"heart-beat must be two non-negative integers, got {value[:40]!r}")
    return int(parts[0]), int(parts[1])


def negotiate(value: str | None, version: str, floor_ms: int) -> Heartbeats:
    """The intervals a CONNECT's ``heart-beat`` header asks for, raised to *floor_ms*."""
    if version == "1.0":
        return Heartbeats(0, 0)
    client_send, client_expect = parse(value)
    return Heartbeats(_floored(client_expect, floor_ms), _floored(client_send, floor_ms))


def _floored(ms: int, floor_ms: int) -> int:
    return max(ms, floor_ms) if ms else 0
