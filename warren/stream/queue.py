"""The stream queue type: what a vhost makes for ``x-queue-type: stream``.

It is a :class:`~warren.broker.queue.Queue` to everything around it (routing, bindings,
definitions, the console) but keeps no ready entries: a routed message is appended to the
stream's :class:`~warren.stream.log.StreamLog` and each consumer reads the log from its own
offset (``rabbit_stream_queue``). What RabbitMQ requires of a stream holds here with its
texts: durable, not exclusive, not auto-delete (406 at declare); consumers set a prefetch and
ack (406 / 540 at consume) and their acks only give credit back; basic.get and queue.purge
are refused (540). Checked against RabbitMQ 3.10.8, whose consume texts are older
("consumer prefetch count is not set for 'queue 'q' in vhost '/''"): warren has the current
ones.

Every delivery carries its offset (the entry's ``seq``); front ends put it in the
``x-stream-offset`` header (AMQP: type ``l``, as RabbitMQ). A confirm for a publish
into a stream waits for the log's sync (``Broker.sync`` syncs the logs written since the last
one), so a confirmed message survives kill -9. Retention runs when a segment fills, and at
declare, recovery and policy changes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from ..broker.arguments import max_age_ms
from ..broker.consumers import Consumer
from ..model.errors import NotImplemented_, PreconditionFailed
from ..model.message import Message, QueueEntry
from ..broker.queue import Queue
from ..broker.queue_types import register
from .amqp1_conversion import CONVERTED, from_stream_publish, is_stream_publish
from .log import MAX_SEGMENT_BYTES, BodyRun, StreamLog, SubEntryBatch
from .filters import (BLOCK, DEFAULT_FILTER_BYTES, MAX_FILTER_BYTES, MIN_FILTER_BYTES,
                      FilterSpec, amqp_filter, message_filter_value)
from .offsets import NEXT, OffsetSpec, parse_offset
from .single_active import Group
from .syncer import LogSyncer
from .writer_ids import WriterIds

if TYPE_CHECKING:
    from ..broker.vhost import VirtualHost

#: deliveries per consumer per dispatch before the rest waits a turn (a reader far behind
#: must not hold the reactor for its whole backlog)
DISPATCH_SLICE = 500
#: a chunk for readers that take chunks (the Stream protocol): at most this many records
#: and about this many bytes, so one chunk stays well under a client's frame_max
CHUNK_RECORDS = 1024
CHUNK_BYTES = 256 * 1024


class StreamQueue(Queue):
    own_log = True

    def __init__(self, vhost: "VirtualHost", name: str, *, durable: bool = False,
                 exclusive_owner: Any = None, auto_delete: bool = False,
                 arguments: dict[str, Any] | None = None, recovered: bool = False) -> None:
        self.readers: dict[Consumer, int] = {}   # consumer -> next offset it reads
        self.reader_filters: dict[Consumer, FilterSpec] = {}   # the filtered readers
        self.consumer_groups: dict[str, Group] = {}   # single active consumer, by name
        self.writer_ids = WriterIds()   # AMQP, STOMP, MQTT publishers' writers
        super().__init__(vhost, name, durable=durable, exclusive_owner=exclusive_owner,
                         auto_delete=auto_delete, arguments=arguments)
        self.journaled = False
        where = self._resource()
        # rabbit_queue_type_util's checks, in rabbit_stream_queue:declare's order
        if auto_delete:
            raise PreconditionFailed(f"invalid property 'auto-delete' for {where}")
        if exclusive_owner is not None:
            raise PreconditionFailed(f"invalid property 'exclusive-owner' for {where}")
        if not durable:
            raise PreconditionFailed(f"invalid property 'non-durable' for {where}")
        segment = self.arguments.get("x-stream-max-segment-size-bytes")
        if segment is not None and segment > MAX_SEGMENT_BYTES:
            raise PreconditionFailed("Exceeded max value for x-stream-max-segment-size-bytes")
        filter_bytes = self.arguments.get("x-stream-filter-size-bytes", DEFAULT_FILTER_BYTES)
        if isinstance(filter_bytes, bool) or not isinstance(filter_bytes, int):
            raise PreconditionFailed("Invalid type for x-stream-filter-size-bytes")
        if not MIN_FILTER_BYTES <= filter_bytes <= MAX_FILTER_BYTES:
            raise PreconditionFailed("Invalid value for x-stream-filter-size-bytes")
        broker = vhost.broker
        if broker.log_syncer is None:
            broker.log_syncer = LogSyncer(broker.clock)
        self._syncer: LogSyncer = broker.log_syncer
        self.log: StreamLog = StreamLog(self._directory(), self.clock, filter_bytes)
        self.log.open(fresh=not recovered)
        self.apply_settings()

    def _resource(self) -> str:
        """``rabbit_misc:rs`` of this queue, as RabbitMQ's stream texts name it."""
        return f"queue '{self.name}' in vhost '{self.vhost.name}'"

    def _directory(self) -> str:
        base = self.vhost.broker.stream_dir
        if base is None:   # a broker without a data directory (nothing else is durable)
            base = self.vhost.broker.stream_dir = tempfile.mkdtemp(prefix="warren-streams-")
        digest = hashlib.sha1(self.store_key.encode()).hexdigest()
        return os.path.join(base, digest)

    # ---------------------------------------------------------------- settings
    def apply_settings(self) -> None:
        """Retention settings from arguments and policy; nothing of a classic queue applies."""
        self.message_ttl = self.max_length = self.dlx = self.dlx_routing_key = None
        self.expires = self.delivery_limit = self.back_off = self.max_priority = None
        self.overflow = "drop-head"
        self.counts_every_delivery = False
        self.max_length_bytes = self.setting("max-length-bytes")
        age = self.setting("max-age")
        self.max_age_ms = max_age_ms(age) if age is not None else None
        log: StreamLog | None = getattr(self, "log", None)   # None while Queue.__init__ runs
        if log is not None:
            segment = self.setting("stream-max-segment-size-bytes")
            if segment:
                log.max_segment_bytes = segment
            log.retain(self.max_length_bytes, self.max_age_ms)

    # ---------------------------------------------------------------- counts
    @property
    def message_count(self) -> int:
        return self.log.count

    # ---------------------------------------------------------------- enqueue
    def would_overflow(self, message: Message) -> bool:
        return False

    def enqueue(self, message: Message) -> None:  # type: ignore[override]
        """A routed message: the vhost counts it as stored (its confirm waits for sync). Its
        publisher's writer id and sequence number go in the chunk's trailer, as RabbitMQ's
        stream client writes each channel's messages (``writer_ids.py``)."""
        publisher = self.vhost.publishing
        self.append(message, None if publisher is None else self.writer_ids.next(publisher))

    def append(self, message: Message, writer: tuple[str, int] | None = None) -> int:
        """Add to the log (``writer``: publisher reference and publishing id, remembered for
        deduplication); returns the offset. ``Broker.sync`` makes it durable. The
        ``x-stream-filter-value`` header is its filter value (its properties are decoded
        only when their bytes name it)."""
        offset = self.log.next_offset
        value = None
        if b"x-stream-filter-value" in message.encoded_props():
            value = message_filter_value(message.headers)
        self.append_records([message.to_record()], writer,
                            None if value is None else [value])
        return offset

    def append_records(self, records: list[bytes | SubEntryBatch | BodyRun],
                       writer: tuple[str, int] | None = None,
                       filter_values: list[str | None] | None = None) -> None:
        """Add message records (``Message.to_record``; a compressed sub-entry batch kept as
        published; a run of a publish's bodies kept as one record) at consecutive offsets;
        ``writer``: the publisher reference and the publishing id of the last of them;
        ``filter_values``: each record's filter value or None."""
        log = self.log
        segments = len(log.segments)
        before = log.next_offset
        log.append_many(records, filter_values, writer)
        self.stats["publish"] += log.next_offset - before
        self._syncer.add(log)
        if len(log.segments) != segments:
            log.retain(self.max_length_bytes, self.max_age_ms)
        if self.readers:
            self.dispatch()

    def store_offset(self, reference: str, offset: int) -> None:
        """A named consumer's offset, kept in the log (server-side offset tracking)."""
        self.log.store_offset(reference, offset)
        self._syncer.add(self.log)

    # ---------------------------------------------------------------- consumers
    def check_consume(self, no_ack: bool, prefetch: int, global_prefetch: int,
                      arguments: dict[str, Any]) -> None:
        """``rabbit_stream_queue:consume``'s refusals, before consume-ok goes out."""
        where = self._resource()
        if prefetch == 0:
            raise PreconditionFailed(f"consumer prefetch count is not set for stream {where}")
        if no_ack:
            raise NotImplemented_(f"automatic acknowledgement not supported by stream {where}")
        if global_prefetch:
            raise NotImplemented_(f"{where} does not support global qos")
        self._start_spec(arguments)

    def _start_spec(self, arguments: dict[str, Any]) -> OffsetSpec:
        try:
            return parse_offset(arguments.get("x-stream-offset"),
                                int(self.clock.seconds() * 1000))
        except ValueError as e:
            raise PreconditionFailed(
                f"failed consuming from stream {self._resource()}: {e}") from None

    def start_offset(self, spec: OffsetSpec) -> int:
        """The offset a reader with ``spec`` reads first (osiris clamps into the log)."""
        log = self.log
        if spec.kind == "first":
            return log.first_offset
        if spec.kind == "last":
            return log.last_chunk_offset
        if spec.kind == "next":
            return log.next_offset
        if spec.kind == "timestamp":
            return log.offset_at(spec.value)
        return min(max(spec.value, log.first_offset), log.next_offset)

    def add_consumer(self, consumer: Consumer, connection: Any = None) -> None:
        spec = getattr(consumer, "offset_spec", None)   # a Stream protocol subscription
        if spec is None:
            spec = self._start_spec(consumer.arguments) if consumer.arguments else NEXT
        self.readers[consumer] = self.start_offset(spec)
        wanted = getattr(consumer, "filter_spec", None)
        if wanted is None and consumer.arguments:
            wanted = amqp_filter(consumer.arguments)
        if wanted is not None:
            self.reader_filters[consumer] = wanted
        super().add_consumer(consumer, connection)

    def consumer_group(self, name: str, partition_index: int) -> Group:
        """The single-active-consumer group ``name`` of this stream (made on first use)."""
        group = self.consumer_groups.get(name)
        if group is None:
            group = self.consumer_groups[name] = Group(partition_index)
        return group

    def remove_consumer(self, consumer: Consumer) -> None:
        self.readers.pop(consumer, None)
        self.reader_filters.pop(consumer, None)
        name: str | None = getattr(consumer, "group_name", None)
        group = self.consumer_groups.get(name) if name is not None else None
        if name is not None and group is not None:
            group.unregister(consumer)
            if not group.members:
                del self.consumer_groups[name]
        super().remove_consumer(consumer)

    def consumer_offsets(self) -> dict[str, int]:
        """Consumer tag -> the next offset it reads (the console's view of readers)."""
        return {c.tag: offset for c, offset in self.readers.items()}

    # ---------------------------------------------------------------- delivery
    def dispatch(self) -> None:
        """Each reader reads on from its own offset while it has credit."""
        if self._dispatching or self.deleted or not self.readers:
            return
        self._dispatching = True
        more = False
        try:
            log = self.log
            codec = self.vhost.broker.codec
            for consumer in list(self.readers):
                offset = max(self.readers.get(consumer, log.next_offset), log.first_offset)
                if getattr(consumer, "deliver_chunk", None) is not None:
                    offset, more_chunks = self._deliver_chunks(consumer, offset)
                    more = more or more_chunks
                    if consumer in self.readers:
                        self.readers[consumer] = offset
                    continue
                sent = 0
                wanted = self.reader_filters.get(consumer)
                while offset < log.next_offset and consumer.has_credit():
                    if sent == DISPATCH_SLICE:
                        more = True
                        break
                    if wanted is not None and not log.filters.may_match(offset // BLOCK,
                                                                        wanted):
                        # a block without what it wants: passed over unread
                        offset = min((offset // BLOCK + 1) * BLOCK, log.next_offset)
                        sent += 1
                        continue
                    found = log.read(offset)
                    if found is None or found[1] is None:
                        # unreadable (logged), or a compressed sub-entry batch, which only
                        # Stream protocol readers get (RabbitMQ's AMQP readers skip it too)
                        offset = log.batch_end(offset)
                        sent += 1
                        continue
                    if wanted is not None and not wanted.matches(found[2]):
                        offset += 1
                        sent += 1
                        continue
                    # the front end adds x-stream-offset (the entry's seq) in its own encoding
                    message = Message.from_record(found[1], codec, 0)
                    if is_stream_publish(found[1]):
                        message = from_stream_publish(message)
                    self.unacked += 1
                    self.stats["deliver"] += 1
                    consumer.deliver(self, QueueEntry(message, offset))
                    offset += 1
                    sent += 1
                if consumer in self.readers:
                    self.readers[consumer] = offset
        finally:
            self._dispatching = False
        if more and (self._dispatch_call is None or not self._dispatch_call.active()):
            self._dispatch_call = self.clock.callLater(0, self._dispatch_later)

    def _deliver_chunks(self, consumer: Any, offset: int) -> tuple[int, bool]:
        """Chunks of consecutive records for a reader that takes them (one credit each). A
        filtered reader's chunks stay within one filter block, and blocks whose filter cannot
        match are passed over unread."""
        log = self.log
        wanted = self.reader_filters.get(consumer)
        records_sent = skipped = 0
        while offset < log.next_offset and consumer.has_credit():
            if records_sent >= 8 * CHUNK_RECORDS or skipped == DISPATCH_SLICE:
                return offset, True   # the rest next turn: a few ms of reading per turn
            end = log.next_offset
            if wanted is not None:
                block = offset // BLOCK
                end = min((block + 1) * BLOCK, end)
                if not log.filters.may_match(block, wanted):
                    offset = end
                    skipped += 1
                    continue
            # a run may start before ``offset``: at the first offset of the batch holding it
            first, timestamp, bodies, after, trailer = log.read_run(
                offset, end, CHUNK_RECORDS, CHUNK_BYTES, body_only=True, convert=self._as_amqp1)
            if bodies:
                consumer.deliver_chunk(self, first, timestamp, bodies, trailer)
                records_sent += after - first
            elif after == offset:
                break   # not in the log (cannot happen: the caller starts at first_offset)
            else:
                skipped += 1   # an unreadable record, logged and passed over
            offset = after
        return offset, False

    def _as_amqp1(self, offset: int, record: bytes) -> bytes:
        """Another protocol's message as a Stream protocol reader gets it (AMQP 1.0)."""
        return CONVERTED.convert(self.log, offset, record, self.vhost.broker.codec)

    def get_later(self, no_ack: bool) -> Deferred:
        raise NotImplemented_(f"basic.get not supported by stream queues {self._resource()}")

    # ---------------------------------------------------------------- settlement
    def _settled(self, entries: list[QueueEntry]) -> None:
        """Any settlement only gives the consumer its credit back: the log keeps the data."""
        self.unacked -= len(entries)
        self.stats["ack"] += len(entries)

    def ack(self, entries: list[QueueEntry]) -> None:
        self._settled(entries)

    def requeue(self, entries: list[QueueEntry], failed: bool = True) -> None:
        self._settled(entries)

    def reject(self, entries: list[QueueEntry]) -> None:
        self._settled(entries)

    # ---------------------------------------------------------------- purge / delete
    def purge(self) -> int:
        raise NotImplemented_(f"queue.purge not supported by stream queues {self._resource()}")

    def on_deleted(self) -> int:
        self.deleted = True
        for c in list(self.consumers):
            self.consumers.remove(c)
            c.cancelled(self)
        self.readers.clear()
        count = self.log.count
        self._syncer.discard(self.log)
        CONVERTED.forget()
        self.log.destroy()
        return count

    def close(self) -> None:
        """The broker stops: the log is synced and closed."""
        self.log.close()

    def abandon(self) -> None:
        """HA fencing: the log lets go of its files unwritten (as the store does)."""
        self.log.abandon()

    # ---------------------------------------------------------------- console
    def stream_info(self) -> dict[str, Any]:
        log = self.log
        return {"first_offset": log.first_offset, "last_offset": log.next_offset - 1,
                "segments": len(log.segments), "size_bytes": log.size,
                "consumer_offsets": self.consumer_offsets()}


register("stream", StreamQueue)
