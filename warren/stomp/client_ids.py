"""``client-id`` of STOMP connections: one connection per id at a time, as JMS requires.

ActiveMQ (checked against 5.17) refuses a CONNECT whose ``client-id`` an open connection
already has, with ``javax.jms.InvalidClientIDException`` and the text
``Broker: <broker name> - Client: <id> already connected from <address of the first>``, then
closes the connection; the id is free again once the first connection is gone. warren answers
with the same words (its node name as the broker name). The id names durable subscriptions
(``session.py``), so two live connections with one id would share them unawares.

warren also refuses control characters in an id (ActiveMQ takes them): an id is shown in logs,
the console and queue names, where a newline or escape would forge or garble lines.

The registry is per STOMP factory, so the plain and the TLS listener share it; MQTT client ids
are another protocol's (with takeover semantics) and are not checked here.
"""

from __future__ import annotations

from typing import Any

from .codec import StompError

__all__ = ["ClientIds"]


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text)


class ClientIds:
    """The client ids of open STOMP connections -> (session, its peer address)."""

    def __init__(self, broker_name: str) -> None:
        self.broker_name = broker_name
        self._open: dict[str, tuple[Any, str]] = {}

    def claim(self, client_id: str, session: Any, address: str) -> None:
        """Take *client_id* for *session*; StompError when it is malformed or in use."""
        if _has_control(client_id):
            raise StompError("Invalid client-id",
                             f"client-id {client_id[:60]!r} contains control characters\n")
        held = self._open.get(client_id)
        if held is not None and held[0] is not session:
            text = (f"Broker: {self.broker_name} - Client: {client_id} already connected "
                    f"from {held[1]}")
            raise StompError(text, f"javax.jms.InvalidClientIDException: {text}\n")
        self._open[client_id] = (session, address)

    def release(self, client_id: str, session: Any) -> None:
        """The connection of *session* is gone: its id is free."""
        held = self._open.get(client_id)
        if held is not None and held[0] is session:
            del self._open[client_id]

    def __len__(self) -> int:
        return len(self._open)
