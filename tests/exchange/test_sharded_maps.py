"""Binding structures past ``SPLIT_AT`` entries are split into shards and behave as before.

An exchange with more bindings than ``SPLIT_AT`` (a direct key each, or a topic level with
that many words) and its ``BindingSet`` move into ``ShardedMap`` shards at the bind that
passes it (``exchange/sharded_map.py``), so that no bind resizes a dict of a million. Across
that split every binding is still found, routed to, listed once and removed, as the in-process
core sees it (the structures are the exchange's own, not a broker component). The split itself
moves the entries over ``MOVE_EACH`` per insert after it, so while it is under way every lookup,
change and removal must find a key wherever it is at that moment.
"""

from __future__ import annotations

from warren.amqp.properties import CODEC
from warren.exchange.direct import DirectExchange
from warren.exchange.interface import Binding, BindingSet
from warren.exchange.sharded_map import MOVE_EACH, SPLIT_AT, ShardedMap, SplittingMap, grown
from warren.exchange.topic import TopicExchange
from warren.model.message import Message

N = SPLIT_AT + 500


class Queue:
    """A destination: compared by identity, as the exchange compares queues."""

    kind = "queue"

    def __init__(self, name: str) -> None:
        self.name = name


def routed(exchange, key: str) -> list:
    return exchange.route(Message("x", key, b"", codec=CODEC))


def test_binding_set_split_finds_lists_and_discards_every_binding():
    queues = [Queue(f"q{i}") for i in range(3)]
    bindings = [Binding("x", queues[i % 3], f"k{i}") for i in range(N)]
    s = BindingSet()
    for b in bindings:
        s.add(b)
    assert isinstance(s._by_key, ShardedMap) and isinstance(s._keys, ShardedMap)
    assert len(s) == N and sorted(map(id, s)) == sorted(map(id, bindings))
    assert all(s.find(b.key) is b and b in s for b in bindings)
    for b in bindings[::2]:
        assert s.discard(b)
    assert not s.discard(bindings[0])
    assert len(s) == N - (N + 1) // 2 and bindings[0] not in s and bindings[1] in s
    assert s.find(bindings[0].key) is None and s.find(bindings[1].key) is bindings[1]


def test_direct_exchange_past_the_split_routes_each_key_and_forgets_unbound_ones():
    ex = DirectExchange()
    q, other = Queue("q"), Queue("other")
    bindings = [Binding("x", q, f"k{i}") for i in range(N)]
    for b in bindings:
        ex.bind(b)
    shared = Binding("x", other, "k7")        # a second binding on one key
    ex.bind(shared)
    assert routed(ex, "k0") == [q] and routed(ex, f"k{N - 1}") == [q]
    assert sorted(map(id, routed(ex, "k7"))) == sorted([id(q), id(other)])
    assert routed(ex, f"k{N}") == []
    ex.unbind(bindings[0])
    ex.unbind(shared)
    assert routed(ex, "k0") == [] and routed(ex, "k7") == [q]


def test_topic_level_past_the_split_routes_and_prunes():
    ex = TopicExchange()
    q = Queue("q")
    bindings = [Binding("x", q, f"a.{i}.#") for i in range(N)]
    for b in bindings:
        ex.bind(b)
    assert routed(ex, "a.0") == [q] and routed(ex, f"a.{N - 1}.b.c") == [q]
    assert routed(ex, f"a.{N}") == [] and routed(ex, "b.0") == []
    for b in bindings[:-1]:
        ex.unbind(b)
    assert routed(ex, "a.0") == [] and routed(ex, f"a.{N - 1}") == [q]
    ex.unbind(bindings[-1])
    assert routed(ex, f"a.{N - 1}") == [] and ex._trie._root.empty()


def test_a_split_moves_a_slice_per_insert_and_every_lookup_stays_exact_meanwhile():
    ref = {f"k{i}": i for i in range(SPLIT_AT + 1)}
    m = grown(dict(ref))
    assert type(m) is SplittingMap
    assert len(m._old) == SPLIT_AT + 1       # the split itself moved nothing

    def exact() -> None:
        assert len(m) == len(ref) and bool(m)
        assert sorted(m) == sorted(ref) and dict(m.items()) == ref
        assert all(m.get(k) == v and m[k] == v and k in m for k, v in ref.items())
        assert m.get("absent", "none") == "none" and "absent" not in m

    exact()
    inserts = 0
    still_old = list(m._old)      # keys not moved yet: each step below reaches one of those
    while type(m) is SplittingMap:
        before = len(m._old)
        k = still_old.pop()
        if k in m._old:
            m[k] = ref[k] = -1                # changed where it is: nothing moves
            assert len(m._old) == before
            del m[k], ref[k]                  # removed from the old dict
            assert m.pop(k, "gone") == "gone"
        new = f"n{inserts}"
        m[new] = ref[new] = inserts
        inserts += 1
        if type(m) is SplittingMap:
            assert len(m._old) >= before - 1 - MOVE_EACH
        moved = next(iter(ref.keys() - set(m._old or ())))
        ref[moved] = m[moved] = "changed in its shard"
        assert m.pop(moved) == "changed in its shard"
        del ref[moved]
        if inserts % 16 == 1:
            exact()
    exact()
    assert type(m) is ShardedMap and m._old is None
    assert inserts <= (SPLIT_AT + 1) // MOVE_EACH + 1


def test_direct_routes_and_a_binding_set_finds_every_binding_while_they_are_split():
    q, other = Queue("q"), Queue("other")
    ex, s = DirectExchange(), BindingSet()
    bindings = []
    for i in range(SPLIT_AT + 1):
        b = Binding("x", q, f"k{i}")
        ex.bind(b)
        s.add(b)
        bindings.append(b)
    assert type(ex._routes) is SplittingMap and type(s._keys) is SplittingMap
    i = 0
    while type(ex._routes) is SplittingMap or type(s._keys) is SplittingMap:
        shared = Binding("x", other, f"k{i * 7}")    # a second binding on an old key
        ex.bind(shared)
        s.add(shared)
        assert sorted(map(id, routed(ex, f"k{i * 7}"))) == sorted([id(q), id(other)])
        ex.unbind(shared)
        assert s.discard(shared) and s.find(shared.key) is None
        b = Binding("x", q, f"new{i}")
        ex.bind(b)
        s.add(b)
        bindings.append(b)
        i += 1
        if i % 32 == 1:
            assert all(routed(ex, b.routing_key) == [q] for b in bindings)
            assert all(s.find(b.key) is b and b in s for b in bindings)
            assert len(s) == len(bindings) and set(map(id, s)) == set(map(id, bindings))
    assert all(routed(ex, b.routing_key) == [q] for b in bindings)
    assert len(s) == len(bindings) and all(s.find(b.key) is b for b in bindings)
