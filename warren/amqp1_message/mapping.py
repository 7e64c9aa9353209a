"""AMQP 1.0 message sections <-> the core's AMQP 0-9-1 properties, as RabbitMQ 4 maps them
(``mc_amqpl``): header durable/priority/ttl <-> delivery-mode 2/priority/expiration;
properties message-id, user-id, correlation-id (a uuid as its ``urn:uuid:`` text and back,
a ulong in decimal; a binary or over-long id is the ``x-message-id``/``x-correlation-id``
header, and a 1.0 receiver gets the id as sent, ``_IDS``), content-type, content-encoding
keep their names; reply-to ``/queues/Q`` <-> Q (any other address as it is; a 1.0 receiver
gets the address as sent, ``_REPLY_TO``); group-id <-> app-id; creation-time (ms) <->
timestamp (s); application-properties <-> headers.

The subject has no 0-9-1 form, as in RabbitMQ 4: a 0-9-1 consumer sees the type
``amqp-1.0`` for a body that is not data (below), else the ``x-basic-type`` annotation's
value if the sender gave one, else no type; the subject travels in ``amqp1_sections``
(``_SUBJECT``) to 1.0 receivers, and selectors read it as JMSType (ActiveMQ's mapping;
``broker/jms.py`` asks ``subject_of``). A 0-9-1 type goes out to 1.0 receivers as the
``x-basic-type`` annotation, not the subject. The ``x-basic-*`` annotations, and the
``x-exchange``/``x-routing-key`` a receiver is told at delivery, are no headers
(``mc_amqpl``'s internal ones).

The body, as RabbitMQ 4 keeps it: a 1.0 receiver gets the body section(s) the sender chose,
and a 0-9-1 consumer what RabbitMQ 4's ``mc_amqpl`` gives it. Data sections: their bytes
joined (several sections reach a 1.0 receiver as several again). Any other body (an
amqp-value of whatever type, even a string or binary, or amqp-sequence sections): the core's
body is those sections AMQP-encoded as they came (the footer after them), and the 0-9-1
``type`` is ``amqp-1.0`` (``AMQP1_BODY_TYPE``), so the body can be read back, by a 1.0
receiver after a 0-9-1 hop too (a shovel, federation). A message published over 0-9-1
arrives over 1.0 as one data section, unless
its type says ``amqp-1.0`` and its body is body sections: then it arrives as those
sections, as RabbitMQ 4 decodes it. The MQTT front end's own ``x-mqtt-*`` headers are no
annotations (``mqtt.py``, RabbitMQ 4's ``mc_mqtt``).

Message annotations travel as RabbitMQ's conversion table gives them: an annotation whose
key starts with ``x-`` becomes a header of that name, and a header whose name starts with
``x-`` goes out as a message annotation (a symbol key), the others as application
properties. An annotation's maps and lists become tables and arrays and back (a table's
keys symbols, as ``mc_amqpl`` gives them: an annotation with a map keyed otherwise is kept
as sent for 1.0 receivers); an application property holds simple values only, so a table
or array header is not one.
So annotations and application properties survive a 1.0 -> 1.0 trip through a queue, and
0-9-1 clients see the annotations as the ``x-`` headers RabbitMQ gives them. The dead-letter
history is the exception, as in RabbitMQ 4: the broker's own (``Message.deaths``) reaches a
1.0 receiver as the ``x-opt-deaths`` annotation (an array of maps, both times in
milliseconds: ``_x_opt_deaths``) in place of any a sender gave, and not as its ``x-death``
header; an ``x-opt-deaths`` a 1.0 sender gives reaches 1.0 receivers as sent and, when it
has RabbitMQ 4's shape, 0-9-1 consumers as ``x-death`` (``_x_death``); a 0-9-1 client's
``x-death`` is an ``x-`` header like any (no history: ``broker/deadletter.py``).
So are sender-selected routing keys: a list in the ``x-cc`` annotation is the ``CC`` header
and back.
On delivery the annotations ``x-exchange`` and ``x-routing-key`` say where the message was
published, as RabbitMQ 4 sets them. Delivery annotations are for one hop only (spec 3.2.2)
and are not kept, as RabbitMQ 4 ignores them.

RabbitMQ 4 keeps an AMQP 1.0 message whole, so what has no 0-9-1 form still reaches an AMQP
1.0 receiver: annotations without the ``x-`` prefix, with a ulong key, with a value no
header holds with its AMQP types (a uuid; a symbol, ulong, uint or timestamp, which the
store's 0-9-1 table would give back as a string or a long: ``_header_keeps``), or named as
another front end's own header (``_OTHERS_HEADERS``), the footer, the subject
(``_SUBJECT``), what the body needs (``_ENCODED``, ``_SIZES``), and for no-local the
publishing connection (``_PUBLISHER``).
They travel in the message's ``amqp1_sections`` (``extra_sections``), which only this front
end reads; a 0-9-1, STOMP or MQTT consumer does not see them, as RabbitMQ 4's conversion
to 0-9-1 drops them. A message with one data section and nothing else of the kind has none:
the usual case adds nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from operator import attrgetter
from typing import Any
from urllib.parse import quote, unquote
from uuid import UUID

from ..model.message import Death, Message, Properties
from .codec import (Array, Composite, DecodeError, Long, Symbol, Timestamp, UByte, UInt,
                    ULong, decode_message, encode, encode_data_section, encode_message)
from .mqtt import MQTT_HEADERS, REPLY_TO_TOPIC

#: the 0-9-1 type of a message whose body is AMQP 1.0 body sections, encoded (``mc_amqpl``)
AMQP1_BODY_TYPE = "amqp-1.0"

# The body's notes in ``amqp1_sections``: its delivery-annotations section holds them, a
# section a kept message otherwise never has (delivery annotations are for one hop).
_ENCODED = Symbol("encoded-body")   # true: the core's body is the encoded body sections
_SIZES = Symbol("data-sizes")       # the sizes of the several data sections the body joins
_PUBLISHER = Symbol("publisher")    # the publishing connection's token (``publisher_note``)
_SUBJECT = Symbol("subject")        # the properties' subject, which 0-9-1 has no place for
_REPLY_TO = Symbol("reply-to")      # the reply-to address as sent (0-9-1's drops /queues/)
#: a message-id or correlation-id as sent when 0-9-1 holds it otherwise (binary, a ulong, a
#: string over 255 bytes), by property name
_IDS = {"message_id": Symbol("message-id"), "correlation_id": Symbol("correlation-id")}
#: the 0-9-1 header holding such an id that 0-9-1 has no property for (``mc_amqpl``)
_ID_HEADERS = {"message_id": "x-message-id", "correlation_id": "x-correlation-id"}
#: annotations that are no 0-9-1 headers (``mc_amqpl``'s ``is_internal_header``)
_INTERNAL = ("x-basic-", "x-exchange", "x-routing-key")
#: annotations named as headers other front ends or 0-9-1 ids use (``sections_for`` gives no
#: 1.0 receiver those headers): a 1.0 sender's are kept as sent
_OTHERS_HEADERS = MQTT_HEADERS | {REPLY_TO_TOPIC, *_ID_HEADERS.values()}
#: the notes of an encoded body with nothing else kept (the usual case for one): one object
#: shared by every such message, and known on delivery without decoding
_ENCODED_ONLY = encode_message({"delivery_annotations": {_ENCODED: True}})
_MQTT = Symbol("mqtt")              # an MQTT publish (below)
#: the dead-letter history as RabbitMQ 4 gives it to AMQP 1.0 receivers (``deaths``, below)
_DEATHS = Symbol("x-opt-deaths")
#: sender-selected routing keys: 0-9-1's ``CC`` header is this annotation and back
_CC = Symbol("x-cc")
#: the ``amqp1_sections`` of an MQTT publish with a Response Topic, Correlation Data or
#: Message Expiry Interval: a 1.0 receiver gets the first two as RabbitMQ 4's ``mc_mqtt``
#: gives them (a reply-to address on the MQTT exchange, binary correlation data), not as the
#: 0-9-1 reply-to and correlation-id the other protocols see; an MQTT subscriber is told
#: the expiry of such a message only (``mqtt_published``)
MQTT_PUBLISH = encode_message({"delivery_annotations": {_MQTT: True}})

_PLAIN = (str, bytes, int, float, bool)
_DROP = object()        # a value the other side has no type for: left out


def _header_value(value: Any) -> Any:
    """An annotation's value as a header holds it: maps as tables, lists as arrays."""
    if value is None or isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        return {str(k): v for k, v in ((k, _header_value(v)) for k, v in value.items())
                if v is not _DROP}
    if isinstance(value, list):
        return [v for v in map(_header_value, value) if v is not _DROP]
    return _DROP                        # uuid, described values


