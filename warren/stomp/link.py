"""What a STOMP session needs from the connection that carries it.

Its own module so that the session and its subscriptions (``subscriptions.py``, a base class
of the session) both name it, and the listener implements it, with no import between them
running upward.
"""

from __future__ import annotations

from typing import Protocol


class Link(Protocol):
    """What the session needs from the connection that carries it (``listener.py``)."""

    write_paused: bool
    name: str                                           # for logs and events

    def write(self, data: bytes) -> None: ...          # batched until the next flush

    def flush(self) -> None: ...

    def close(self) -> None: ...                        # flush, then close the transport

    def set_version(self, version: str) -> None: ...    # header escaping of the parser

    def start_heartbeats(self, send_ms: int, expect_ms: int) -> None: ...

    def set_reading(self, reading: bool) -> None: ...   # memory alarm: stop/start reading

    def certificate_name(self) -> str | None: ...       # TLS client certificate's login name
