"""An AMQP 1.0 message as an MQTT 5 client sees it, and an MQTT publish as an AMQP 1.0
receiver sees it: the rules of RabbitMQ 4's ``mc_mqtt`` (4.3).

Here, not in ``mqtt/`` nor ``amqp1/``, because both front ends need them and neither may
import the other.

1.0 -> MQTT. The payload is the body as a 0-9-1 consumer gets it: data sections joined;
any other body (an amqp-value of whatever type, even a string or binary, or amqp-sequence
sections) its sections AMQP-encoded, with the footer, and then the Content Type is
``message/vnd.rabbitmq.amqp`` in place of the message's own: RabbitMQ 4 unwraps no
amqp-value and sets no Payload-Format-Indicator (RabbitMQ 3.13 did both). Application
properties and ``x-`` annotations become User Properties in their text forms
(``property_text``). A reply-to gives a Response Topic only when it is the v2 address of a
key on the MQTT exchange (``/exchanges/amq.topic/a.b`` -> ``a/b``), or when Qpid JMS's
``x-opt-jms-reply-to`` annotation says it names a topic (1 or 3): then the address is the
topic.

MQTT -> 1.0. The payload is one data section whatever its Payload-Format-Indicator says;
User Properties are application properties, ``x-`` ones message annotations; the MQTT front
end's own headers (``MQTT_HEADERS``: QoS 2, RETAIN, no-local, the format indicator) are
neither. A Response Topic is the reply-to ``/exchanges/<MQTT exchange>/<quoted key>``, so a
1.0 responder's answer reaches the MQTT requester, and Correlation Data a binary
correlation-id (``mapping.MQTT_PUBLISH`` marks such a publish).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import unquote

from .codec import Char, Timestamp

#: the Content Type of a payload that is AMQP 1.0 body sections, encoded
CONTENT_TYPE_AMQP = "message/vnd.rabbitmq.amqp"

#: the headers the MQTT front end keeps of a publish for its own deliveries (QoS 2, RETAIN,
#: no-local, the Payload Format Indicator): no User Properties, no AMQP 1.0 annotations
#: (RabbitMQ 4 has none)
MQTT_HEADERS = frozenset(("x-mqtt-publish-qos", "x-mqtt-retain", "x-mqtt-publisher",
                          "x-mqtt-payload-format"))

#: RabbitMQ 4's header of an MQTT publish's Response Topic (as a routing key) for 0-9-1 and
#: STOMP consumers, and the header a 0-9-1 publisher names an MQTT Response Topic with
#: (``mc_mqtt``); AMQP 1.0 has the reply-to address for it, so it is no annotation there
REPLY_TO_TOPIC = "x-reply-to-topic"

#: Qpid JMS's annotation of the JMSReplyTo destination's type; 1 a topic, 3 a temporary one
JMS_REPLY_TO = "x-opt-jms-reply-to"


def property_text(value: Any) -> str | None:
    """A value's text as an MQTT User Property holds it, as RabbitMQ 4 writes it
    (``mc_mqtt``): strings as they are, integers in decimal, floats as Erlang's
    ``float_to_binary`` (20 digits, scientific), booleans ``true``/``false``, null the empty
    string, a timestamp (AMQP 1.0 milliseconds, or a 0-9-1 datetime) in seconds. None for
    what has no text: bytes (not UTF-8 by contract), maps, lists, uuids, decimals, chars."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if isinstance(value, str):
        return None if isinstance(value, Char) else str(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Timestamp):
        return str(int(value) // 1000)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.20e}"
    if isinstance(value, datetime):
        return str(int(value.timestamp()))
    return None


def response_key(reply_to: str, exchange: str, headers: dict[str, Any] | None) -> str | None:
    """The routing key an AMQP 1.0 reply-to address names on the MQTT ``exchange`` (its
    Response Topic is that key's topic), or None when it names none."""
    if headers and headers.get(JMS_REPLY_TO) in (1, 3):
        return reply_to
    prefix = f"/exchanges/{exchange}/"
    if reply_to.startswith(prefix):
        return unquote(reply_to[len(prefix):])
    return None