#: the types a header gives back as they came, after the store too (a 0-9-1 table holds a
#: string, binary, boolean, long, double or void; an AMQP 1.0 int goes out as a long)
_HEADER_TYPES = frozenset({str, bytes, bool, int, Long, float, type(None)})


def _header_keeps(value: Any) -> bool:
    """Whether a header holds ``value`` with its AMQP types, so that a 1.0 receiver gets it
    back from the store as sent: a symbol, a ulong, a uint or a timestamp would come back a
    string or a long, a map's string keys symbols (``_amqp1_value``), an array a list. Such
    an annotation is kept as sent (``extra_sections``): RabbitMQ 4 keeps the message whole."""
    kind = type(value)
    if kind in _HEADER_TYPES:
        return True
    if kind is dict:
        return all(type(k) is Symbol and _header_keeps(v) for k, v in value.items())
    if kind is list:
        return all(map(_header_keeps, value))
    return False


def _amqp1_value(value: Any) -> Any:
    """A header's value in AMQP 1.0 types: tables as maps (their keys symbols, as RabbitMQ
    4's ``mc_amqpl`` gives them), arrays as lists, timestamps in milliseconds."""
    if value is None or isinstance(value, _PLAIN):
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, datetime):
        return Timestamp(int(value.timestamp() * 1000))
    if isinstance(value, dict):
        return {Symbol(k): v for k, v in ((str(k), _amqp1_value(v)) for k, v in value.items())
                if v is not _DROP}
    if isinstance(value, (list, tuple)):
        return [v for v in map(_amqp1_value, value) if v is not _DROP]
    return _DROP                        # decimals


