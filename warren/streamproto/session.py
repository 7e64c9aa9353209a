"""One Stream protocol connection's commands, turned into core calls (``rabbit_stream_reader``).

The session goes through RabbitMQ's states: peer properties and SASL (PLAIN) first, then the
server's tune, the client's tune and open (the vhost); any other command before open closes
the connection. After open it keeps the connection's publishers (id -> stream, reference) and
subscriptions (id -> a :class:`Subscription`, a core consumer of the stream queue that takes
chunks), and answers with RabbitMQ's response codes (``codec.py``).

Publishing: each message of a publish frame is appended to the stream's log; a publisher with
a reference is deduplicated (a publishing id not above the last one stored for that reference
is confirmed without being stored again, as osiris does). Confirms go out once ``Broker.sync``
has the log on disk, in one ``publish_confirm`` per publisher per read.

Every command's fields are read through ``codec.Fields``: a frame that does not parse closes
the connection with UNKNOWN_FRAME (13), one over the listener's bound with FRAME_TOO_LARGE
(14); before
open the connection is closed without a close frame. Checked against RabbitMQ 3.10.8: the
response codes of commands on missing streams, publishers, subscriptions and offsets, the
close frame (correlation 1, "unknown frame"), the silent close before open. Core errors become
the response code of the command.
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING, Any, Callable

from ..model.errors import AccessRefused, BrokerError, NotAllowed, NotFound, PreconditionFailed
from ..model.message import STREAM_BODY, Properties, QueueEntry, record_head
from ..stream import super_streams
from ..stream.filters import FilterSpec, subscription_filter
from ..stream.log import BodyRun, ChunkPart, SubEntryBatch
from ..stream.offsets import OffsetSpec
from ..stream.queue import StreamQueue
from . import codec
from .codec import Fields, MalformedFrame

if TYPE_CHECKING:
    from ..broker.broker import Broker
    from ..broker.users import User
    from ..broker.vhost import VirtualHost

log = logging.getLogger("warren.streamproto")

#: arguments of create that map to queue arguments, and how their string values convert
CREATE_ARGUMENTS = {"max-length-bytes": int, "max-age": str,
                    "stream-max-segment-size-bytes": int}


def queue_arguments(args: dict[str, str]) -> dict[str, Any] | None:
    """A create's (or create_super_stream's) string arguments as a stream's queue arguments;
    None when a value does not convert."""
    arguments: dict[str, Any] = {"x-queue-type": "stream"}
    for key, value in args.items():
        convert = CREATE_ARGUMENTS.get(key)
        if convert is None:
            continue   # RabbitMQ ignores what it does not know (leader locator, ...)
        try:
            arguments["x-" + key] = convert(value)
        except ValueError:
            return None
    return arguments


#: the offset specification types that name no offset, as the core's ``OffsetSpec`` kinds
_SPEC_KINDS = {codec.OFFSET_FIRST: "first", codec.OFFSET_LAST: "last", codec.OFFSET_NEXT: "next",
               codec.OFFSET_OFFSET: "offset", codec.OFFSET_TIMESTAMP: "timestamp"}


def offset_spec(kind: int, value: int) -> OffsetSpec:
    """An offset specification read off the wire (``Fields.offset_specification``); an
    unknown type is a frame RabbitMQ cannot parse, and it drops the connection."""
    name = _SPEC_KINDS.get(kind)
    if name is None:
        raise MalformedFrame(f"unknown offset specification type {kind}")
    return OffsetSpec(name, value)


class Subscription:
    """A subscribe: a consumer of the stream queue that receives chunks for its credit."""

    no_ack = False
    exclusive = False
    priority = 0

    def __init__(self, session: "StreamSession", sub_id: int, queue: "StreamQueue",
                 spec: OffsetSpec, credit: int) -> None:
        self.session = session
        self.sub_id = sub_id
        self.tag = f"stream-{sub_id}"
        self.queue = queue
        self.offset_spec = spec
        self.arguments: dict[str, Any] = {}
        self.credit = credit
        self.filter_spec: FilterSpec | None = None   # the filter.N properties, if any
        # single active consumer: the group's name, whether the group made it active, and
        # whether it reads (an active one starts once the client answered consumer_update)
        self.group_name: str | None = None
        self.active = True
        self.reading = True

    def has_credit(self) -> bool:
        return self.credit > 0 and self.reading and not self.session.closed

    def notify(self, active: bool, stepping_down: bool) -> None:
        """The group made it active or passive: the client is asked (consumer_update) and
        nothing is delivered until it answers; a passive one stops at once."""
        self.reading = False
        self.session.request_consumer_update(self, active, stepping_down)

    def deliver_chunk(self, queue: Any, first_offset: int, timestamp_ms: int,
                      bodies: list[bytes | ChunkPart], trailer_size: int = 0) -> None:
        """A chunk of message bodies and compressed sub-entry batches at consecutive offsets
        (``StreamLog.read_run``), and the size of its trailer (which the header tells and
        the frame leaves out, as RabbitMQ sends a client's chunk)."""
        self.credit -= 1
        self.session.write(codec.deliver_frame(self.sub_id, first_offset, timestamp_ms, bodies,
                                               trailer_size))

    def deliver(self, queue: Any, entry: QueueEntry) -> None:   # not used: chunks only
        self.deliver_chunk(queue, entry.seq, 0, [entry.message.body])

    def cancelled(self, queue: Any) -> None:
        """The stream was deleted: RabbitMQ tells the client with a metadata update."""
        self.session.subscriptions.pop(self.sub_id, None)
        self.session.write(codec.metadata_update_frame(codec.STREAM_NOT_AVAILABLE, queue.name))


class StreamSession:
    def __init__(self, broker: Broker, *, write: Callable[[bytes], None],
                 close: Callable[[], None], tuned: Callable[[int, int], None], peer: str,
                 loopback: bool, advertised: tuple[str, int], frame_max: int,
                 heartbeat: int) -> None:
        self.broker = broker
        self.write = write
        self._close = close
        self.tuned = tuned   # the listener applies the negotiated frame_max and heartbeat
        self.peer = peer
        self.loopback = loopback
        self.advertised = advertised
        self.frame_max = frame_max
        self.heartbeat = heartbeat
        self.user: User | None = None
        self.vhost: VirtualHost | None = None
        # the client's peer properties, which RabbitMQ lists as the connection's
        # client_properties (tools find their connection by its connection_name there)
        self.client_properties: dict[str, str] = {}
        self.closed = False
        self.publishers: dict[int, tuple["StreamQueue", str | None]] = {}
        self.subscriptions: dict[int, Subscription] = {}
        self._confirms: dict[int, list[int]] = {}     # publisher id -> ids to confirm
        self._persistent_props: bytes | None = None   # what a published message carries
        self._version = 1                              # the version of the frame handled
        self._next_request = 1                         # the server's own correlation ids
        self._consumer_updates: dict[int, tuple[Subscription, bool]] = {}
        self._handlers = {
            codec.PEER_PROPERTIES: self._peer_properties,
            codec.SASL_HANDSHAKE: self._sasl_handshake,
            codec.SASL_AUTHENTICATE: self._sasl_authenticate,
            codec.TUNE: self._tune,
            codec.OPEN: self._open,
            codec.CLOSE: self._on_close,
            codec.HEARTBEAT: lambda f: None,
            codec.CLOSE | codec.RESPONSE: lambda f: None,
            codec.CONSUMER_UPDATE | codec.RESPONSE: self._consumer_update_answer,
            codec.EXCHANGE_COMMAND_VERSIONS: self._command_versions,
        }
        self._opened_handlers = {
            codec.DECLARE_PUBLISHER: self._declare_publisher,
            codec.PUBLISH: self._publish,
            codec.QUERY_PUBLISHER_SEQUENCE: self._query_publisher_sequence,
            codec.DELETE_PUBLISHER: self._delete_publisher,
            codec.SUBSCRIBE: self._subscribe,
            codec.CREDIT: self._credit,
            codec.STORE_OFFSET: self._store_offset,
            codec.QUERY_OFFSET: self._query_offset,
            codec.UNSUBSCRIBE: self._unsubscribe,
            codec.CREATE: self._create,
            codec.DELETE: self._delete,
            codec.METADATA: self._metadata,
            codec.STREAM_STATS: self._stream_stats,
            codec.ROUTE: self._route,
            codec.PARTITIONS: self._partitions,
            codec.CREATE_SUPER_STREAM: self._create_super_stream,
            codec.DELETE_SUPER_STREAM: self._delete_super_stream,
            codec.RESOLVE_OFFSET_SPEC: self._resolve_offset_spec,
        }

    # ---------------------------------------------------------------- dispatch
    def handle(self, key: int, version: int, payload: memoryview) -> None:
        handler = self._handlers.get(key)
        if handler is None and self.vhost is not None:
            handler = self._opened_handlers.get(key)
        if handler is None:
            self.fail(codec.UNKNOWN_FRAME, f"unknown command {key}")
            return
        self._version = version   # what publish (1 or 2) and deliver look at
        try:
            handler(Fields(payload))
        except MalformedFrame as e:
            self.fail(codec.UNKNOWN_FRAME, f"malformed frame (key {key}): {e}")

    def after_read(self) -> None:
        """Confirm what this read published, once it is on disk."""
        if not self._confirms or self.closed:
            return
        batch, self._confirms = self._confirms, {}
        d = self.broker.sync()

        def confirmed(_: Any) -> None:
            if not self.closed:
                for pub_id, ids in batch.items():
                    self.write(codec.confirm_frame(pub_id, ids))

        def failed(failure: Any) -> None:
            log.error("stream connection %s: publishes not on disk: %s", self.peer,
                      failure.getErrorMessage())
            if not self.closed:
                for pub_id, ids in batch.items():
                    self.write(codec.publish_error_frame(
                        pub_id, [(i, codec.INTERNAL_ERROR) for i in ids]))

        d.addCallbacks(confirmed, failed)

    def fail(self, code: int, reason: str) -> None:
        """Close the connection: after open with a close frame naming the code (RabbitMQ's
        words for an unknown or malformed frame), before it without a word, as RabbitMQ."""
        if self.closed:
            return
        log.info("closing stream connection %s: %s", self.peer, reason)
        if self.vhost is not None:
            text = "unknown frame" if code == codec.UNKNOWN_FRAME else reason
            # the server's own requests are numbered from 1, as RabbitMQ numbers them
            self.write(codec.close_frame(self._request_id(), code, text))
        self.connection_lost()
        self._close()

    def connection_lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sub in list(self.subscriptions.values()):
            sub.queue.remove_consumer(sub)
        self.subscriptions.clear()
        self.publishers.clear()

    # ---------------------------------------------------------------- handshake
    def _peer_properties(self, f: Fields) -> None:
        corr = f.u32()
        self.client_properties = f.properties()
        f.end()
        self.write(codec.response(codec.PEER_PROPERTIES, corr, codec.OK, codec.properties({
            "product": "warren", "version": "1", "platform": "Python/Twisted",
            "copyright": "warren", "information": "warren message broker"})))

    def _sasl_handshake(self, f: Fields) -> None:
        corr = f.u32()
        f.end()
        self.write(codec.response(codec.SASL_HANDSHAKE, corr, codec.OK,
                                  b"\x00\x00\x00\x01", codec.string("PLAIN")))

    def _sasl_authenticate(self, f: Fields) -> None:
        corr = f.u32()
        mechanism = f.string()
        data = f.blob()
        f.end()
        if mechanism != "PLAIN":
            self.write(codec.response(codec.SASL_AUTHENTICATE, corr,
                                      codec.SASL_MECHANISM_NOT_SUPPORTED))
            return
        parts = data.split(b"\0")
        if len(parts) != 3:
            self.write(codec.response(codec.SASL_AUTHENTICATE, corr, codec.SASL_ERROR))
            return
        try:
            username, password = parts[1].decode(), parts[2].decode()
            self.user = self.broker.authenticate(username, password, loopback=self.loopback,
                                                 peer=self.peer, protocol="stream")
        except (AccessRefused, UnicodeDecodeError):
            user = self.broker.users.get(parts[1].decode("utf-8", "replace"))
            code = (codec.SASL_AUTHENTICATION_FAILURE_LOOPBACK
                    if user is not None and user.name in self.broker.loopback_users
                    and not self.loopback else codec.AUTHENTICATION_FAILURE)
            self.write(codec.response(codec.SASL_AUTHENTICATE, corr, code))
            return
        self.write(codec.response(codec.SASL_AUTHENTICATE, corr, codec.OK))
        self.write(codec.tune_frame(self.frame_max, self.heartbeat))

    def _tune(self, f: Fields) -> None:
        frame_max = f.u32()
        heartbeat = f.u32()
        f.end()
        if frame_max:
            self.frame_max = min(self.frame_max, frame_max) if self.frame_max else frame_max
        self.heartbeat = min(self.heartbeat, heartbeat) if self.heartbeat else heartbeat
        self.tuned(self.frame_max, self.heartbeat)

    def _open(self, f: Fields) -> None:
        corr = f.u32()
        vhost = f.string() or "/"
        f.end()
        if self.user is None:
            self.fail(codec.AUTHENTICATION_FAILURE, "open before authentication")
            return
        try:
            self.vhost = self.broker.open_vhost(self.user, vhost, peer=self.peer,
                                                protocol="stream")
        except (NotAllowed, NotFound):
            self.write(codec.response(codec.OPEN, corr, codec.VIRTUAL_HOST_ACCESS_FAILURE))
            return
        host, port = self.advertised
        self.write(codec.response(codec.OPEN, corr, codec.OK, codec.properties(
            {"advertised_host": host, "advertised_port": str(port)})))

    def _on_close(self, f: Fields) -> None:
        corr = f.u32()
        f.u16()
        f.string()
        f.end()
        self.write(codec.response(codec.CLOSE, corr, codec.OK))
        self.connection_lost()
        self._close()

    def _command_versions(self, f: Fields) -> None:
        corr = f.u32()
        for _ in range(f.count()):
            f.u16(), f.u16(), f.u16()
        f.end()
        self.write(codec.command_versions_response(corr))

    # ---------------------------------------------------------------- streams
    @property
    def _open_vhost(self) -> VirtualHost:
        """The vhost of the opened connection, for the commands ``handle`` dispatches only
        after open."""
        if self.vhost is None:
            raise MalformedFrame("command before open")
        return self.vhost

    @property
    def _open_user(self) -> User:
        """The user open was granted to (set before the vhost, see ``_open``)."""
        if self.user is None:
            raise MalformedFrame("command before authentication")
        return self.user

    def _stream(self, name: str | None) -> "StreamQueue | None":
        q = self._open_vhost.queues.get(name or "")
        return q if isinstance(q, StreamQueue) else None

    def _allowed(self, kind: str, name: str, resource: str = "queue") -> bool:
        try:
            self.broker.check(self._open_user, self._open_vhost.name, kind, resource, name)
            return True
        except AccessRefused:
            return False

    def _create(self, f: Fields) -> None:
        corr = f.u32()
        name = f.string() or ""
        args = f.properties()
        f.end()
        if not self._allowed("configure", name):
            code = codec.ACCESS_REFUSED
        else:
            existed = name in self._open_vhost.queues
            code = self._declare(name, args)
            if existed and code == codec.OK:
                # RabbitMQ: the same stream again is "already exists", other arguments
                # (an inequivalent declare) a precondition failure
                code = codec.STREAM_ALREADY_EXISTS
        self.write(codec.response(codec.CREATE, corr, code))

    def _declare(self, name: str, args: dict[str, str]) -> int:
        arguments = queue_arguments(args)
        if arguments is None:
            return codec.PRECONDITION_FAILED
        try:
            self._open_vhost.declare_queue(name, durable=True, arguments=arguments)
        except PreconditionFailed:
            return codec.PRECONDITION_FAILED
        except AccessRefused:
            return codec.ACCESS_REFUSED
        except BrokerError:
            return codec.INTERNAL_ERROR
        return codec.OK

    def _delete(self, f: Fields) -> None:
        corr = f.u32()
        name = f.string() or ""
        f.end()
        if self._stream(name) is None:
            code = codec.STREAM_DOES_NOT_EXIST
        elif not self._allowed("configure", name):
            code = codec.ACCESS_REFUSED
        else:
            self._open_vhost.delete_queue(name)
            code = codec.OK
        self.write(codec.response(codec.DELETE, corr, code))

    def _metadata(self, f: Fields) -> None:
        corr = f.u32()
        names = f.strings()
        f.end()
        host, port = self.advertised
        self.write(codec.metadata_response(corr, host, port, [
            (n or "", codec.OK if self._stream(n) is not None else codec.STREAM_DOES_NOT_EXIST)
            for n in names]))

    def _stream_stats(self, f: Fields) -> None:
        corr = f.u32()
        name = f.string()
        f.end()
        q = self._stream(name)
        if q is None:
            self.write(codec.response(codec.STREAM_STATS, corr, codec.STREAM_DOES_NOT_EXIST,
                                      b"\x00\x00\x00\x00"))
            return
        log_ = q.log
        # osiris' chunk ids: the first offset of the oldest chunk and of the newest one (a
        # stored offset's chunk among them), -1 for none
        stats = {"first_chunk_id": log_.first_offset if log_.count else -1,
                 "committed_chunk_id": log_.last_chunk_id}
        body = b"".join(codec.string(k) + v.to_bytes(8, "big", signed=True)
                        for k, v in stats.items())
        self.write(codec.response(codec.STREAM_STATS, corr, codec.OK,
                                  len(stats).to_bytes(4, "big"), body))

    # ---------------------------------------------------------------- super streams
    def _route(self, f: Fields) -> None:
        """``rabbit_stream_reader``'s route: write on the exchange, then on every stream."""
        corr = f.u32()
        key = f.string() or ""
        name = f.string() or ""
        f.end()
        code, streams = codec.OK, []
        if not self._allowed("write", name, "exchange"):
            code = codec.ACCESS_REFUSED
        else:
            try:
                streams = super_streams.route(self._open_vhost, name, key)
            except NotFound:
                code = codec.STREAM_DOES_NOT_EXIST
            if not all(self._allowed("write", s) for s in streams):
                code, streams = codec.ACCESS_REFUSED, []
        self.write(codec.streams_response(codec.ROUTE, corr, code, streams))

    def _partitions(self, f: Fields) -> None:
        """Read or write on the exchange and on every partition."""
        corr = f.u32()
        name = f.string() or ""
        f.end()
        code, streams = codec.OK, []
        if not self._read_or_write(name, "exchange"):
            code = codec.ACCESS_REFUSED
        else:
            try:
                streams = super_streams.partitions(self._open_vhost, name)
            except NotFound:
                code = codec.STREAM_DOES_NOT_EXIST
            if not all(self._read_or_write(s) for s in streams):
                code, streams = codec.ACCESS_REFUSED, []
        self.write(codec.streams_response(codec.PARTITIONS, corr, code, streams))

    def _read_or_write(self, name: str, resource: str = "queue") -> bool:
        return self._allowed("read", name, resource) or self._allowed("write", name, resource)

    def _may_manage(self, name: str, partitions: list[str]) -> bool:
        try:
            super_streams.check_manage(self.broker, self._open_user, self._open_vhost.name, name,
                                       partitions)
            return True
        except AccessRefused:
            return False

    def _create_super_stream(self, f: Fields) -> None:
        corr = f.u32()
        name = f.string() or ""
        partitions = [p or "" for p in f.strings()]
        binding_keys = [k or "" for k in f.strings()]
        args = f.properties()
        f.end()
        name = super_streams.correct_name(name) or ""
        arguments = queue_arguments(args)
        if not name or arguments is None:
            code = codec.PRECONDITION_FAILED
        elif not self._may_manage(name, partitions):
            code = codec.ACCESS_REFUSED
        else:
            try:
                super_streams.create(self._open_vhost, name, partitions, binding_keys, arguments)
                code = codec.OK
            except super_streams.AlreadyExists as e:
                log.warning("super stream %r not created: %s", name, e.text)
                code = codec.STREAM_ALREADY_EXISTS
            except PreconditionFailed as e:
                log.warning("super stream %r not created: %s", name, e.text)
                code = codec.PRECONDITION_FAILED
            except BrokerError as e:
                log.warning("super stream %r not created: %s", name, e.text)
                code = codec.INTERNAL_ERROR
        self.write(codec.response(codec.CREATE_SUPER_STREAM, corr, code))

    def _delete_super_stream(self, f: Fields) -> None:
        corr = f.u32()
        name = f.string() or ""
        f.end()
        if not self._allowed("configure", name, "exchange"):
            code = codec.ACCESS_REFUSED
        else:
            try:
                partitions = super_streams.partitions(self._open_vhost, name)
            except NotFound:
                code = codec.STREAM_DOES_NOT_EXIST
            else:
                if self._may_manage(name, partitions):
                    super_streams.delete(self._open_vhost, name, partitions)
                    code = codec.OK
                else:
                    code = codec.ACCESS_REFUSED
        self.write(codec.response(codec.DELETE_SUPER_STREAM, corr, code))

    # ---------------------------------------------------------------- publishing
    def _declare_publisher(self, f: Fields) -> None:
        corr = f.u32()
        pub_id = f.u8()
        reference = f.string() or None
        name = f.string()
        f.end()
        q = self._stream(name)
        if q is None:
            code = codec.STREAM_DOES_NOT_EXIST
        elif not self._allowed("write", q.name):
            code = codec.ACCESS_REFUSED
        elif pub_id in self.publishers:
            code = codec.PRECONDITION_FAILED
        else:
            self.publishers[pub_id] = (q, reference)
            code = codec.OK
        self.write(codec.response(codec.DECLARE_PUBLISHER, corr, code))

    def _delete_publisher(self, f: Fields) -> None:
        corr = f.u32()
        pub_id = f.u8()
        f.end()
        found = self.publishers.pop(pub_id, None)
        self.write(codec.response(codec.DELETE_PUBLISHER, corr, codec.OK if found else
                                  codec.PUBLISHER_DOES_NOT_EXIST))

    def _publish(self, f: Fields) -> None:
        """Each entry's message is appended, the plain ones of a frame as one run record.
        A sub-entry batch is stored as one record and delivered as it came: an uncompressed
        one is checked here (its sub-entries must fill it) and AMQP readers get its messages
        one by one; a compressed one is stored unopened, as osiris stores it, and AMQP
        readers pass over it, as RabbitMQ's do. A batch RabbitMQ would refuse, and
        the entries after it in the frame, get PRECONDITION_FAILED (``write_messages``)."""
        pub_id = f.u8()
        entries = f.publish_entries(2 if self._version == 2 else 1)
        publisher = self.publishers.get(pub_id)
        if publisher is None or publisher[0].deleted:
            self.write(codec.publish_error_frame(
                pub_id, [(e.publishing_id, codec.PUBLISHER_DOES_NOT_EXIST) for e in entries]))
            return
        q, reference = publisher
        props = self._persistent_props
        if props is None:
            props = self._persistent_props = self.broker.codec.encode(Properties(delivery_mode=2))
        head = record_head("", q.name, props, STREAM_BODY)
        # a named publisher: ids not above the last one stored are duplicates, confirmed
        # without being stored again (osiris' deduplication)
        last = q.log.writers.get(reference, -1) if reference is not None else -1
        records: list[bytes | SubEntryBatch | BodyRun] = []
        values: list[str | None] = []
        accepted: list[int] = []
        plain: list[bytes] = []   # bodies without a filter value, kept as one run record

        def end_run() -> None:
            if len(plain) > 1:
                records.append(BodyRun(head, plain[:]))
                values.append(None)
            elif plain:
                records.append(head + plain[0])
                values.append(None)
            plain.clear()

        for i, entry in enumerate(entries):
            batch = entry.batch
            kept: SubEntryBatch | BodyRun | None = None
            if batch is None:
                bodies = [entry.data]
            else:
                try:
                    codec.check_sub_batch(batch, entry.data)
                    if batch.compression == codec.COMPRESSION_NONE:
                        bodies = codec.sub_batch_messages(batch, entry.data)
                        kept = BodyRun(head, bodies, batch=True)
                    else:
                        kept = SubEntryBatch(batch.message_count,
                                             codec.sub_entry(batch, entry.data))
                except codec.BadSubBatch as e:
                    log.warning("stream connection %s: sub-entry batch of publisher %d to "
                                "%r refused, with the rest of its frame: %s", self.peer,
                                pub_id, q.name, e)
                    self.write(codec.publish_error_frame(
                        pub_id, [(later.publishing_id, codec.PRECONDITION_FAILED)
                                 for later in entries[i:]]))
                    break
            accepted.append(entry.publishing_id)
            if reference is not None:
                if entry.publishing_id <= last:
                    continue
                last = entry.publishing_id
            if kept is not None:
                end_run()
                records.append(kept)
                values.append(None)
            elif entry.filter_value is None:
                plain.extend(bodies)
            else:
                end_run()
                records.extend(head + body for body in bodies)
                values.extend([entry.filter_value] * len(bodies))
        end_run()
        if records:
            q.append_records(records, (reference, last) if reference is not None else None,
                             values if any(v is not None for v in values) else None)
        if accepted:
            self._confirms.setdefault(pub_id, []).extend(accepted)

    def _query_publisher_sequence(self, f: Fields) -> None:
        corr = f.u32()
        reference = f.string() or ""
        name = f.string()
        f.end()
        q = self._stream(name)
        if q is None:
            self.write(codec.response(codec.QUERY_PUBLISHER_SEQUENCE, corr,
                                      codec.STREAM_DOES_NOT_EXIST, bytes(8)))
            return
        seq = q.log.writers.get(reference, 0)
        self.write(codec.response(codec.QUERY_PUBLISHER_SEQUENCE, corr, codec.OK,
                                  seq.to_bytes(8, "big")))

    # ---------------------------------------------------------------- consuming
    def _subscribe(self, f: Fields) -> None:
        corr = f.u32()
        sub_id = f.u8()
        name = f.string()
        spec = offset_spec(*f.offset_specification())
        credit = f.u16()
        properties = f.properties()
        f.end()
        q = self._stream(name)
        single_active = properties.get("single-active-consumer") == "true"
        if q is None:
            code = codec.STREAM_DOES_NOT_EXIST
        elif not self._allowed("read", q.name):
            code = codec.ACCESS_REFUSED
        elif sub_id in self.subscriptions:
            code = codec.SUBSCRIPTION_ID_ALREADY_EXISTS
        elif single_active and not properties.get("name"):
            code = codec.PRECONDITION_FAILED   # a single active consumer must have a name
        else:
            code = codec.OK
        self.write(codec.response(codec.SUBSCRIBE, corr, code))
        if code != codec.OK or q is None:
            return
        sub = Subscription(self, sub_id, q, spec, credit)
        sub.filter_spec = subscription_filter(properties)
        self.subscriptions[sub_id] = sub
        group_name = properties["name"] if single_active else None
        if group_name is not None:
            sub.group_name = group_name
            sub.active = sub.reading = False
        q.add_consumer(sub)
        if group_name is not None:
            index = -1
            if "super-stream" in properties:
                index = super_streams.partition_index(self._open_vhost, properties["super-stream"],
                                                      q.name)
            q.consumer_group(group_name, index).register(sub)

    def _request_id(self) -> int:
        corr = self._next_request
        self._next_request += 1
        return corr

    def request_consumer_update(self, sub: Subscription, active: bool,
                                stepping_down: bool) -> None:
        corr = self._request_id()
        self._consumer_updates[corr] = (sub, stepping_down)
        self.write(codec.consumer_update_frame(corr, sub.sub_id, active))

    def _consumer_update_answer(self, f: Fields) -> None:
        """The client's answer: an active subscription reads from the offset it names (type
        0: the one it subscribed with); a passive one that stepped down lets the next
        member of its group become active."""
        corr = f.u32()
        f.u16()   # RabbitMQ logs a code other than OK and goes on
        kind, value = f.offset_specification()
        spec = None if kind == codec.OFFSET_NONE else offset_spec(kind, value)
        pending = self._consumer_updates.pop(corr, None)
        if pending is None:
            log.warning("stream connection %s: consumer update answer for unknown request "
                        "%d", self.peer, corr)
            return
        sub, stepping_down = pending
        if self.subscriptions.get(sub.sub_id) is not sub:
            return   # unsubscribed meanwhile: its group was told then
        q = sub.queue
        if sub.active:
            q.readers[sub] = q.start_offset(spec or sub.offset_spec)
            sub.reading = True
            q.dispatch()
        elif stepping_down:
            group = q.consumer_groups.get(sub.group_name or "")
            if group is not None:
                group.stepped_down(sub)

    def _credit(self, f: Fields) -> None:
        sub_id = f.u8()
        credit = f.u16()
        f.end()
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            self.write(codec.credit_error_frame(codec.SUBSCRIPTION_ID_DOES_NOT_EXIST, sub_id))
            return
        sub.credit += credit
        if not sub.reading:
            # a passive single active consumer keeps the credit, and is told (as RabbitMQ)
            self.write(codec.credit_error_frame(codec.PRECONDITION_FAILED, sub_id))
            return
        sub.queue.dispatch()

    def _unsubscribe(self, f: Fields) -> None:
        corr = f.u32()
        sub_id = f.u8()
        f.end()
        sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            self.write(codec.response(codec.UNSUBSCRIBE, corr,
                                      codec.SUBSCRIPTION_ID_DOES_NOT_EXIST))
            return
        sub.queue.remove_consumer(sub)
        self.write(codec.response(codec.UNSUBSCRIBE, corr, codec.OK))

    def _store_offset(self, f: Fields) -> None:
        reference = f.string() or ""
        name = f.string()
        offset = f.u64()
        f.end()
        q = self._stream(name)
        if q is not None and reference and self._allowed("read", q.name):
            q.store_offset(reference, offset)

    def _resolve_offset_spec(self, f: Fields) -> None:
        """RabbitMQ 4.3's resolve_offset_spec: the offset a subscription with this
        specification would read first (read permission needed), always answered as type
        offset (4), and 0 with an error code. The properties (filter values, chunk selector)
        are read and not used: warren's chunks are cut per reader, so any record is one."""
        corr = f.u32()
        name = f.string()
        spec = offset_spec(*f.offset_specification())
        f.properties()
        f.end()
        q = self._stream(name)
        offset = 0
        if not self._allowed("read", name or ""):   # RabbitMQ asks before it looks
            code = codec.ACCESS_REFUSED
        elif q is None:
            code = codec.STREAM_DOES_NOT_EXIST
        else:
            code, offset = codec.OK, q.start_offset(spec)
        self.write(codec.response(codec.RESOLVE_OFFSET_SPEC, corr, code,
                                  struct.pack(">HQ", codec.OFFSET_OFFSET, offset)))

    def _query_offset(self, f: Fields) -> None:
        corr = f.u32()
        reference = f.string() or ""
        name = f.string()
        f.end()
        q = self._stream(name)
        if q is None:
            self.write(codec.response(codec.QUERY_OFFSET, corr, codec.STREAM_DOES_NOT_EXIST,
                                      bytes(8)))
            return
        offset = q.log.consumers.get(reference)
        if offset is None:
            self.write(codec.response(codec.QUERY_OFFSET, corr, codec.NO_OFFSET, bytes(8)))
            return
        self.write(codec.response(codec.QUERY_OFFSET, corr, codec.OK, offset.to_bytes(8, "big")))

