"""Binding structures past ``SPLIT_AT`` entries are split into shards and behave as before.

An exchange with more bindings than ``SPLIT_AT`` (a direct key each, or a topic level with
that many words) and its ``BindingSet`` move into ``ShardedMap`` shards at the bind that
passes it (``exchange/sharded_map.py``), so that no bind resizes a dict of a million. Across
that split every binding is still found, routed to, listed once and removed, as the in-process
core sees it (the structures are the exchange's own, not a broker component).
"""

from __future__ import annotations

from warren.amqp.properties import CODEC
from warren.exchange.direct import DirectExchange
from warren.exchange.interface import Binding, BindingSet
from warren.exchange.sharded_map import SPLIT_AT, ShardedMap
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