def _x_opt_deaths(deaths: tuple[Death, ...]) -> Array:
    """The broker's death history (``Message.deaths``) as RabbitMQ 4's ``x-opt-deaths``
    annotation: an array of maps, most recent death first, each with the symbol keys
    ``ttl`` (uint, only when the message had a per-message TTL), ``queue``, ``reason`` (a
    symbol), ``count`` (ulong), ``first-time`` and ``last-time`` (timestamps: the first
    and the latest death of that queue and reason), ``exchange`` and ``routing-keys`` (an
    array of strings), in that order (``mc_amqp``'s ``encode_deaths``)."""
    out = Array(0xd1)
    for d in deaths:
        entry: dict[Symbol, Any] = {}
        if d.ttl is not None:
            entry[Symbol("ttl")] = UInt(d.ttl)
        entry[Symbol("queue")] = d.queue
        entry[Symbol("reason")] = Symbol(d.reason)
        entry[Symbol("count")] = ULong(d.count)
        entry[Symbol("first-time")] = Timestamp(d.first_time)
        entry[Symbol("last-time")] = Timestamp(d.last_time)
        entry[Symbol("exchange")] = d.exchange
        entry[Symbol("routing-keys")] = Array(0xb1, list(d.routing_keys))
        out.append(entry)
    return out


def _x_death(deaths: Any) -> list[dict[str, Any]] | None:
    """An ``x-opt-deaths`` annotation as the ``x-death`` header 0-9-1 consumers get, as
    RabbitMQ 4's ``mc_amqpl`` converts it: each map's first-time as the table's time (in
    seconds), its ttl as ``original-expiration``. None when it is not RabbitMQ 4's shape
    (an array of such maps): RabbitMQ 4 then gives 0-9-1 consumers no ``x-death``."""
    if not isinstance(deaths, Array) or not all(isinstance(d, dict) for d in deaths):
        return None
    tables = []
    for death in deaths:
        queue, reason, exchange = (death.get(k) for k in ("queue", "reason", "exchange"))
        count, first, keys = (death.get(k) for k in ("count", "first-time", "routing-keys"))
        if not (isinstance(queue, str) and isinstance(reason, str)
                and isinstance(exchange, str) and isinstance(count, int)
                and isinstance(first, Timestamp) and isinstance(keys, list)
                and all(isinstance(k, str) for k in keys)):
            return None
        table: dict[str, Any] = {}
        ttl = death.get("ttl")
        if isinstance(ttl, int) and not isinstance(ttl, bool):
            table["original-expiration"] = str(ttl)
        table.update({"count": int(count), "reason": str(reason), "queue": str(queue),
                      "time": datetime.fromtimestamp(first // 1000, tz=timezone.utc),
                      "exchange": str(exchange), "routing-keys": [str(k) for k in keys]})
        tables.append(table)
    return tables


def _text(value: Any) -> Any:
    """A header's string as text (0-9-1 decodes a long string as bytes)."""
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) \
        else value


