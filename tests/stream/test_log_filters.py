"""The stream log's filter values and Bloom filters, on a real ``StreamLog`` in a temporary
directory with a Twisted ``Clock``: what a record holds comes back on read, and the filters
are rebuilt from the records when the log is opened again."""

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
