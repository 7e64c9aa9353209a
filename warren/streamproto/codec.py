"""The RabbitMQ Stream protocol's wire format, sans I/O: bytes in, frames out, and back.

As ``PROTOCOL.adoc`` of ``rabbitmq_stream`` writes it: every frame is ``size u32`` then
``key u16``, ``version u16`` and the command's fields, all big-endian; a response's key has
the top bit set. Strings are ``int16`` length + UTF-8 (length -1: null), byte blobs ``int32``
length + bytes, arrays ``int32`` count + items. :class:`FrameReader` cuts a byte stream into
frames and refuses one larger than its bound (the listener's: small before authentication,
64 MiB after); :class:`Fields` reads one
frame's fields and raises :class:`MalformedFrame` when they run short or past the end, so a bad
frame never becomes a traceback. The encoders build the server's frames, ``deliver_frame`` an
osiris chunk of simple entries (what clients such as ``rstream`` decode).

This module imports neither the core nor Twisted.
"""

from __future__ import annotations

import struct
import zlib
from typing import Iterable, NamedTuple, Sequence

# command keys
DECLARE_PUBLISHER = 1
PUBLISH = 2
PUBLISH_CONFIRM = 3
PUBLISH_ERROR = 4
QUERY_PUBLISHER_SEQUENCE = 5
DELETE_PUBLISHER = 6
SUBSCRIBE = 7
DELIVER = 8
CREDIT = 9
STORE_OFFSET = 10
QUERY_OFFSET = 11
UNSUBSCRIBE = 12
CREATE = 13
DELETE = 14
METADATA = 15
METADATA_UPDATE = 16
PEER_PROPERTIES = 17
SASL_HANDSHAKE = 18
SASL_AUTHENTICATE = 19
TUNE = 20
OPEN = 21
CLOSE = 22
HEARTBEAT = 23
ROUTE = 24
PARTITIONS = 25
CONSUMER_UPDATE = 26
EXCHANGE_COMMAND_VERSIONS = 27
STREAM_STATS = 28
CREATE_SUPER_STREAM = 29
DELETE_SUPER_STREAM = 30
RESOLVE_OFFSET_SPEC = 31     # RabbitMQ 4.3
RESPONSE = 0x8000

# response codes (``rabbit_stream.hrl``)
OK = 1
STREAM_DOES_NOT_EXIST = 2
SUBSCRIPTION_ID_ALREADY_EXISTS = 3
SUBSCRIPTION_ID_DOES_NOT_EXIST = 4
STREAM_ALREADY_EXISTS = 5
STREAM_NOT_AVAILABLE = 6
SASL_MECHANISM_NOT_SUPPORTED = 7
AUTHENTICATION_FAILURE = 8
SASL_ERROR = 9
SASL_CHALLENGE = 10
SASL_AUTHENTICATION_FAILURE_LOOPBACK = 11
VIRTUAL_HOST_ACCESS_FAILURE = 12
UNKNOWN_FRAME = 13
FRAME_TOO_LARGE = 14
INTERNAL_ERROR = 15
ACCESS_REFUSED = 16
PRECONDITION_FAILED = 17
PUBLISHER_DOES_NOT_EXIST = 18
NO_OFFSET = 19

# offset specification types of subscribe (and 0, none, in a consumer update's answer)
OFFSET_NONE = 0
OFFSET_FIRST, OFFSET_LAST, OFFSET_NEXT, OFFSET_OFFSET, OFFSET_TIMESTAMP = 1, 2, 3, 4, 5