def properties_from(sections: dict[str, Any]) -> Properties:
    """The core's properties of a received message. Durable when its header says durable,
    or, with no durable in the header, when an ``x-basic-delivery-mode`` annotation says 2
    (a message from 0-9-1 that came back): the AMQP 1.0 default (false), as RabbitMQ 4.2 and
    later read it (``mc_amqp``'s ``get_property(durable)``), and RabbitMQ 3.10's plugin.
    RabbitMQ 4.0 and 4.1 took a missing durable as true; 4.2 went back to the
    spec so that a client that leaves the header out for a non-persistent message (Qpid
    JMS, go-amqp) is read as it meant, for JMSDeliveryMode selectors too. So a message
    python-qpid-proton, rstream or rbfly send at the defaults (no durable) is transient."""
    props = Properties()
    header = sections.get("header")
    durable = header.durable if header is not None else None
    if durable is None:
        mode = (sections.get("message_annotations") or {}).get("x-basic-delivery-mode")
        durable = type(mode) is UByte and mode == 2
    if durable:
        props.delivery_mode = 2
    if header is not None:
        if header.priority is not None:
            props.priority = int(header.priority)
        if header.ttl is not None:
            props.expiration = str(int(header.ttl))
    p = sections.get("properties")
    id_headers: dict[str, Any] = {}
    if p is not None:
        for name in ("correlation_id", "message_id"):
            value = getattr(p, name)
            if value is not None:
                text = _id_text(value)
                if text is None or len(text.encode("utf-8")) > 255:
                    id_headers[_ID_HEADERS[name]] = value   # binary, or too long
                else:
                    setattr(props, name, text)
        if p.user_id is not None:
            props.user_id = bytes(p.user_id).decode("utf-8", "replace")
        if p.reply_to is not None:
            props.reply_to = _reply_to_091(str(p.reply_to))
        if isinstance(p.group_id, str) and len(p.group_id.encode("utf-8")) <= 255:
            props.app_id = p.group_id
        if p.content_type is not None:
            props.content_type = str(p.content_type)
        if p.content_encoding is not None:
            props.content_encoding = str(p.content_encoding)
        if p.creation_time is not None:
            props.timestamp = int(p.creation_time) // 1000
    # the x- annotations first, then the application properties, as RabbitMQ 4 orders
    # them for 0-9-1 (mc_amqpl) and MQTT (mc_mqtt's User Properties)
    headers: dict[str, Any] = {}
    for key, value in (sections.get("message_annotations") or {}).items():
        if key == _DEATHS:
            history = _x_death(value)   # RabbitMQ 4's history: x-death, if it is one
            if history is not None:
                headers["x-death"] = history
        elif key == "x-cc" and type(value) is list:
            value = _header_value(value)
            if value is not _DROP:
                headers["CC"] = value   # sender-selected keys: 0-9-1's CC (``mc_amqpl``)
        elif _is_header(key):
            value = _header_value(value)
            if value is not _DROP:
                headers[str(key)] = value
    headers.update(id_headers)
    for key, value in (sections.get("application_properties") or {}).items():
        if isinstance(value, _PLAIN) or value is None:
            headers[str(key)] = value
    if headers:
        props.headers = headers
    if "encoded_body" in sections:
        props.type = AMQP1_BODY_TYPE    # an encoded body, RabbitMQ 4 tells 0-9-1 consumers
    else:
        kind = (sections.get("message_annotations") or {}).get("x-basic-type")
        if isinstance(kind, str):
            props.type = str(kind)
    return props


#: ``properties_from``'s result by (the encoded sections before the body, whether the body
#: is an encoded one): a sender repeats a few of those, and the mapping cost the broker about
#: a tenth of its time per AMQP 1.0 publish; cleared when full
_RECEIVED: dict[tuple[bytes, bool], Properties] = {}
_RECEIVED_MAX = 4096


