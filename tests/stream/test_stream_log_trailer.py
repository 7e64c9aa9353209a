"""A real ``StreamLog`` (temporary directory, Twisted ``Clock``): the trailer record a named
publisher's messages are followed by, in osiris' trailer entry format; the trailer size
``read_run`` gives for a chunk (only a chunk that holds the publish's last record has it);
deduplication read back from trailers; each append a chunk of its own, with its own trailer,
also after reopening (osiris keeps each writer batch a chunk); a log written before trailers
(the publisher's tracking a type 3 record after its messages) read back with the same
trailers; a trailer torn at the tail of a segment cut on recovery without losing the message
before it."""

from __future__ import annotations

import logging
import os
import struct

from twisted.internet.task import Clock

from warren.store.journal.segment import JournalSegment, encode_record
from warren.stream.log import StreamLog

ENTRY_24 = b"\x00\x0etest-reference" + (1).to_bytes(8, "big")   # rstream's test_deliver's


def records_of(directory, number=0):
    """(type, payload) of each record of a segment file, as the journal scan finds them."""
    seg = JournalSegment(directory, number)
    try:
        return [(t, bytes(p)) for _, t, p in seg.scan().records]
    finally:
        seg.close()


def test_a_named_publish_is_followed_by_its_trailer_and_a_chunk_ending_there_has_it(tmp_path):
    directory = str(tmp_path / "s")
    clock = Clock()
    log = StreamLog(directory, clock)
    log.open(fresh=True)
    log.append_many([b"m0", b"m1"], writer=("test-reference", 1))
    clock.advance(0)                                           # each in a turn of its own
    log.append_many([b"m2"])                                   # an unnamed publisher's
    clock.advance(0)
    log.append_many([b"m3"], writer=("x" * 256, 9))            # too long for a trailer entry
    log.sync()
    assert records_of(directory)[1:] == [
        (1, struct.pack(">Qq", 0, 0) + b"m0"),
        (1, struct.pack(">Qq", 1 | 1 << 63, 0) + b"m1"),   # goes on with m0's chunk
        (9, ENTRY_24),
        (1, struct.pack(">Qq", 2, 0) + b"m2"),
        (1, struct.pack(">Qq", 3, 0) + b"m3"),
        (3, struct.pack(">H", 256) + b"x" * 256 + (9).to_bytes(8, "big"))]
    assert log.read_run(0, 2, 100, 1 << 20)[2:] == ([b"m0", b"m1"], 2, 24)
    assert log.read_run(0, 1, 100, 1 << 20)[2:] == ([b"m0"], 1, 0)    # the publish goes on
    assert log.read_run(1, 2, 100, 1 << 20)[2:] == ([b"m1"], 2, 24)
    assert log.read_run(2, 3, 100, 1 << 20)[2:] == ([b"m2"], 3, 0)
    assert log.read_run(3, 4, 100, 1 << 20)[2:] == ([b"m3"], 4, 0)
    assert log.read_run(0, 4, 100, 1 << 20)[2:] == ([b"m0", b"m1"], 2, 24)   # its chunk
    log.close()

    again = StreamLog(directory, Clock())
    again.open(fresh=False)
    assert again.writers == {"test-reference": 1, "x" * 256: 9}
    assert [again.read_run(o, 4, 100, 1 << 20)[2:] for o in (0, 2, 3)] == [
        ([b"m0", b"m1"], 2, 24), ([b"m2"], 3, 0), ([b"m3"], 4, 0)]
    again.close()


def test_the_publishes_of_a_turn_are_a_chunk_with_one_trailer_also_after_reopening(tmp_path):
    clock = Clock()
    log = StreamLog(str(tmp_path / "p"), clock)
    log.open(fresh=True)
    for turn in range(2):   # the same six publishes each in its own turn, then in one
        for i in range(3):
            for writer, bodies in (("a", [b"a"]), ("bb", [b"b", b"c"])):
                log.append_many(bodies, writer=(writer, i))
                if not turn:
                    clock.advance(0)   # the turn ends
        clock.advance(0)
    chunks = [(0, 1, 11), (1, 3, 12), (3, 4, 11), (4, 6, 12), (6, 7, 11), (7, 9, 12),
              (9, 18, (1 + 1 + 1 + 8) + (1 + 1 + 2 + 8))]   # one entry per writer
    for reopened in (False, True):
        if reopened:
            log.close()
            log = StreamLog(str(tmp_path / "p"), clock)
            log.open(fresh=False)
        assert [(o,) + log.read_run(o, 18, 100, 1 << 20)[3:] for o, _, _ in chunks] == chunks
        assert log.last_chunk_offset == log.last_chunk_id == 9
    log.close()


