"""A real ``StreamLog`` in a temporary directory with a Twisted ``Clock``: filter values come
back on read and the Bloom filters are rebuilt when the log is opened again; append times,
kept per run of one millisecond, find the offset of a timestamp before and after reopening;
a compressed sub-entry batch is one record over several offsets, read back whole."""

from __future__ import annotations

from twisted.internet.task import Clock

from warren.stream.filters import BLOCK, FilterSpec
from warren.stream.log import StreamLog


def test_filter_values_survive_reopening(tmp_path):
    log = StreamLog(str(tmp_path / "s"), Clock())
    log.open(fresh=True)
    log.append_many([b"plain"])
    log.append_many([b"r%d" % i for i in range(BLOCK)], ["red"] * BLOCK)
    log.append_many([b"b"], ["blue"])
    assert log.read(0)[1:] == (b"plain", None)
    assert log.read(1)[1:] == (b"r0", "red")
    log.close()

    again = StreamLog(str(tmp_path / "s"), Clock())
    again.open(fresh=False)
    assert again.next_offset == BLOCK + 2
    assert again.read(BLOCK + 1)[1:] == (b"b", "blue")
    red, blue = FilterSpec(["red"], False), FilterSpec(["blue"], False)
    unfiltered = FilterSpec(["none"], True)
    # block 0: offset 0 without a value, then red; block 1: red, then blue
    assert again.filters.may_match(0, red) and again.filters.may_match(0, unfiltered)
    assert not again.filters.may_match(0, blue)
    assert again.filters.may_match(1, red) and again.filters.may_match(1, blue)
    assert not again.filters.may_match(1, unfiltered)
    # a block never given a value holds only unfiltered messages
    assert again.filters.may_match(2, unfiltered) and not again.filters.may_match(2, red)
    again.close()


def test_offsets_by_time_across_runs_and_reopening(tmp_path):
    clock = Clock()
    clock.advance(1000)                              # 1,000,000 ms
    log = StreamLog(str(tmp_path / "t"), clock)
    log.open(fresh=True)
    log.append_many([b"a", b"b"])                    # 0, 1 at 1,000,000
    log.append_many([b"c"])                          # 2, same turn: the same chunk
    clock.advance(0.5)
    log.append_many([b"d"])                          # 3 at 1,000,500
    clock.advance(1)
    log.append_many([b"e", b"f"])                    # 4, 5 at 1,001,500
    for reopened in (False, True):
        assert list(log.segments[-1].run_starts) == [0, 3, 4]   # the chunks
        if reopened:
            log.close()
            log = StreamLog(str(tmp_path / "t"), clock)
            log.open(fresh=False)
        assert [log.offset_at(t) for t in (0, 1_000_000, 1_000_001, 1_000_500, 1_001_000,
                                           1_001_500, 1_001_501)] == [0, 0, 3, 3, 4, 4, 6]
        assert log.read(3)[0] == 1_000_500
    log.close()


def test_a_run_is_read_at_once_and_stops_at_a_damaged_record(tmp_path):
    log = StreamLog(str(tmp_path / "r"), Clock())
    log.open(fresh=True)
    log.append_many([b"m%d" % i for i in range(5)], [None, "v", None, None, None])
    log.sync()
    first, ts, records, after, _ = log.read_run(0, log.next_offset, 100, 1 << 20)
    assert (records, after) == ([b"m0", b"m1", b"m2", b"m3", b"m4"], 5)
    assert log.read_run(1, 3, 100, 1 << 20)[2:4] == ([b"m1", b"m2"], 3)
    assert log.read_run(0, 5, 2, 1 << 20)[2:4] == ([b"m0", b"m1"], 2)
    assert log.read_run(0, 5, 100, 1)[2:4] == ([b"m0"], 1)      # about max_bytes
    # a flipped byte in offset 3's record: the run stops before it, then it is passed over
    seg = log.segments[-1]
    path = seg.file.path
    with open(path, "r+b") as f:
        f.seek(seg.positions[3] + seg.lengths[3] - 1)
        f.write(b"X")
    assert log.read_run(0, 5, 100, 1 << 20)[2:4] == ([b"m0", b"m1", b"m2"], 3)
    assert log.read_run(3, 5, 100, 1 << 20)[2:4] == ([], 4)
    assert log.read_run(4, 5, 100, 1 << 20)[2:4] == ([b"m4"], 5)
    log.close()


def test_a_run_of_bodies(tmp_path):
    from warren.model.message import record_head
    log = StreamLog(str(tmp_path / "b"), Clock())
    log.open(fresh=True)
    head = record_head("ex", "key", b"\x00\x01props")
    log.append_many([head + b"body0", head + b"body1"], [None, "v"])
    assert log.read_run(0, 2, 10, 1 << 20, body_only=True)[2:4] == ([b"body0", b"body1"], 2)
    assert log.read_run(0, 2, 10, 1 << 20)[2] == [head + b"body0", head + b"body1"]
    log.close()


