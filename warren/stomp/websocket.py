"""Web-STOMP: the STOMP listener's protocol served over WebSocket (``ws://host:15674/ws``).

As RabbitMQ's Web-STOMP plugin: the subprotocols registered for STOMP (``v12.stomp``,
``v11.stomp``, ``v10.stomp``) are confirmed highest version first, a client offering none of
them is still served (without a subprotocol), frames arrive in text or binary messages, and
the broker writes text messages (binary only for bodies that are not UTF-8, which a text
message cannot carry). Authentication, permissions, destinations and heart-beats are the TCP
listener's own: the same :class:`StompFactory` (and so the same client-id registry and
scheduled deliveries) sits behind both.

A WebSocket message may hold several frames, so its limit is the frame limit
(``stomp_max_frame_size``): a message over it is closed with 1009 before the parser sees it.
"""

from __future__ import annotations

from typing import Any

from ..websocket.transport import Profile, WebSocketFactory
from .listener import StompFactory

STOMP_OVER_WEBSOCKET = Profile(label="Web-STOMP", protocol_name="Web STOMP",
                               subprotocols=("v12.stomp", "v11.stomp", "v10.stomp"),
                               subprotocol_required=False, accepts_text=True, sends_text=True)


def web_stomp_factory(stomp: StompFactory, config: Any, reactor: Any) -> WebSocketFactory:
    return WebSocketFactory(stomp, STOMP_OVER_WEBSOCKET, reactor,
                            handshake_timeout=config.handshake_timeout,
                            max_message_size=config.stomp_max_frame_size)