def test_a_writers_appends_in_a_chunk_leave_one_trailer_with_its_last_id(tmp_path):
    """An AMQP channel's messages are appended one by one, each with its writer's next id:
    the chunk ends with one trailer entry for the writer, its last id (osiris' chunk has one
    per writer), not a trailer record after each message; a trailer already synced (so
    confirmed) stays where it is."""
    directory = str(tmp_path / "w")
    clock = Clock()
    log = StreamLog(directory, clock)
    log.open(fresh=True)

    def head(offset, goes_on=True):
        return struct.pack(">Qq", offset | (1 << 63 if goes_on else 0), 0)

    def entry(name, value):
        return b"\x00" + bytes([len(name)]) + name + value.to_bytes(8, "big")

    for i, writer in enumerate((("w", 1), ("w", 2), ("v", 1), ("v", 2))):   # one turn
        log.append_many([b"m%d" % i], writer=writer)
    log.sync()
    log.append_many([b"m4"], writer=("v", 3))   # the same chunk, after a sync
    clock.advance(0)                            # the turn ends
    log.append_many([b"m5"], writer=("v", 4))
    log.sync()
    assert records_of(directory)[1:] == [
        (1, head(0, goes_on=False) + b"m0"), (1, head(1) + b"m1"), (9, entry(b"w", 2)),
        (1, head(2) + b"m2"), (1, head(3) + b"m3"), (9, entry(b"v", 2)),
        (1, head(4) + b"m4"), (9, entry(b"v", 3)),
        (1, head(5, goes_on=False) + b"m5"), (9, entry(b"v", 4))]
    for reopened in (False, True):
        if reopened:
            log.close()
            log = StreamLog(directory, Clock())
            log.open(fresh=False)
            assert log.writers == {"w": 2, "v": 4}
        assert log.read_run(0, 6, 100, 1 << 20)[2:] == (
            [b"m0", b"m1", b"m2", b"m3", b"m4"], 5, 11 + 11)   # one entry per writer
        assert log.read_run(5, 6, 100, 1 << 20)[2:] == ([b"m5"], 6, 11)
    log.close()


def test_a_log_written_before_trailers_reads_back_with_the_same_trailers(tmp_path):
    directory = tmp_path / "old"
    os.makedirs(directory)

    def tracking(name, value):
        raw = name.encode()
        return struct.pack(">H", len(raw)) + raw + struct.pack(">Q", value)

    with open(directory / "00000000.log", "wb") as f:   # as warren wrote a segment before
        f.write(encode_record(2, struct.pack(">Q", 0))
                + encode_record(3, tracking("old-writer", 3))       # the segment's snapshot
                + encode_record(1, struct.pack(">Qq", 0, 5) + b"m0")
                + encode_record(3, tracking("test-reference", 7))   # the publish's tracking
                + encode_record(4, tracking("app", 0))              # a stored offset
                + encode_record(1, struct.pack(">Qq", 1, 6) + b"m1"))
    log = StreamLog(str(directory), Clock())
    log.open(fresh=False)
    assert log.next_offset == 2
    assert log.writers == {"old-writer": 3, "test-reference": 7}
    assert log.consumers == {"app": 0}
    assert log.read_run(0, 1, 100, 1 << 20) == (0, 5, [b"m0"], 1, 24)
    # each record of a log written before chunks were kept is a chunk
    assert log.read_run(0, 2, 100, 1 << 20)[2:] == ([b"m0"], 1, 24)
    assert log.read_run(1, 2, 100, 1 << 20)[2:] == ([b"m1"], 2, 0)
    # appends go on after it, the new way
    log.append_many([b"m2"], writer=("test-reference", 8))
    log.close()
    again = StreamLog(str(directory), Clock())
    again.open(fresh=False)
    assert again.writers["test-reference"] == 8 and again.next_offset == 3
    assert again.read_run(2, 3, 100, 1 << 20)[2:] == ([b"m2"], 3, 24)
    again.close()


def test_a_trailer_torn_at_the_tail_is_cut_and_the_message_before_it_kept(tmp_path, caplog):
    directory = str(tmp_path / "t")
    log = StreamLog(directory, Clock())
    log.open(fresh=True)
    log.append_many([b"m0"], writer=("test-reference", 1))
    log.sync()   # id 1 confirmed: its trailer stays, though m1 goes on with its chunk
    log.append_many([b"m1"], writer=("test-reference", 2))
    log.sync()
    path = log.segments[-1].file.path
    log.close()
    os.truncate(path, os.path.getsize(path) - 3)   # a crash in the middle of the trailer
    with caplog.at_level(logging.WARNING, logger="warren.stream"):
        again = StreamLog(directory, Clock())
        again.open(fresh=False)
    assert "bytes cut" in caplog.text
    assert again.next_offset == 2
    assert again.writers == {"test-reference": 1}   # id 2 was never confirmed: resent, kept
    assert [again.read_run(o, 2, 100, 1 << 20)[2:] for o in (0, 1)] == [
        ([b"m0", b"m1"], 2, 24), ([b"m1"], 2, 0)]   # m1's trailer was the torn part
    assert again.read_run(1, 2, 100, 1 << 20)[2:] == ([b"m1"], 2, 0)
    again.close()