def received_properties(sections: dict[str, Any], prefix: bytes | None) -> Properties:
    """``properties_from(sections)``, computed once per distinct ``prefix`` (the bytes
    ``codec.decode_received`` gives: None, no caching) and body kind. The object is
    shared by the messages that repeat those bytes, as the core shares properties: it copies
    before it changes any (dead-lettering, the delayed exchange, a delivery's count)."""
    if prefix is None:
        return properties_from(sections)
    key = (prefix, "encoded_body" in sections)
    props = _RECEIVED.get(key)
    if props is None:
        props = properties_from(sections)
        if len(_RECEIVED) >= _RECEIVED_MAX:
            _RECEIVED.clear()
        _RECEIVED[key] = props
    return props


def cc_of(sections: dict[str, Any]) -> list[str] | None:
    """The routing keys a message's ``x-cc`` annotation adds to its address's, as RabbitMQ
    4 routes them (sender-selected distribution): a list of strings. Any other value routes
    nothing more (RabbitMQ 4 reads a list only); it still travels as an annotation."""
    cc = (sections.get("message_annotations") or {}).get("x-cc")
    if type(cc) is not list:            # an Array is no list to RabbitMQ 4 either
        return None
    return [str(key) for key in cc if isinstance(key, str)] or None


def _reply_to_091(address: str) -> str | None:
    """A reply-to address as 0-9-1 holds it: a queue's v2 address as the queue's name (a
    0-9-1 responder publishes to it through the default exchange), any other as it is
    (RabbitMQ 4's ``mc_amqpl``). A 1.0 receiver gets the address as sent (``_REPLY_TO``)."""
    if address.startswith("/queues/"):
        try:
            return unquote(address[8:], errors="strict")
        except UnicodeDecodeError:
            return None                 # no name: RabbitMQ 4 drops it too
    return address


def _id_text(value: Any) -> str | None:
    """A message-id or correlation-id as a 0-9-1 property holds it: a uuid as its URN
    (``urn:uuid:...``), a ulong in decimal, a string as it is; binary has none (it goes in
    the ``x-message-id``/``x-correlation-id`` header: RabbitMQ 4's ``mc_amqpl``)."""
    if isinstance(value, bytes):
        return None
    if isinstance(value, UUID):
        return value.urn
    if isinstance(value, str):
        return value
    return str(int(value))


def _id_value(text: str | None) -> Any:
    """A 0-9-1 message-id or correlation-id as AMQP 1.0 holds it: a uuid's URN as the
    uuid, as RabbitMQ 4 converts it back; any other text a string."""
    if text is not None and text.startswith("urn:uuid:") and len(text) == 45:
        try:
            return UUID(text[9:])
        except ValueError:
            pass
    return text


def _is_header(key: Any) -> bool:
    """An annotation 0-9-1 has as a header: an ``x-`` key but the internal ones (RabbitMQ
    4's ``mc_amqpl``)."""
    return isinstance(key, str) and key.startswith("x-") and not key.startswith(_INTERNAL) \
        and key != _DEATHS


def extra_sections(sections: dict[str, Any], publisher: bytes | None = None) -> bytes | None:
    """What of a received message has no 0-9-1 form, encoded for ``Message.amqp1_sections``:
    the annotations ``properties_from`` makes no header of, or not all of (a uuid in a map),
    the footer, the body's notes (an encoded body, several data sections) and ``publisher``,
    its connection's token while that has a no-local receiver. None when there is none (the
    usual case: nothing is added)."""
    annotations = {key: value for key, value in
                   (sections.get("message_annotations") or {}).items()
                   if key == _DEATHS        # as sent, for 1.0 receivers (``sections_for``)
                   or not _is_header(key) or key in _OTHERS_HEADERS
                   or not _header_keeps(value)}   # a header would change it
    footer = sections.get("footer") or None
    notes: dict[Symbol, Any] = {}
    p = sections.get("properties")
    if p is not None:
        if p.subject is not None:
            notes[_SUBJECT] = str(p.subject)
        if p.reply_to is not None:
            notes[_REPLY_TO] = str(p.reply_to)
        for name, note in _IDS.items():
            value = getattr(p, name)
            if value is not None and not isinstance(value, UUID) and not (
                    isinstance(value, str) and len(value.encode("utf-8")) <= 255):
                notes[note] = value     # 0-9-1 holds it in another form
    if "encoded_body" in sections:
        notes[_ENCODED] = True
        footer = None                   # after it in the body (body_from)
    elif len(sections.get("data", ())) > 1:
        notes[_SIZES] = [UInt(len(chunk)) for chunk in sections["data"]]
    if publisher is not None:
        notes[_PUBLISHER] = publisher
    if not annotations and footer is None:
        if not notes:
            return None
        if list(notes) == [_ENCODED]:
            return _ENCODED_ONLY
    return encode_message({"delivery_annotations": notes or None,
                           "message_annotations": annotations or None, "footer": footer})


