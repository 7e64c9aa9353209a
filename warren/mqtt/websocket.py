"""Web-MQTT: the MQTT listener's protocol served over WebSocket (``ws://host:15675/ws``).

MQTT's own rules for WebSocket (3.1.1 section 6, 5.0 section 6): packets travel in binary
messages only, a message may hold several packets or part of one, and the client must offer
the ``mqtt`` subprotocol. As RabbitMQ's Web-MQTT plugin, a client that does not offer it gets
HTTP 400 and a text message closes the connection with 1003. Everything past the WebSocket
layer is the MQTT listener's (the same :class:`MqttFactory`, so one session registry: a
client id taken over TCP is taken over WebSocket too).

A message over ``mqtt_max_packet_size`` is closed with 1009 before the parser sees it; until
CONNECT the parser's smaller pre-authentication limit applies as on TCP.
"""

from __future__ import annotations

from typing import Any

from ..websocket.transport import Profile, WebSocketFactory
from .listener import MqttFactory

MQTT_OVER_WEBSOCKET = Profile(label="Web-MQTT", protocol_name="Web MQTT", subprotocols=("mqtt",),
                              subprotocol_required=True, accepts_text=False, sends_text=False)


def web_mqtt_factory(mqtt: MqttFactory, config: Any, reactor: Any) -> WebSocketFactory:
    return WebSocketFactory(mqtt, MQTT_OVER_WEBSOCKET, reactor,
                            handshake_timeout=config.handshake_timeout,
                            max_message_size=config.mqtt_max_packet_size)
