"""The journal index's loaded maps (``store/journal/array_maps.py``) answer as the dicts they
stand for: the same random operations on a dict and on the arrays a checkpoint saved of it
give the same contents, order, lookups, and arrays saved again."""

from __future__ import annotations

import random
from array import array

import pytest

from warren.store.journal.array_maps import (
    LocationMap,
    QueueIds,
    ascending,
    location_arrays,
    queue_arrays,
    queue_sizes,
)


def packed(rng: random.Random) -> int:
    # a location as ``index.pack_location`` packs it: wider than 64 bits
    return (rng.randrange(1, 1 << 20) << 104) | (rng.randrange(1 << 32) << 72) | (
        rng.randrange(1 << 32) << 40) | rng.randrange(1 << 40)


@pytest.mark.parametrize("seed", range(4))
def test_a_loaded_location_map_behaves_as_the_dict_it_was_saved_from(seed):
    rng = random.Random(seed)
    model = {msg_id: packed(rng) for msg_id in range(1, 400) if rng.random() < 0.7}
    loaded = LocationMap(*location_arrays(model))
    next_id = 400
    for _ in range(2000):
        op = rng.random()
        msg_id = rng.randrange(1, next_id + 5)
        if op < 0.25:   # a new message (ids only grow)
            next_id += rng.randrange(1, 3)
            model[next_id] = loaded[next_id] = packed(rng)
        elif op < 0.45 and msg_id in model:   # a rewrite in place
            model[msg_id] = loaded[msg_id] = packed(rng)
        elif op < 0.7:   # released
            assert loaded.pop(msg_id, None) == model.pop(msg_id, None)
        else:
            assert loaded.get(msg_id) == model.get(msg_id)
            assert (msg_id in loaded) == (msg_id in model)
        assert len(loaded) == len(model)
    assert sorted(loaded.items()) == sorted(model.items())
    with pytest.raises(KeyError):
        loaded[next_id + 1]
    again = location_arrays(loaded)
    assert list(again[0]) == sorted(model)
    assert dict(LocationMap(*again).items()) == model


@pytest.mark.parametrize("seed", range(4))
def test_a_loaded_queue_behaves_as_the_ordered_dict_it_was_saved_from(seed):
    rng = random.Random(seed)
    model = {msg_id: rng.random() < 0.2 for msg_id in range(1, 300) if rng.random() < 0.8}
    order, flags = queue_arrays(model)
    assert ascending(order)
    loaded = QueueIds(order, bytearray(flags))
    next_id = 300
    for _ in range(1500):
        op = rng.random()
        msg_id = rng.choice(list(model)) if model and rng.random() < 0.8 else rng.randrange(400)
        if op < 0.2:   # published to
            next_id += 1
            model[next_id] = loaded[next_id] = False
        elif op < 0.35 and msg_id in model:   # delivered
            model[msg_id] = loaded[msg_id] = True
        elif op < 0.7:   # acked
            assert loaded.pop(msg_id, None) == model.pop(msg_id, None)
        else:
            assert loaded.get(msg_id) == model.get(msg_id)
        assert len(loaded) == len(model) and bool(loaded) == bool(model)
    assert list(loaded) == list(model)   # queue order kept
    assert list(reversed(loaded)) == list(reversed(model))
    assert list(loaded.values()) == list(model.values())
    assert list(loaded.delivered()) == [m for m, flag in model.items() if flag]
    order, flags = queue_arrays(loaded)
    assert list(order) == list(model) and list(flags) == [int(f) for f in model.values()]


def test_a_queue_whose_order_is_not_ascending_is_said_so():
    assert not ascending(array("q", [3, 1, 2]))
    assert ascending(array("q", [1, 2, 9]))
    assert ascending(array("q"))


def test_a_loaded_queue_s_sizes_come_from_its_saved_sizes_and_the_recent_locations():
    messages = LocationMap(*location_arrays({m: m * 10 for m in range(1, 6)}))
    queue = QueueIds(array("q", [1, 2, 3, 4, 5]), bytearray(5), array("Q", [7, 8, 9, 10, 11]))
    messages[6] = 60
    queue[6] = False
    queue.pop(2)
    assert queue_sizes(queue, messages, 0xF).tolist() == [7, 9, 10, 11, 60 & 0xF]
    # without saved sizes (or a plain dict): every size from the locations
    assert queue_sizes({5: False, 1: True}, messages, 0xFF).tolist() == [50, 10]