def _notes(extra: bytes | None) -> dict[Any, Any]:
    """The notes ``extra_sections`` wrote into a message's ``amqp1_sections``."""
    if extra is None:
        return {}
    if extra is _ENCODED_ONLY or extra == _ENCODED_ONLY:
        return {_ENCODED: True}
    if extra is MQTT_PUBLISH or extra == MQTT_PUBLISH:
        return {_MQTT: True}
    return decode_message(extra).get("delivery_annotations") or {}


def amqp1_view(extra: bytes | None) -> tuple[bool, str | None]:
    """Of a message whose ``amqp1_sections`` are ``extra``: whether its body is AMQP 1.0
    body sections encoded (an amqp-value or amqp-sequence body), not data's bytes, and the
    reply-to address an AMQP 1.0 sender gave (None: none, or no 1.0 sender)."""
    notes = _notes(extra)
    reply_to = notes.get(_REPLY_TO)
    return bool(notes.get(_ENCODED)), reply_to if isinstance(reply_to, str) else None


def mqtt_published(extra: bytes | None) -> bool:
    """Whether a message whose ``amqp1_sections`` are ``extra`` is an MQTT publish with a
    Response Topic, Correlation Data or Message Expiry Interval (``MQTT_PUBLISH``): only
    such a message tells MQTT subscribers its expiry, as RabbitMQ 4's ``mc_mqtt`` knows
    the time it waited only of messages published over MQTT."""
    return extra is MQTT_PUBLISH or extra == MQTT_PUBLISH


def subject_of(extra: bytes) -> str | None:
    """The subject an AMQP 1.0 sender gave, from a message's ``amqp1_sections``."""
    subject = _notes(extra).get(_SUBJECT)
    return subject if isinstance(subject, str) else None


def publisher_note(token: bytes) -> bytes:
    """The bytes ``extra_sections`` writes for a message published with ``token`` (a
    connection's random token): a message whose ``amqp1_sections`` hold them was published
    on that connection (no-local). The token is random and never sent, so no publisher can
    write it into an annotation of its own."""
    return encode(_PUBLISHER) + encode(token)


def body_from(sections: dict[str, Any]) -> bytes:
    """The body the core keeps: data sections joined; any other body its sections encoded
    as they came, and the footer after them, as RabbitMQ 4's 0-9-1 body (and MQTT payload)
    for them is (``mc_amqp``'s ``amqp_encoded_body_and_footer``)."""
    if "data" in sections:
        return b"".join(sections["data"])
    return sections.get("encoded_body", b"") + sections.get("encoded_footer", b"")


def _held_sections(body: bytes) -> dict[str, Any] | None:
    """A 0-9-1 body typed ``amqp-1.0`` as the body sections it holds (RabbitMQ 4 decodes
    it for 1.0 receivers), or None when it holds anything else: then it is one data
    section, as any 0-9-1 body."""
    try:
        held = decode_message(body)
    except DecodeError:
        return None
    if not set(held) <= {"data", "amqp_value", "amqp_sequence", "encoded_body", "footer",
                         "encoded_footer"} \
            or not held.keys() & {"data", "amqp_value", "amqp_sequence"}:
        return None
    return held


def _body(sections: dict[str, Any], body: bytes, notes: dict[Any, Any],
          props: Properties) -> None:
    """The body sections a 1.0 receiver gets, into ``sections``."""
    if notes.get(_ENCODED):
        sections["encoded_body"] = body
        return
    sizes = notes.get(_SIZES)
    if sizes and sum(sizes) == len(body):
        chunks, at = [], 0
        for size in sizes:
            chunks.append(body[at:at + size])
            at += size
        sections["data"] = chunks
        return
    held = _held_sections(body) if props.type == AMQP1_BODY_TYPE else None
    if held is None:
        sections["data"] = [body]
    elif "data" in held:
        sections["data"] = held["data"]
        if held.get("footer"):
            sections["footer"] = held["footer"]
    else:
        sections["encoded_body"] = body         # the footer, if any, with it


