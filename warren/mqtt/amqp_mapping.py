"""MQTT 5 PUBLISH properties <-> AMQP properties and headers, both ways.

Kept apart from the session as RabbitMQ keeps its STOMP mapping apart (``rabbit_stomp_util``):
user properties <-> headers (``x-mqtt-*`` headers are ours and not shown to MQTT clients),
Content Type <-> content_type, Response Topic -> reply_to (as a routing key on amq.topic,
so an AMQP responder publishes its answer to amq.topic with routing_key=reply_to) and
RabbitMQ 4's ``x-reply-to-topic`` header (the same key); that header, else the reply_to, ->
Response Topic. Correlation Data <-> correlation_id (UTF-8 data; other bytes go in the
``x-correlation-id`` header), Message Expiry Interval (s) -> expiration (ms); the other way
an MQTT subscriber is told the interval left only of an MQTT publish (``MQTT_PUBLISH``
marks one that has it), as RabbitMQ 4's ``mc_mqtt`` knows the time waited only of those:
a 0-9-1 expiration or AMQP 1.0 TTL expires the message all the same. Payload Format
Indicator <-> header ``x-mqtt-payload-format``. QoS 2 and the RETAIN flag of a publish travel in the
``x-mqtt-publish-qos`` / ``x-mqtt-retain`` headers; for other messages QoS is 1 when
persistent, else 0. Header values become User Property strings as RabbitMQ 4 writes them
(``amqp1_message.mqtt.property_text``: ``true``, decimal integers, Erlang's floats); bytes,
tables and arrays have no string form and are left out.

A message published over AMQP 1.0 is delivered as RabbitMQ 4's ``mc_mqtt`` converts it
(``amqp1_message/mqtt.py``): an amqp-value or amqp-sequence body is the payload as a 0-9-1
consumer gets it (the sections encoded) with the Content Type ``message/vnd.rabbitmq.amqp``
(``amqp1_properties``, the one check on the delivery path: only messages with something
0-9-1 has no form for have ``amqp1_sections``), and the reply-to address the 1.0 sender gave
is a Response Topic only when it names a key on the MQTT exchange (``/exchanges/amq.topic/
a.b`` -> ``a/b``). A publish with a Response Topic or Correlation Data is marked
(``MQTT_PUBLISH``) so that AMQP 1.0 receivers get them as RabbitMQ 4 gives them (a reply-to
address, binary correlation data) while 0-9-1 and STOMP consumers keep seeing the key and
the text.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from warren.amqp1_message.mapping import MQTT_PUBLISH, amqp1_view, mqtt_published
from warren.amqp1_message.mqtt import (CONTENT_TYPE_AMQP, MQTT_HEADERS, REPLY_TO_TOPIC,
                                      property_text, response_key)
from warren.model.message import Message, Properties, QueueEntry
from warren.mqtt.retained import RetainedMessage
from warren.mqtt.topics import key_to_topic, topic_to_key

if TYPE_CHECKING:
    from warren.mqtt.session_state import Sub

__all__ = ["amqp1_properties", "build_message", "out_properties", "published_qos",
           "retained_from"]

# our headers, never shown to MQTT clients as user properties
_OWN_HEADERS = MQTT_HEADERS | {"x-correlation-id"}


def build_message(broker: Any, exchange: str, topic: str, payload: bytes, qos: int,
                  retain: bool, props: dict[str, Any], publisher: str | None) -> Message:
    """A core message for an MQTT publish (mapping in the module docstring)."""
    key = topic_to_key(topic)
    headers: dict[str, Any] = {}
    p = Properties(delivery_mode=2 if qos else None)
    for name, value in props.get("user_property", ()):
        headers[name] = value
    if qos == 2:
        headers["x-mqtt-publish-qos"] = 2
    if retain:
        headers["x-mqtt-retain"] = True
    if publisher is not None:
        headers["x-mqtt-publisher"] = publisher
    if "payload_format_indicator" in props:
        headers["x-mqtt-payload-format"] = props["payload_format_indicator"]
    if "content_type" in props:
        p.content_type = props["content_type"]
    if "response_topic" in props:
        p.reply_to = topic_to_key(props["response_topic"])
        headers[REPLY_TO_TOPIC] = p.reply_to    # RabbitMQ 4's header for it (mc_mqtt)
    cd = props.get("correlation_data")
    if cd is not None:
        try:
            text = cd.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and len(cd) <= 255:
            p.correlation_id = text
        else:
            headers["x-correlation-id"] = bytes(cd)
    expiry = props.get("message_expiry_interval")
    if expiry is not None:
        p.expiration = str(expiry * 1000)
    if headers:
        p.headers = headers
    msg = Message(exchange, key, payload, codec=broker.codec, props=p)
    if "response_topic" in props or cd is not None or expiry is not None:
        # AMQP 1.0 receivers get the first two as RabbitMQ 4 does; MQTT subscribers the
        # Message Expiry Interval of MQTT publishes only
        msg.amqp1_sections = MQTT_PUBLISH
    return msg


def retained_from(topic: str, payload: bytes, qos: int, props: dict[str, Any],
                   now: float) -> RetainedMessage:
    keep = {k: v for k, v in props.items()
            if k in ("payload_format_indicator", "content_type", "response_topic",
                     "correlation_data", "user_property")}
    expiry = props.get("message_expiry_interval")
    return RetainedMessage(topic, bytes(payload), qos, keep,
                           now + expiry if expiry is not None else None)


def published_qos(msg: Message) -> int:
    h = msg.properties.headers
    if h and h.get("x-mqtt-publish-qos") == 2:
        return 2
    return 1


def amqp1_properties(msg: Message, props: dict[str, Any], exchange: str) -> None:
    """What differs for a message that has ``amqp1_sections`` (an AMQP 1.0 publish), into
    ``props``: the Content Type of a payload that is body sections encoded, and the Response
    Topic of the reply-to address as the sender gave it (``response_key``)."""
    encoded, reply_to = amqp1_view(msg.amqp1_sections)
    if encoded:
        props["content_type"] = CONTENT_TYPE_AMQP
    if reply_to is not None:
        key = response_key(reply_to, exchange, msg.properties.headers)
        if key is None:
            props.pop("response_topic", None)
        else:
            props["response_topic"] = key_to_topic(key)


def _response_topic(reply_to: str, exchange: str, headers: dict[str, Any] | None) -> str | None:
    """The Response Topic of a reply-to: a routing key on the MQTT exchange as its topic; an
    AMQP 1.0 address (it starts with ``/``) as RabbitMQ 4 reads it (``response_key``)."""
    if not reply_to.startswith("/"):
        return key_to_topic(reply_to)
    key = response_key(reply_to, exchange, headers)
    return key_to_topic(key) if key is not None else None


def out_properties(msg: Message, subs: tuple[Sub, ...], entry: QueueEntry | None,
                   clock: Any, exchange: str) -> dict[str, Any]:
    """MQTT 5 PUBLISH properties for a core message (see the module docstring); *clock* tells
    the Message Expiry Interval left; *exchange* is the MQTT exchange."""
    p = msg.properties
    out: dict[str, Any] = {}
    headers = p.headers
    if headers:
        pfi = headers.get("x-mqtt-payload-format")
        if pfi is not None:
            out["payload_format_indicator"] = int(pfi)
    if p.content_type is not None:
        out["content_type"] = p.content_type
    reply_topic = headers.get(REPLY_TO_TOPIC) if headers else None
    if isinstance(reply_topic, bytes):
        reply_topic = reply_topic.decode("utf-8", "replace")
    if isinstance(reply_topic, str):
        out["response_topic"] = key_to_topic(reply_topic)   # RabbitMQ 4's way (mc_mqtt)
    elif p.reply_to is not None:
        topic = _response_topic(p.reply_to, exchange, headers)
        if topic is not None:
            out["response_topic"] = topic
    if p.correlation_id is not None:
        out["correlation_data"] = p.correlation_id.encode("utf-8")
    elif headers and "x-correlation-id" in headers:
        cd = headers["x-correlation-id"]
        out["correlation_data"] = cd if isinstance(cd, bytes) else str(cd).encode()
    if msg.ttl is not None and entry is not None and entry.expires_at is not None \
            and mqtt_published(msg.amqp1_sections):
        out["message_expiry_interval"] = max(
            0, math.ceil(entry.expires_at - clock.seconds()))
    if headers:
        users = []
        for k, v in headers.items():
            if k not in _OWN_HEADERS and not (k == REPLY_TO_TOPIC
                                                and isinstance(v, (str, bytes))):
                text = v if type(v) is str else property_text(v)   # str: the usual case
                if text is not None:
                    users.append((str(k), text))
        if users:
            out["user_property"] = users
    ids = [s.identifier for s in subs if s.identifier]
    if ids:
        out["subscription_identifier"] = ids
    return out