#: the command versions this server speaks (exchange_command_versions): publish up to 2
#: (filter values), the rest at 1, publish second as rstream reads the list by key
COMMAND_VERSIONS = ((DECLARE_PUBLISHER, 1, 1), (PUBLISH, 1, 2), (QUERY_PUBLISHER_SEQUENCE, 1, 1),
                    (DELETE_PUBLISHER, 1, 1), (SUBSCRIBE, 1, 1), (DELIVER, 1, 1),
                    (CREDIT, 1, 1), (STORE_OFFSET, 1, 1), (QUERY_OFFSET, 1, 1),
                    (UNSUBSCRIBE, 1, 1), (CREATE, 1, 1), (DELETE, 1, 1), (METADATA, 1, 1),
                    (PEER_PROPERTIES, 1, 1), (SASL_HANDSHAKE, 1, 1), (SASL_AUTHENTICATE, 1, 1),
                    (TUNE, 1, 1), (OPEN, 1, 1), (CLOSE, 1, 1), (HEARTBEAT, 1, 1),
                    (EXCHANGE_COMMAND_VERSIONS, 1, 1), (STREAM_STATS, 1, 1), (ROUTE, 1, 1),
                    (PARTITIONS, 1, 1), (CONSUMER_UPDATE, 1, 1), (CREATE_SUPER_STREAM, 1, 1),
                    (DELETE_SUPER_STREAM, 1, 1), (RESOLVE_OFFSET_SPEC, 1, 1))

_U32 = struct.Struct(">I")
_I16 = struct.Struct(">h")
_PUBLISHING_ID = struct.Struct(">Q")
_ID_AND_SIZE = struct.Struct(">QI")   # a publish entry's publishing id and message size
_SUB_BATCH = struct.Struct(">BHII")   # flag and compression, messages, uncompressed, size
_HEAD = struct.Struct(">IHH")
_CHUNK = struct.Struct(">BBHIqQQIIIB3x")
_MAGIC_VERSION = 0x50   # osiris chunk magic 5, version 0
_CHUNK_USER = 0


#: sub-entry compression types (``rabbit_stream_utils``: 0 none, 1 gzip, 2 snappy, 3 lz4,
#: 4 zstd are known)
COMPRESSION_NONE, COMPRESSION_GZIP, MAX_KNOWN_COMPRESSION = 0, 1, 4
#: ``max_uncompressed_sub_entry_batch_size``, RabbitMQ's default
MAX_UNCOMPRESSED_SUB_BATCH = 64 * 1024 * 1024


class SubBatch(NamedTuple):
    """A sub-entry batch's header: how its data is compressed and what it holds."""

    compression: int
    message_count: int
    uncompressed_size: int


class PublishEntry(NamedTuple):
    """One entry of a publish: a message (``batch`` None) or a sub-entry batch's data."""

    publishing_id: int
    filter_value: str | None
    data: bytes
    batch: SubBatch | None


class BadSubBatch(Exception):
    """A sub-entry batch RabbitMQ refuses (or warren cannot open): its publishing id and the
    rest of the frame's get PRECONDITION_FAILED."""


def check_sub_batch(batch: SubBatch, data: bytes,
                    max_uncompressed: int = MAX_UNCOMPRESSED_SUB_BATCH) -> None:
    """``validate_compressed_sub_batch``'s checks, in its order: all RabbitMQ looks at before
    it stores a batch as it came (a compressed one is never opened by the broker); then
    warren's bound of one message per compressed byte."""
    if batch.uncompressed_size > max_uncompressed:
        raise BadSubBatch(f"uncompressed size {batch.uncompressed_size} exceeds the limit "
                          f"{max_uncompressed}")
    if batch.message_count == 0:
        raise BadSubBatch("zero message count")
    if batch.message_count * 4 > batch.uncompressed_size:
        raise BadSubBatch(f"{batch.message_count} messages cannot fit "
                          f"{batch.uncompressed_size} bytes")
    if batch.compression > MAX_KNOWN_COMPRESSION:
        raise BadSubBatch(f"unknown compression type {batch.compression}")
    if not data and batch.compression != COMPRESSION_NONE:
        raise BadSubBatch("empty batch with compression")
    if batch.compression != COMPRESSION_NONE and batch.message_count > len(data):
        # warren's own bound, past RabbitMQ's checks: a compressed batch is stored unopened
        # but takes an offset per message it claims, and warren's index holds 8 bytes an
        # offset (osiris' one entry a chunk), so a few bytes claiming thousands of messages
        # would cost thousands of times their size in memory
        raise BadSubBatch(f"{batch.message_count} messages in {len(data)} compressed bytes")