def test_a_sub_entry_batch_takes_its_offsets_and_comes_back_whole(tmp_path):
    import struct
    from warren.stream.log import ChunkPart, SubEntryBatch
    entry = struct.pack(">BHII", 0x90, 3, 15, 4) + b"zzzz"   # gzip, 3 messages, as published
    log = StreamLog(str(tmp_path / "sb"), Clock())
    log.open(fresh=True)
    log.append_many([b"m0", SubEntryBatch(3, entry), b"m4"])
    assert log.next_offset == 5
    batch = ChunkPart(1, 3, entry)
    assert log.read_run(0, 5, 100, 1 << 20)[2:4] == ([b"m0", batch, b"m4"], 5)
    # a run starting inside the batch starts at its first offset
    assert log.read_run(2, 5, 100, 1 << 20) == (1, log.read(1)[0], [batch, b"m4"], 5, 0)
    # a run that would end inside it stops before it, unless it is all there is
    assert log.read_run(0, 2, 100, 1 << 20)[2:4] == ([b"m0"], 1)
    assert log.read_run(1, 2, 100, 1 << 20)[2:4] == ([batch], 4)
    # one message at a time: the batch's offsets have no message, and the next one is 4
    assert log.read(2)[1] is None and log.batch_end(2) == 4 and log.batch_end(0) == 1
    assert log.last_chunk_offset == 0   # the one append is one chunk
    log.close()
    again = StreamLog(str(tmp_path / "sb"), Clock())
    again.open(fresh=False)
    assert again.next_offset == 5
    assert again.read_run(0, 5, 100, 1 << 20)[2:4] == ([b"m0", batch, b"m4"], 5)
    again.close()


def test_a_publish_run_is_one_record_read_whole_or_message_by_message(tmp_path):
    import struct
    from warren.model.message import record_head
    from warren.stream.log import BodyRun, ChunkPart
    head = record_head("", "s", b"\x00\x01p")
    log = StreamLog(str(tmp_path / "run"), Clock())
    log.open(fresh=True)
    log.append_many([head + b"a", BodyRun(head, [b"b0", b"b1", b"b22"]), head + b"c"])
    assert log.next_offset == 5
    framed = b"".join(struct.pack(">I", len(b)) + b for b in (b"b0", b"b1", b"b22"))
    run = ChunkPart(3, 3, framed)
    assert log.read_run(0, 5, 100, 1 << 20, body_only=True)[2:4] == ([b"a", run, b"c"], 5)
    assert log.read_run(2, 5, 100, 1 << 20, body_only=True)[:1] == (1,)   # from its start
    # an AMQP reader: each message, head and body, in any order
    assert [log.read(o)[1] for o in (3, 1, 2, 4)] == [head + b"b22", head + b"b0",
                                                       head + b"b1", head + b"c"]
    assert log.batch_end(1) == 4 and log.last_chunk_offset == 0   # one append, one chunk
    log.close()
    again = StreamLog(str(tmp_path / "run"), Clock())
    again.open(fresh=False)
    assert again.next_offset == 5 and again.read(2)[1] == head + b"b1"
    again.append_many([BodyRun(head, [b"d0", b"d1"])])
    assert again.last_chunk_offset == 5 and again.read(6)[1] == head + b"d1"
    # an uncompressed sub-entry batch: the same record, delivered as the one entry it was
    again.append_many([BodyRun(head, [b"e0", b"e1"], batch=True)])
    framed = struct.pack(">I", 2) + b"e0" + struct.pack(">I", 2) + b"e1"
    assert again.read_run(7, 9, 100, 1 << 20, body_only=True)[2:4] == (
        [ChunkPart(1, 2, struct.pack(">BHII", 0x80, 2, 12, 12) + framed)], 9)
    assert again.read(8)[1] == head + b"e1"
    again.close()


def test_a_long_publish_run_is_cut_into_chunk_sized_records(tmp_path):
    from warren.model.message import record_head
    from warren.stream.log import MAX_RUN_BYTES, MAX_RUN_MESSAGES, BodyRun
    head = record_head("", "s", b"")
    log = StreamLog(str(tmp_path / "long"), Clock())
    log.open(fresh=True)
    many = MAX_RUN_MESSAGES * 2 + 5
    log.append_many([BodyRun(head, [b"x"] * many)])
    big = b"y" * (MAX_RUN_BYTES // 3)
    log.append_many([BodyRun(head, [big] * 4)])
    assert log.next_offset == many + 4
    sizes, offset = [], 0
    while offset < log.next_offset:
        first, _, parts, offset, _ = log.read_run(offset, log.next_offset, 1, 1,
                                                  body_only=True)
        sizes.append(parts[0].messages)
    # records of at most MAX_RUN_MESSAGES, and of about MAX_RUN_BYTES at most
    assert sizes == [MAX_RUN_MESSAGES, MAX_RUN_MESSAGES, 5, 3, 1]
    assert log.read(many + 3)[1] == head + big
    # though appended in one turn, chunks no bigger: each of those records starts one, so
    # ``last`` is the last of them, not the turn's first offset
    assert list(log.segments[-1].run_starts) == [0, 1024, 2048, 2053, 2056]
    assert log.last_chunk_offset == many + 3
    log.close()


def test_a_turns_chunk_rolling_over_a_segment_starts_again_in_the_new_one(tmp_path):
    clock = Clock()
    log = StreamLog(str(tmp_path / "roll"), clock)
    log.open(fresh=True)
    log.max_segment_bytes = 200
    for i in range(6):   # one turn: one chunk, but no chunk spans two segments
        log.append_many([b"m%d" % i + b"." * 40])
    clock.advance(0)
    chunks = [(seg.first_offset, list(seg.run_starts)) for seg in log.segments]
    log.close()
    again = StreamLog(str(tmp_path / "roll"), clock)
    again.open(fresh=False)   # every record checks out: the one that rolled was framed anew
    assert again.next_offset == 6 and len(again.segments) > 1
    assert [(seg.first_offset, list(seg.run_starts)) for seg in again.segments] == chunks
    assert all(starts == [0] for _, starts in chunks)
    assert [again.read_run(o, 6, 100, 1 << 20)[3] for o, _ in chunks] == \
        [o for o, _ in chunks[1:]] + [6]
    again.close()
