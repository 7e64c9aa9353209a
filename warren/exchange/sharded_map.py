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
for well under a millisecond each: no bind of the 1M took more than 5.5 ms of CPU but the one
that splits (10 ms at 16,384, for four maps; half that at ``SPLIT_AT``'s 8,192). A lookup
costs a method call more (some 0.2 µs, on a direct exchange's route only past 8,192 keys).

A map starts as a plain dict (an exchange or a queue with a few bindings pays nothing) and is
split once, when it passes ``SPLIT_AT`` entries (``grown``: one pass over those, about as long
as the resize it replaces), and never merged back. It offers the part of the dict interface
the binding structures use. Iteration goes shard by shard: insertion order holds within a
shard only, so a split map lists its entries in an order of its own, which changes with the
hash seed from one run to the next. Nothing a client sees depends on it: RabbitMQ lists
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

__all__ = ["SHARDS", "SPLIT_AT", "ShardedMap", "grown"]

SHARDS = 256
_MASK = SHARDS - 1
#: entries past which a plain dict is split (its next resize would cost a few milliseconds)
SPLIT_AT = 8_192


class ShardedMap(MutableMapping[Any, Any]):
    """key -> value in ``SHARDS`` dicts chosen by ``hash(key)``; the dict methods the
    binding structures call are written out (the ABC's mixins would be slower)."""

    __slots__ = ("_shards",)

    def __init__(self, items: dict[Any, Any]) -> None:
        shards: list[dict[Any, Any]] = [{} for _ in range(SHARDS)]
        for key, value in items.items():
            shards[hash(key) & _MASK][key] = value
        self._shards = shards

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


def grown(mapping: MutableMapping[Any, Any]) -> MutableMapping[Any, Any]:
    """``mapping`` split into a :class:`ShardedMap` if it is a dict past ``SPLIT_AT``
    entries, else itself: called after an insert."""
    if type(mapping) is dict and len(mapping) > SPLIT_AT:
        return ShardedMap(mapping)
    return mapping