def sub_batch_messages(batch: SubBatch, data: bytes) -> list[bytes]:
    """The messages of an uncompressed sub-entry batch (checked by ``check_sub_batch``),
    which warren stores one by one; one whose sub-entries do not fill it exactly is
    refused."""
    if len(data) != batch.uncompressed_size:
        raise BadSubBatch(f"{len(data)} bytes in the batch, the header says "
                          f"{batch.uncompressed_size}")
    messages = []
    pos = 0
    for _ in range(batch.message_count):
        if pos + 4 > len(data):
            raise BadSubBatch("batch ends inside a sub-entry")
        (size,) = _U32.unpack_from(data, pos)
        pos += 4
        if size & 0x80000000 or pos + size > len(data):
            raise BadSubBatch(f"sub-entry of {size} bytes in a batch this short")
        messages.append(data[pos:pos + size])
        pos += size
    return messages


def sub_entry(batch: SubBatch, data: bytes) -> bytes:
    """A sub-entry batch as a chunk carries it (and a publish did): the flag with the
    compression type, the message count, the uncompressed and the data size, the data."""
    return _SUB_BATCH.pack(0x80 | (batch.compression << 4), batch.message_count,
                           batch.uncompressed_size, len(data)) + data


class MalformedFrame(Exception):
    """A frame whose fields do not parse (too short, too long, a bad length)."""


class FrameTooLarge(Exception):
    """A frame over the negotiated frame_max."""


class FrameReader:
    """Cuts bytes into ``(key, version, payload)`` frames."""

    def __init__(self, frame_max: int) -> None:
        self.frame_max = frame_max     # 0: no limit
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, memoryview]]:
        buf = self._buf
        buf += data
        frames = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (size,) = _U32.unpack_from(buf, pos)
            if self.frame_max and size > self.frame_max:
                raise FrameTooLarge(f"frame of {size} bytes over frame_max {self.frame_max}")
            if size < 4:
                raise MalformedFrame(f"frame of {size} bytes has no key and version")
            if end - pos - 4 < size:
                break
            body = bytes(buf[pos + 4:pos + 4 + size])
            key, version = struct.unpack_from(">HH", body, 0)
            frames.append((key, version, memoryview(body)[4:]))
            pos += 4 + size
        del buf[:pos]
        return frames


