"""An AMQP 1.0 message as an MQTT 5 client sees it, and an MQTT 5 publish as an AMQP 1.0
receiver sees it: the rules of RabbitMQ 4's ``mc_mqtt``.

Here, not in ``mqtt/`` nor ``amqp1/``, because both front ends need them and neither may
import the other: the MQTT session unwraps a 1.0 body (``mqtt_payload``) and turns header
values into User Property strings (``property_text``); the 1.0 sender link's
``sections_for`` gives an MQTT publish with Payload-Format-Indicator 1 an amqp-value
string body (``utf8_body``).

1.0 -> MQTT. The payload is the body: data sections joined; an amqp-value binary as its
bytes; an amqp-value that has a text form (a string or symbol, a number, a boolean, null
as the empty string, a timestamp as seconds) as that text in UTF-8 with
Payload-Format-Indicator 1; any other body (an amqp-value map or list, amqp-sequence
sections) as its sections AMQP-encoded, with the Content Type
``message/vnd.rabbitmq.amqp`` in place of the message's own. A value RabbitMQ 4 has no
rule for (a uuid, a char, a described value) is encoded the same way: RabbitMQ 4's
conversion fails on it.

MQTT -> 1.0. A payload published with Payload-Format-Indicator 1 reaches an AMQP 1.0
receiver as an amqp-value string; any other payload as one data section.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .codec import Char, DecodeError, Timestamp, decode_message, encode

#: the Content Type of a payload that is AMQP 1.0 body sections, encoded
CONTENT_TYPE_AMQP = "message/vnd.rabbitmq.amqp"

#: the MQTT header (``mqtt/amqp_mapping.py``) that keeps a publish's Payload Format Indicator
PAYLOAD_FORMAT_HEADER = "x-mqtt-payload-format"
#: the headers the MQTT front end keeps of a publish for its own deliveries (QoS 2, RETAIN,
#: no-local, the format): no User Properties, no AMQP 1.0 annotations (RabbitMQ 4 has none)
MQTT_HEADERS = frozenset(("x-mqtt-publish-qos", "x-mqtt-retain", "x-mqtt-publisher",
                          PAYLOAD_FORMAT_HEADER))


def property_text(value: Any) -> str | None:
    """A value's text as an MQTT User Property or payload holds it, as RabbitMQ 4 writes
    it (``mc_mqtt``): strings as they are, integers in decimal, floats as Erlang's
    ``float_to_binary`` (20 digits, scientific), booleans ``true``/``false``, null the empty
    string, a timestamp (AMQP 1.0 milliseconds, or a 0-9-1 datetime) in seconds. None for
    what has no text: bytes (not UTF-8 by contract), maps, lists, uuids, decimals."""
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


def mqtt_payload(body: bytes) -> tuple[bytes, bool, str | None]:
    """An encoded 1.0 body (its amqp-value or amqp-sequence sections, ``encoded_body``) as
    an MQTT payload: (payload, Payload-Format-Indicator 1, the Content Type that replaces
    the message's or None)."""
    try:
        sections = decode_message(body)
    except DecodeError:
        return body, False, CONTENT_TYPE_AMQP
    if "amqp_value" in sections:
        value = sections["amqp_value"]
        if isinstance(value, bytes):
            return value, False, None
        text = property_text(value)
        if text is not None:
            return text.encode("utf-8"), True, None
    return body, False, CONTENT_TYPE_AMQP


def utf8_body(headers: dict[str, Any] | None, body: bytes) -> bytes | None:
    """The amqp-value section a 1.0 receiver gets for an MQTT publish whose Payload Format
    Indicator said UTF-8 (the session checked the payload is), or None for any other
    message: one data section."""
    if not headers or headers.get(PAYLOAD_FORMAT_HEADER) != 1:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return b"\x00\x53\x77" + encode(text)
