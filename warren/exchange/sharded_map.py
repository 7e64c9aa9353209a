"""A dict split by key hash into ``SHARDS`` dicts once it is large, so no insert resizes it whole.

Why: a CPython dict grows by building a table twice the size and re-inserting every entry, in
the one call that found it full. The binding structures of an exchange with a million
bindings are such dicts (its ``BindingSet``'s two, the topic trie's level that holds a million
words, the direct type's key dicts), and they all grow at the same bind: made through the
core, the bind that made the 699,051st binding (two thirds of 2^20, where they resize) took
99 ms (topic) and 107 ms of CPU (direct; 380 and 265 ms of wall time on the loaded machine),
the 349,526th half that, and so on, doubling with the size, during which no other client was
served. Split into 256 dicts, each holds some 4,000 entries at 1M and grows by itself, at a
slightly different bind from the others (the hashes spread the keys evenly, not identically),
for well under a millisecond each. A lookup costs a method call more (some 0.2 µs, on a
direct exchange's route only past 8,192 keys).

A map starts as a plain dict (an exchange or a queue with a few bindings pays nothing) and is
split once, when it passes ``SPLIT_AT`` entries, and never merged back. The split is not one
pass over those entries: that pass was about as long as the resize it replaces, and the four
maps of a direct exchange and its ``BindingSet`` split at the same bind (6-8 ms of CPU in one
call, the longest step left at 1M bindings). ``grown`` hands the full dict to a
:class:`SplittingMap`, which keeps it as it is (never written with a new key, so it never
resizes) beside the empty shards, puts new keys in the shards, finds each key in whichever of
the two holds it, and moves ``MOVE_EACH`` entries over at each insert of a new key
(``dict.popitem``: O(1) from the end, and the old table is never rebuilt); after
``SPLIT_AT / MOVE_EACH`` inserts the old dict is empty and the map becomes a plain
``ShardedMap`` (the same slots, so its ``__class__`` is swapped), whose lookups look at the
shards alone. No bind of those then costs more than 0.2 ms of CPU. A map that stops growing
mid-way keeps both parts, at the cost of a second probe for keys still in the old one.

It offers the part of the dict interface the binding structures use. Iteration goes shard by
shard (then the old dict's remainder): insertion order holds within a shard only, so a split
map lists its entries in an order of its own, which changes with the hash seed from one run to
the next. Nothing a client sees depends on it: RabbitMQ lists
bindings in an order of its own too (the management API sorts them by source, destination,
routing key; a definitions export by source, routing key, destination), and the console and
the export sort them so (``webconsole/resources/bindings.py``, ``broker/definitions.py``).
Keeping insertion order across shards would cost a sequence number per entry (another
object or dict entry for each of a million bindings) for an order no client is shown.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, MutableMapping, ValuesView
from itertools import chain
from typing import Any

__all__ = ["MOVE_EACH", "SHARDS", "SPLIT_AT", "ShardedMap", "SplittingMap", "grown"]

SHARDS = 256
_MASK = SHARDS - 1
#: entries past which a plain dict is split (its next resize would cost a few milliseconds)
SPLIT_AT = 8_192
#: entries moved from the dict being split into the shards at each insert of a new key
MOVE_EACH = 64

_MISSING = object()


class ShardedMap(MutableMapping[Any, Any]):
    """key -> value in ``SHARDS`` dicts chosen by ``hash(key)``; the dict methods the
    binding structures call are written out (the ABC's mixins would be slower)."""

    __slots__ = ("_shards", "_old")

    def __init__(self) -> None:
        self._shards: list[dict[Any, Any]] = [{} for _ in range(SHARDS)]
        #: the dict being split (``SplittingMap``); None here
        self._old: dict[Any, Any] | None = None

    def get(self, key: Any, default: Any = None) -> Any:
        return self._shards[hash(key) & _MASK].get(key, default)

    def __getitem__(self, key: Any) -> Any:
        return self._shards[hash(key) & _MASK][key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._shards[hash(key) & _MASK][key] = value

    def __delitem__(self, key: Any) -> None:
        del self._shards[hash(key) & _MASK][key]

    def pop(self, key: Any, *default: Any) -> Any:
        return self._shards[hash(key) & _MASK].pop(key, *default)

    def __contains__(self, key: Any) -> bool:
        return key in self._shards[hash(key) & _MASK]

    def __len__(self) -> int:
        return sum(map(len, self._shards))

    def __bool__(self) -> bool:
        return any(self._shards)

    def __iter__(self) -> Iterator[Any]:
        return chain.from_iterable(self._shards)

    def keys(self) -> KeysView[Any]:
        return KeysView(self)

    def values(self) -> ValuesView[Any]:
        return ValuesView(self)

    def items(self) -> ItemsView[Any, Any]:
        return ItemsView(self)

    def clear(self) -> None:
        for shard in self._shards:
            shard.clear()


class SplittingMap(ShardedMap):
    """A ``ShardedMap`` whose entries are still partly in the dict it was split from: each
    key is in exactly one of the two (a key found in the old dict is changed there), every
    lookup consults both, and each insert of a new key moves ``MOVE_EACH`` entries over.
    When the old dict is empty the map becomes a plain ``ShardedMap`` (its ``__class__``: the
    same slots), whose methods consult the shards only."""

    __slots__ = ()

    def __init__(self, items: dict[Any, Any]) -> None:
        super().__init__()
        self._old = items

    def _move(self) -> None:
        old = self._old
        assert old is not None
        shards = self._shards
        popitem = old.popitem
        for _ in range(min(MOVE_EACH, len(old))):
            key, value = popitem()      # from the end: O(1), and no resize of the old dict
            shards[hash(key) & _MASK][key] = value
        if not old:
            self._old = None
            self.__class__ = ShardedMap  # type: ignore[assignment]  # same slots

    def get(self, key: Any, default: Any = None) -> Any:
        found = self._shards[hash(key) & _MASK].get(key, _MISSING)
        if found is _MISSING:
            return self._old.get(key, default)      # type: ignore[union-attr]
        return found

    def __getitem__(self, key: Any) -> Any:
        found = self._shards[hash(key) & _MASK].get(key, _MISSING)
        if found is _MISSING:
            return self._old[key]                   # type: ignore[index]
        return found

    def __setitem__(self, key: Any, value: Any) -> None:
        old = self._old
        assert old is not None
        if key in old:
            old[key] = value        # changed where it is: no size change, nothing moved
            return
        shard = self._shards[hash(key) & _MASK]
        new = key not in shard
        shard[key] = value
        if new:
            self._move()

    def __delitem__(self, key: Any) -> None:
        shard = self._shards[hash(key) & _MASK]
        if key in shard:
            del shard[key]
        else:
            del self._old[key]                      # type: ignore[union-attr]

    def pop(self, key: Any, *default: Any) -> Any:
        found = self._shards[hash(key) & _MASK].pop(key, _MISSING)
        if found is _MISSING:
            return self._old.pop(key, *default)     # type: ignore[union-attr]
        return found

    def __contains__(self, key: Any) -> bool:
        return key in self._shards[hash(key) & _MASK] or key in self._old  # type: ignore

    def __len__(self) -> int:
        return super().__len__() + len(self._old)   # type: ignore[arg-type]

    def __bool__(self) -> bool:
        return bool(self._old) or super().__bool__()

    def __iter__(self) -> Iterator[Any]:
        return chain(super().__iter__(), self._old)  # type: ignore[arg-type]

    def clear(self) -> None:
        super().clear()
        self._old = None
        self.__class__ = ShardedMap  # type: ignore[assignment]  # same slots


def grown(mapping: MutableMapping[Any, Any]) -> MutableMapping[Any, Any]:
    """``mapping`` split into shards if it is a dict past ``SPLIT_AT`` entries, else itself:
    called after an insert. The split moves no entry at once (``SplittingMap``: they follow
    ``MOVE_EACH`` per insert after it); the dict is the map's from then on."""
    if type(mapping) is dict and len(mapping) > SPLIT_AT:
        return SplittingMap(mapping)
    return mapping