class Fields:
    """Reads one frame's fields in order."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: memoryview | bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, n: int) -> memoryview | bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise MalformedFrame("frame ends inside a field")
        part = self._data[self._pos:self._pos + n]
        self._pos += n
        return part

    def _unpack(self, fmt: str, n: int) -> int:
        return struct.unpack(fmt, self._take(n))[0]

    def u8(self) -> int:
        return self._unpack(">B", 1)

    def u16(self) -> int:
        return self._unpack(">H", 2)

    def u32(self) -> int:
        return self._unpack(">I", 4)

    def i32(self) -> int:
        return self._unpack(">i", 4)

    def u64(self) -> int:
        return self._unpack(">Q", 8)

    def i64(self) -> int:
        return self._unpack(">q", 8)

    def string(self) -> str | None:
        n = self._unpack(">h", 2)
        if n == -1:
            return None
        try:
            return bytes(self._take(n)).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedFrame("string is not UTF-8") from None

    def offset_specification(self) -> tuple[int, int]:
        """An offset specification (subscribe, resolve_offset_spec, a consumer update's
        answer): its type and value; only types 4 (an offset, unsigned) and 5 (a timestamp in
        ms, signed) carry a value, the others read as 0. The caller refuses unknown types."""
        kind = self.u16()
        if kind == OFFSET_OFFSET:
            return kind, self.u64()
        if kind == OFFSET_TIMESTAMP:
            return kind, self.i64()
        return kind, 0

    def blob(self) -> bytes:
        n = self.i32()
        return bytes(self._take(n))

    def count(self) -> int:
        n = self.i32()
        if n < 0 or n > len(self._data) - self._pos:
            raise MalformedFrame(f"array of {n} items in a frame this short")
        return n

    def strings(self) -> list[str | None]:
        return [self.string() for _ in range(self.count())]

    def properties(self) -> dict[str, str]:
        out = {}
        for _ in range(self.count()):
            key = self.string()
            out[key or ""] = self.string() or ""
        return out

    def publish_entries(self, version: int = 1) -> list[PublishEntry]:
        """A publish's entries, read in one pass: version 1 (a message, or a sub-entry batch
        whose length field has its top bit set) or 2 (a filter value before each message)."""
        n = self.count()
        data, pos, end = self._data, self._pos, len(self._data)
        out = []
        unpack = _PUBLISHING_ID.unpack_from
        id_and_size = _ID_AND_SIZE.unpack_from
        for _ in range(n):
            if version == 1 and pos + 12 <= end:
                # the usual entry, a message of version 1, read with one unpack
                publishing_id, size = id_and_size(data, pos)
                if not size & 0x80000000:
                    pos += 12
                    if pos + size > end:
                        raise MalformedFrame(f"message of {size} bytes in a frame this short")
                    out.append(PublishEntry(publishing_id, None, bytes(data[pos:pos + size]),
                                            None))
                    pos += size
                    continue
            if pos + 8 > end:
                raise MalformedFrame("frame ends inside a publish entry")
            (publishing_id,) = unpack(data, pos)
            pos += 8
            value = None
            if version == 2:
                if pos + 2 > end:
                    raise MalformedFrame("frame ends inside a filter value")
                (length,) = _I16.unpack_from(data, pos)
                pos += 2
                if length >= 0:
                    if pos + length > end:
                        raise MalformedFrame("frame ends inside a filter value")
                    try:
                        value = bytes(data[pos:pos + length]).decode("utf-8")
                    except UnicodeDecodeError:
                        raise MalformedFrame("filter value is not UTF-8") from None
                    pos += length
            if pos + 4 > end:
                raise MalformedFrame("frame ends inside a publish entry")
            if data[pos] & 0x80:
                if version != 1:
                    raise MalformedFrame("a sub-entry batch in a publish of version 2")
                if pos + _SUB_BATCH.size > end:
                    raise MalformedFrame("frame ends inside a sub-entry batch header")
                flags, count, uncompressed, size = _SUB_BATCH.unpack_from(data, pos)
                pos += _SUB_BATCH.size
                if pos + size > end:
                    raise MalformedFrame(f"sub-entry batch of {size} bytes in a frame this short")
                out.append(PublishEntry(publishing_id, None, bytes(data[pos:pos + size]),
                                        SubBatch((flags >> 4) & 0x7, count, uncompressed)))
            else:
                (size,) = _U32.unpack_from(data, pos)
                pos += 4
                if pos + size > end:
                    raise MalformedFrame(f"message of {size} bytes in a frame this short")
                out.append(PublishEntry(publishing_id, value, bytes(data[pos:pos + size]), None))
            pos += size
        self._pos = pos
        self.end()
        return out

    def end(self) -> None:
        if self._pos != len(self._data):
            raise MalformedFrame(f"{len(self._data) - self._pos} bytes after the last field")


# ---------------------------------------------------------------- encoding
def string(s: str | None) -> bytes:
    if s is None:
        return b"\xff\xff"
    raw = s.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def properties(props: dict[str, str]) -> bytes:
    return struct.pack(">i", len(props)) + b"".join(string(k) + string(v)
                                                    for k, v in props.items())


def frame(key: int, *parts: bytes, version: int = 1) -> bytes:
    body = b"".join(parts)
    return _HEAD.pack(len(body) + 4, key, version) + body


def response(key: int, correlation_id: int, code: int, *parts: bytes) -> bytes:
    return frame(key | RESPONSE, struct.pack(">IH", correlation_id, code), *parts)


def tune_frame(frame_max: int, heartbeat: int) -> bytes:
    return frame(TUNE, struct.pack(">II", frame_max, heartbeat))


def heartbeat_frame() -> bytes:
    return frame(HEARTBEAT)


def close_frame(correlation_id: int, code: int, reason: str) -> bytes:
    return frame(CLOSE, struct.pack(">IH", correlation_id, code), string(reason))


def confirm_frame(publisher_id: int, ids: list[int]) -> bytes:
    return frame(PUBLISH_CONFIRM, struct.pack(">Bi", publisher_id, len(ids)),
                 struct.pack(f">{len(ids)}Q", *ids))


def publish_error_frame(publisher_id: int, errors: list[tuple[int, int]]) -> bytes:
    return frame(PUBLISH_ERROR, struct.pack(">Bi", publisher_id, len(errors)),
                 b"".join(struct.pack(">QH", pid, code) for pid, code in errors))


def consumer_update_frame(correlation_id: int, subscription_id: int, active: bool) -> bytes:
    """The server's request to a single active consumer: you are (not) active now."""
    return frame(CONSUMER_UPDATE, struct.pack(">IBB", correlation_id, subscription_id,
                                              1 if active else 0))


