"""The states of an MQTT connection's session: before CONNECT, connected, closed.

Apart from the session because its subscriptions (``subscriptions.py``) and the listener ask
the state too.
"""

from __future__ import annotations

import enum

__all__ = ["State"]


class State(enum.Enum):
    AWAIT_CONNECT = "awaiting CONNECT"
    CONNECTED = "connected"
    CLOSED = "closed"
