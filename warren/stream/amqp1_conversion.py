"""A stream's messages between the Stream protocol and the other protocols, as RabbitMQ
converts them: lazily, at delivery, in the direction the reader needs.

The Stream protocol carries AMQP 1.0 messages. RabbitMQ keeps a Stream protocol publish as
the bytes that came and gives a Stream protocol reader every message as AMQP 1.0: a message
published over AMQP 0-9-1, STOMP, MQTT or AMQP 1.0 is encoded with its properties, headers
as application properties and ``x-`` headers as message annotations (RabbitMQ 4's
``mc_amqpl`` -> ``mc_amqp``, here ``amqp1_message.mapping.sections_for``). The other way, an
AMQP 0-9-1 or STOMP reader gets a Stream protocol publish as the 0-9-1 message its AMQP 1.0
sections make (data body, properties, application properties as headers, ``x-`` message
annotations as headers: ``properties_from``, ``body_from``, ``extra_sections``; persistent
only when its header says durable, as RabbitMQ 4.2 and later read it); bytes that are no AMQP
1.0 message (rstream can send raw bytes) are delivered as they are.

Checked side by side with RabbitMQ 3.10.8 (pika, rstream): the same conversions, but as
RabbitMQ 3 made them: every 0-9-1 header (``x-`` ones too) an application property, no
header section (an ``x-basic-delivery-mode`` annotation instead), and subject and message
annotations dropped toward 0-9-1; warren follows RabbitMQ 4's ``mc_amqpl``. On a Stream
protocol publish that is no AMQP 1.0 message (raw bytes, empty) RabbitMQ 3.10.8 closes the
0-9-1 consumer's connection with INTERNAL_ERROR; warren delivers it as it came.

A Stream protocol publish is told apart by its record head's ``STREAM_BODY`` flag, set once
per publish frame, so publishing and Stream protocol replay of those records cost nothing
more; only readers of the other kind pay for a conversion.
"""

from __future__ import annotations

from ..amqp1_message.codec import (DecodeError, decode_message, encode_data_section,
                                   encode_message)
from ..amqp1_message.mapping import (AMQP1_BODY_TYPE, body_from, extra_sections,
                                     properties_from, sections_for)
from ..model.message import STREAM_BODY, Message, PropertiesCodec

#: the encoded sections before the body (``as_amqp1``) by record head: at most this many
#: (then it starts afresh), for heads of at most this many bytes, so the cache stays small
#: whatever publishers send
_PREFIX_LIMIT = 1024
_PREFIX_HEAD = 512
_PREFIXES: dict[bytes, bytes] = {}

#: the converted messages kept for other Stream protocol readers of the same offsets (readers
#: on a tail read the same new messages): about this many bytes, then it starts afresh
CACHE_BYTES = 4 * 1024 * 1024


def is_stream_publish(record: bytes | memoryview) -> bool:
    """Whether a message record (``Message.to_record``) came over the Stream protocol."""
    return bool(record[1] & STREAM_BODY)


def as_amqp1(record: bytes, codec: PropertiesCodec) -> bytes:
    """A message record of another protocol as the AMQP 1.0 message a Stream protocol reader
    gets (with ``x-exchange`` and ``x-routing-key`` annotations, as RabbitMQ 4 sets them).

    Publishers send the same address and properties again and again, and then everything
    before the body is the same: the usual message (one data section, nothing kept of an AMQP
    1.0 publish) is those sections, encoded once per record head (address and properties,
    ``record_head``) and found by it without decoding anything, and its body's data
    section."""
    head_size = len(record) - Message.record_body_size(record)
    key = record[:head_size] if head_size <= _PREFIX_HEAD else None
    prefix = _PREFIXES.get(key) if key is not None else None
    if prefix is None:
        message = Message.from_record(record, codec, 0)
        sections = sections_for(message.properties, message.body, False, message.exchange,
                                message.routing_key, message.amqp1_sections, message.deaths)
        if key is None or message.amqp1_sections is not None or \
                message.properties.type == AMQP1_BODY_TYPE:
            return encode_message(sections)   # the body may be more than one data section
        del sections["data"]
        if len(_PREFIXES) >= _PREFIX_LIMIT:
            _PREFIXES.clear()
        prefix = _PREFIXES[key] = encode_message(sections)
    return prefix + encode_data_section(record[head_size:])


def from_stream_publish(message: Message) -> Message:
    """A Stream protocol publish as an AMQP 0-9-1 / STOMP reader gets it: converted when its
    body is an AMQP 1.0 message, the message as it is when not."""
    try:
        sections = decode_message(message.body)
    except DecodeError:
        return message
    if not sections:
        return message   # an empty body: nothing to convert
    props = properties_from(sections)   # durable only when its header says so
    converted = Message(message.exchange, message.routing_key, body_from(sections),
                        codec=message.codec, props=props)
    converted.amqp1_sections = extra_sections(sections)
    return converted


class ConvertedMessages:
    """Records of other protocols converted for Stream protocol readers, by stream and
    offset, so readers of the same offsets (several on a stream's tail) convert each message
    once. One for the broker, within ``CACHE_BYTES`` whatever the number of streams."""

    def __init__(self) -> None:
        self._by_offset: dict[tuple[object, int], bytes] = {}
        self._bytes = 0

    def convert(self, stream: object, offset: int, record: bytes,
                codec: PropertiesCodec) -> bytes:
        """The AMQP 1.0 message of the record at ``offset`` of ``stream`` (its log)."""
        key = (stream, offset)
        found = self._by_offset.get(key)
        if found is None:
            found = as_amqp1(record, codec)
            if self._bytes + len(found) > CACHE_BYTES:
                self.forget()
            self._by_offset[key] = found
            self._bytes += len(found)
        return found

    def forget(self) -> None:
        """Everything goes (a stream is deleted: its offsets may come again in a new one)."""
        self._by_offset.clear()
        self._bytes = 0


#: the broker's converted messages
CONVERTED = ConvertedMessages()