def metadata_update_frame(code: int, stream: str) -> bytes:
    return frame(METADATA_UPDATE, struct.pack(">H", code), string(stream))


def credit_error_frame(code: int, subscription_id: int) -> bytes:
    """A credit for an unknown subscription: the one answer credit gets (no correlation)."""
    return frame(CREDIT | RESPONSE, struct.pack(">HB", code, subscription_id))


def metadata_response(correlation_id: int, host: str, port: int,
                      streams: Iterable[tuple[str, int]]) -> bytes:
    """One broker (this one, reference 0) and per stream its code and leader."""
    streams = list(streams)
    parts = [struct.pack(">Ii", correlation_id, 1), struct.pack(">H", 0), string(host),
             struct.pack(">I", port), struct.pack(">i", len(streams))]
    for name, code in streams:
        leader = 0 if code == OK else 0xFFFF
        parts.append(string(name) + struct.pack(">HHi", code, leader, 0))
    return frame(METADATA | RESPONSE, *parts)


def streams_response(key: int, correlation_id: int, code: int, streams: list[str]) -> bytes:
    """The answer of route and partitions: a code and stream names."""
    return response(key, correlation_id, code, struct.pack(">i", len(streams)),
                    b"".join(string(s) for s in streams))


def command_versions_response(correlation_id: int) -> bytes:
    return response(EXCHANGE_COMMAND_VERSIONS, correlation_id, OK,
                    struct.pack(">i", len(COMMAND_VERSIONS)),
                    b"".join(struct.pack(">HHH", *v) for v in COMMAND_VERSIONS))


def deliver_frame(subscription_id: int, first_offset: int, timestamp_ms: int,
                  entries: Sequence[bytes | tuple[int, int, bytes]],
                  trailer_size: int = 0) -> bytes:
    """A Deliver (v1) of one osiris chunk: each item a message body (a simple entry) or
    (entries, messages, their bytes as a chunk carries them: simple entries, or a sub-entry
    batch as ``sub_entry`` writes it). The chunk's entry count counts entries, its record
    count messages (what the offsets step by). ``trailer_size``: the chunk's trailer (the
    tracking of the publishers that wrote in it), which the header tells and the frame
    leaves out, as RabbitMQ sends a user chunk to a subscriber (osiris' ``user_data``
    selector: header and entries); the CRC covers the entries alone, as osiris' does."""
    pack = _U32.pack
    try:
        # bodies only: a tuple does not add to bytes
        data = b"".join([pack(len(e)) + e for e in entries])   # type: ignore[operator]
        count = records = len(entries)
    except TypeError:
        parts: list[bytes] = []
        count = records = 0
        for e in entries:
            if isinstance(e, tuple):
                count += e[0]
                records += e[1]
                parts.append(e[2])
            else:
                parts.append(pack(len(e)))
                parts.append(e)
                count += 1
                records += 1
        data = b"".join(parts)
    chunk = _CHUNK.pack(_MAGIC_VERSION, _CHUNK_USER, count, records, timestamp_ms,
                        1, first_offset, zlib.crc32(data), len(data), trailer_size, 0)
    return frame(DELIVER, bytes((subscription_id,)), chunk, data)