def _mqtt_reply(props: Properties, exchange: str) -> tuple[str | None, Any]:
    """An MQTT publish's reply-to and correlation-id as RabbitMQ 4's ``mc_mqtt`` gives them
    to 1.0 receivers: the Response Topic as the v2 address of its key on the exchange the
    publish went to (the MQTT exchange), the Correlation Data as binary (a uuid's URN as the
    uuid), kept by the MQTT front end as the correlation-id or, when it is no short UTF-8
    string, the ``x-correlation-id`` header."""
    reply_to = f"/exchanges/{exchange}/{quote(props.reply_to, safe='')}" \
        if props.reply_to is not None else None
    correlation: Any = None
    if props.correlation_id is not None:
        correlation = _id_value(props.correlation_id)
        if isinstance(correlation, str):
            correlation = correlation.encode("utf-8")
    else:
        held = (props.headers or {}).get("x-correlation-id")
        if isinstance(held, (bytes, bytearray)):
            correlation = bytes(held)
    return reply_to, correlation


def sections_for(props: Properties, body: bytes, redelivered: bool, exchange: str,
                 routing_key: str, extra: bytes | None = None,
                 deaths: tuple[Death, ...] | None = None,
                 delivery_count: int = 0) -> dict[str, Any]:
    """The sections a receiver gets; ``extra``: the message's ``amqp1_sections``,
    ``deaths``: its ``deaths`` (the broker's dead-letter history, ``x-opt-deaths``),
    ``delivery_count``: its failed deliveries (the queue entry's).

    The header is never empty, as RabbitMQ 4's ``update_header_from_anns`` writes it:
    first-acquirer is true unless the message was delivered before or dead-lettered, and
    delivery-count is the failed deliveries, as RabbitMQ 4.3's classic and quorum queues
    count them: a release is none, so a released message comes back with first-acquirer
    false and delivery-count 0 (RabbitMQ 4.0-4.2's classic queues wrote 0 always). A zero
    is left out, the field's default (RabbitMQ writes it; a receiver reads the same)."""
    if extra is None:
        kept: dict[str, Any] = {}
    elif extra == _ENCODED_ONLY:
        kept = {"delivery_annotations": {_ENCODED: True}}
    else:
        kept = decode_message(extra)
    notes = kept.get("delivery_annotations") or {}
    sections: dict[str, Any] = {
        "header": Composite("header", durable=props.delivery_mode == 2 or None,
                            priority=UByte(props.priority) if props.priority is not None
                            else None,
                            ttl=UInt(int(props.expiration)) if props.expiration is not None
                            and props.expiration.isdigit() else None,
                            first_acquirer=not redelivered and deaths is None,
                            delivery_count=UInt(delivery_count) if delivery_count else None),
    }
    _body(sections, body, notes, props)
    subject = notes.get(_SUBJECT)
    # the ids as an AMQP 1.0 sender gave them, else as RabbitMQ 4 converts 0-9-1's
    sent_ids = {name: notes[note] for name, note in _IDS.items() if note in notes} \
        if notes else {}                # (most messages have no notes: no walk per delivery)
    correlation = sent_ids.get("correlation_id", _id_value(props.correlation_id))
    reply_to = notes.get(_REPLY_TO)     # as an AMQP 1.0 sender gave it
    if reply_to is None and props.reply_to is not None:
        # a queue's name, as RabbitMQ 4 writes a 0-9-1 reply-to
        reply_to = f"/queues/{quote(props.reply_to, safe='')}"
    mqtt = bool(notes.get(_MQTT))
    if mqtt:
        reply_to, correlation = _mqtt_reply(props, exchange)
    fields = dict(message_id=sent_ids.get("message_id", _id_value(props.message_id)),
                  correlation_id=correlation,
                  user_id=props.user_id.encode("utf-8") if props.user_id is not None else None,
                  reply_to=reply_to, subject=subject if isinstance(subject, str) else None,
                  content_type=Symbol(props.content_type) if props.content_type else None,
                  content_encoding=Symbol(props.content_encoding)
                  if props.content_encoding else None,
                  creation_time=Timestamp(props.timestamp * 1000)
                  if props.timestamp is not None else None, group_id=props.app_id)
    if any(v is not None for v in fields.values()):
        sections["properties"] = Composite("properties", **fields)
    annotations: dict[Any, Any] = {}
    if props.type is not None and not notes.get(_ENCODED):
        # a 0-9-1 type (an AMQP 1.0 sender's type annotation: kept as it came, below)
        annotations[Symbol("x-basic-type")] = props.type
    app: dict[str, Any] = {}
    id_headers = {_ID_HEADERS[name] for name in sent_ids}    # the ids are properties again
    kept_annotations = kept.get("message_annotations") or {}
    for key, value in (props.headers or {}).items():
        if key == "x-death" and (deaths is not None or _DEATHS in kept_annotations):
            continue    # the broker's history, or a 1.0 sender's x-opt-deaths: below
        value = _amqp1_value(value)
        if value is _DROP or key in id_headers:
            continue
        if key.startswith("x-"):
            if key not in MQTT_HEADERS and not (
                    mqtt and key in ("x-correlation-id", REPLY_TO_TOPIC)):
                annotations[Symbol(key)] = value    # not the MQTT front end's own
        elif key == "CC" and isinstance(value, list):
            annotations[_CC] = value    # no application property holds a list (``mc_amqpl``)
        elif not isinstance(value, (dict, list)):
            app[key] = value            # a table or array is no application property
    annotations.update(kept_annotations)
    if deaths is not None:
        annotations[_DEATHS] = _x_opt_deaths(deaths)    # in place of a sender's
    if "footer" in kept:
        sections["footer"] = kept["footer"]
    annotations[Symbol("x-exchange")] = exchange
    annotations[Symbol("x-routing-key")] = routing_key
    sections["message_annotations"] = annotations
    if app:
        sections["application_properties"] = app
    return sections


