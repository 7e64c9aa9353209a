"""The states of a STOMP session and the client frames each one allows.

States are data: before CONNECT only CONNECT/STOMP may come, and a frame its state does not
allow is one error (``session.py``). Apart from the session because its subscriptions
(``subscriptions.py``) ask the state too.
"""

from __future__ import annotations

import enum

__all__ = ["ALLOWED", "State"]


class State(enum.Enum):
    AWAIT_CONNECT = "awaiting CONNECT"
    CONNECTED = "connected"
    CLOSED = "closed"


#: Client frames each state allows; anything else is a protocol error in that state.
ALLOWED: dict[State, frozenset[str]] = {
    State.AWAIT_CONNECT: frozenset({"CONNECT", "STOMP"}),
    State.CONNECTED: frozenset({"SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN",
                                "COMMIT", "ABORT", "DISCONNECT"}),
    State.CLOSED: frozenset(),
}
