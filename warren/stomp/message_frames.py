"""MESSAGE frames of one subscription, built from pieces encoded once.

Why: a MESSAGE's first headers (``subscription``, ``destination``, the ``message-id`` and
``ack`` prefixes) are the same for every delivery of a subscription, or change rarely (the
destination follows the message's exchange and routing key), yet encoding the whole frame
escaped and checked each of them again per delivery: some 3-4% of a STOMP message's
instructions (callgrind). Here they are escaped and checked once, when the subscription is
made, and a delivery encodes only what is its own (its number, the properties, the counts).

The bytes are exactly what :func:`~warren.stomp.codec.encode_message` writes for the same
headers (the codec's checks are per line, so lines encoded apart join into the same frame).
Where a piece cannot be written in the session's version (STOMP 1.0 has no escapes), or a
message's own headers cannot, :meth:`MessageFrames.build` answers None and the session builds
that frame the general way, which leaves out what cannot be written.
"""

from __future__ import annotations

from ..model.message import QueueEntry
from .codec import encode_header_lines
from .destinations import destination_header
from .headers import DELIVERY_COUNT_HEADER, property_headers


class MessageFrames:
    """The encoded pieces of one subscription's MESSAGE frames (see the module docstring)."""

    __slots__ = ("version", "start", "message_id", "ack", "fixed_destination",
                 "destination_key", "destination_line")

    def __init__(self, version: str, sub_id: str, named: bool, id_prefix: str,
                 with_ack: bool, fixed_destination: str | None) -> None:
        """Raises ValueError when a piece cannot be written in *version* (the session then
        builds this subscription's frames the general way)."""
        self.version = version
        head = [("subscription", sub_id)] if named else []
        self.start = b"MESSAGE\n" + encode_header_lines(head, version)
        # "<name>:<escaped prefix>" of a line whose number follows (digits need no escape);
        # encoded with a number so that the checks see the value as it will be
        self.message_id = encode_header_lines((("message-id", id_prefix + "0"),), version)[:-2]
        self.ack = encode_header_lines((("ack", id_prefix + "0"),), version)[:-2] \
            if with_ack else None
        self.fixed_destination = fixed_destination is not None
        self.destination_key: tuple[str, str] | None = None
        self.destination_line = b"" if fixed_destination is None else encode_header_lines(
            (("destination", fixed_destination),), version)

    def build(self, entry: QueueEntry, number: int, stream_offset: bool) -> bytes | None:
        """The MESSAGE frame of delivery *number* of *entry*, or None when some header of it
        cannot be written in this version."""
        message = entry.message
        version = self.version
        if not self.fixed_destination:
            key = (message.exchange, message.routing_key)
            if key != self.destination_key:
                try:
                    self.destination_line = encode_header_lines(
                        (("destination", destination_header(*key)),), version)
                except ValueError:
                    return None
                self.destination_key = key
        own: list[tuple[str, str]] = []
        property_headers(message.properties, own)
        if stream_offset:   # a stream: where the message is in it (RabbitMQ's header)
            own.append(("x-stream-offset", str(entry.seq)))
        # ActiveMQ's count: 1 on the first delivery, one more for each return to the queue
        own.append((DELIVERY_COUNT_HEADER, str(entry.delivery_count + 1)))
        body = message.body
        own.append(("content-length", str(len(body))))
        try:
            tail = encode_header_lines(own, version)
        except ValueError:
            return None
        digits = str(number).encode("ascii")
        redelivered = b"redelivered:true\n" if entry.redelivered else b"redelivered:false\n"
        ack = self.ack
        if ack is None:
            return b"".join((self.start, self.destination_line, self.message_id, digits, b"\n",
                             redelivered, tail, b"\n", body, b"\0"))
        return b"".join((self.start, self.destination_line, self.message_id, digits, b"\n",
                         redelivered, ack, digits, b"\n", tail, b"\n", body, b"\0"))