#: the encoded sections before the body of the usual delivery, by what decides them (see
#: ``encode_delivery``); None for a key whose body needs a look (a 0-9-1 body typed
#: ``amqp-1.0``); cleared when full
_PREFIXES: dict[tuple[Any, ...], bytes | None] = {}
_PREFIXES_MAX = 4096
_MISSING = b"(no prefix yet)"     # by identity: no encoded prefix is this object
#: a Properties' fields but its headers, as one tuple (built in C)
_FIELDS = attrgetter(*(name for name in Properties.__slots__ if name != "headers"))


def encode_delivery(message: Message, redelivered: bool, delivery_count: int = 0) -> bytes:
    """The AMQP 1.0 message a receiver gets of ``message`` (``sections_for``, encoded).

    Most deliveries are a message with nothing of its own but its properties, exchange and
    routing key, and a queue's deliveries repeat a few of those: the sections before the
    body (header, annotations, properties, application properties) are the same bytes each
    time. They are encoded once per (properties, redelivered, exchange, routing key, body
    kind) and the body section appended: building the sections and walking the encoder cost
    the broker 16-19 us a delivery, most of its CPU after the core's (timeit, loaded 2-core
    machine); the look-up about 2. What has more (a dead-letter history, a failed delivery,
    annotations or a footer kept, several data sections, an MQTT publish, a 0-9-1 body
    typed ``amqp-1.0``) takes the general way."""
    extra = message.amqp1_sections
    if message.deaths is None and not delivery_count and (
            extra is None or extra is _ENCODED_ONLY or extra == _ENCODED_ONLY):
        raw = message.raw_props
        key: Any = raw
        if raw is None:
            props = message.properties
            key = _FIELDS(props) if props.headers is None else None
        if key is not None:
            key = (key, redelivered, message.exchange, message.routing_key, extra is None)
            prefix = _PREFIXES.get(key, _MISSING)
            if prefix is _MISSING:
                prefix = _prefix(message, redelivered, extra)
                if len(_PREFIXES) >= _PREFIXES_MAX:
                    _PREFIXES.clear()
                _PREFIXES[key] = prefix
            if prefix is not None:
                body = message.body
                return prefix + (encode_data_section(body) if extra is None else body)
    return encode_message(sections_for(message.properties, message.body, redelivered,
                                       message.exchange, message.routing_key, extra,
                                       message.deaths, delivery_count))


def _prefix(message: Message, redelivered: bool, extra: bytes | None) -> bytes | None:
    """The sections before the body, encoded, of a message ``encode_delivery`` may take the
    short way for; None when its body decides more than the body sections."""
    props = message.properties
    if extra is None and props.type == AMQP1_BODY_TYPE:
        return None                     # its body may hold sections (``_held_sections``)
    sections = sections_for(props, b"", redelivered, message.exchange, message.routing_key,
                            extra)
    sections.pop("data", None)
    sections.pop("encoded_body", None)
    return encode_message(sections)
