"""``CompactRun`` (broker/compact.py) against the plainest model of it, a list of rows: what
goes in by ``push``, ``extend`` and ``pin`` comes out of ``take`` the same, in order, with
the same byte counts, whatever the mix (seeded random sequences of operations); and a
recovered stretch costs its ids and sizes only, not an item a row in every column."""

from __future__ import annotations

import random
from array import array

import pytest

from warren.amqp.properties import CODEC
from warren.broker.compact import TTL_UNKNOWN, CompactRun
from warren.model.message import Message, Properties, QueueEntry


def pinned_entry(seq: int, size: int) -> QueueEntry:
    message = Message("", "q", b"p" * size, codec=CODEC, props=Properties())
    return QueueEntry(message, seq, None, False, 0)


@pytest.mark.parametrize("seed", range(20))
def test_rows_come_out_as_they_went_in(seed):
    rnd = random.Random(seed)
    run, model = CompactRun(), []
    seq = rnd.randrange(1, 1000)
    for _ in range(60):
        op = rnd.random()
        if op < 0.3:
            k = rnd.randrange(0, 400)
            size, expires = rnd.choice([100, 7]), rnd.choice([None, 12.5])
            ids = array("q", range(seq * 10, seq * 10 + k))
            view = rnd.random() < 0.5   # recovery passes views of the store's arrays
            run.extend(memoryview(ids) if view else ids, seq,
                       memoryview(array("q", [size] * k)) if view else array("q", [size] * k),
                       expires)
            model += [(seq * 10 + j, seq + j, size, expires, TTL_UNKNOWN, 0, 0, -1)
                      for j in range(k)]
            seq += k + rnd.choice([0, 0, 3])
        elif op < 0.6:
            row = (rnd.randrange(10**6), seq, rnd.randrange(200), rnd.choice([None, 5.0, 7.0]),
                   rnd.choice([0, 1, 2, 3]), rnd.choice([0, 0, 4]), rnd.choice([0, 0, 9]),
                   rnd.choice([-1, -1, rnd.randrange(1000)]))
            run.push(*row)
            model.append(row)
            seq += rnd.choice([1, 1, 2])
        elif op < 0.7:
            entry = pinned_entry(seq, rnd.randrange(50))
            run.pin(entry)
            model.append(entry)
            seq += 1
        else:
            k = rnd.randrange(0, 5000 if rnd.random() < 0.1 else 300)
            taken, model = model[:k], model[k:]
            assert run.take(k) == taken
        rows = [r for r in model if not isinstance(r, QueueEntry)]
        assert len(run) == len(model) and run.paged == len(rows)
        assert run.bytes == sum(len(r.message.body) if isinstance(r, QueueEntry) else r[2]
                                for r in model)
        assert run.paged_bytes == sum(r[2] for r in rows)
        assert run.in_file == sum(1 for r in rows if r[7] >= 0)
        assert run.next_expiry() == min((r[3] for r in rows if r[3] is not None), default=None)
        assert list(run) == model
        if model:
            seqs = [r.seq if isinstance(r, QueueEntry) else r[1] for r in model]
            assert (run.first_seq, run.last_seq) == (seqs[0], seqs[-1])
            assert run.paged_ids(0, len(model)) == (
                [r[0] for r in rows if r[7] < 0], run.in_file, len(rows))


def test_a_recovered_stretch_keeps_one_value_per_column():
    """A million recovered rows behind a few delivered ones (recovery's ``push``es, then the
    rest in bulk): the columns past the ids and sizes hold the few rows only."""
    run = CompactRun()
    for seq in range(1, 4):
        run.push(seq, seq, 100, None, TTL_UNKNOWN | 1, 1, 0)
    count = 1_000_000
    run.extend(array("q", range(10, 10 + count)), 4, array("q", [100] * count), None)
    for column in (run.seqs, run.expires, run.counts, run.flags, run.prios, run.wheres):
        assert len(column.items) <= 3
    assert len(run.ids) == len(run.sizes) == count + 3
    assert run.take(5)[3:] == [(10, 4, 100, None, TTL_UNKNOWN, 0, 0, -1),
                               (11, 5, 100, None, TTL_UNKNOWN, 0, 0, -1)]
    assert run.last_seq == count + 3
