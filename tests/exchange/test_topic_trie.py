"""The topic exchange's trie routes as a naive matcher says, through any bind/unbind sequence.

The trie answers hot routing keys from a cache that binding and unbinding update in place
(``exchange/topic.py``), so the property runs matches between the changes: a stale cached
answer would route differently from the naive matcher, which knows nothing but the rules
(RabbitMQ's: words split on ``.``, the empty key has none, ``*`` is exactly one word, ``#``
zero or more).
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from warren.exchange.interface import Binding
from warren.exchange.topic import CACHE_LIMIT, UPDATE_LIMIT, TopicTrie


def naive_matches(pattern: str, key: str) -> bool:
    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])
    return match(words(pattern), words(key))


def words(key: str) -> list[str]:
    """RabbitMQ's split: the empty key is no words at all, ``"."`` is two empty words."""
    return key.split(".") if key else []


class Queue:
    """A destination: compared by identity, as the exchange compares queues."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.kind = "queue"

    def __repr__(self) -> str:
        return self.name


QUEUES = [Queue(f"q{i}") for i in range(4)]
word = st.sampled_from(["a", "b", "c", ""])
keys = st.lists(word, min_size=1, max_size=4).map(".".join)
patterns = st.lists(st.one_of(word, st.sampled_from(["*", "#"])), min_size=1,
                    max_size=5).map(".".join)
operations = st.lists(st.one_of(
    st.tuples(st.just("bind"), patterns, st.integers(0, len(QUEUES) - 1)),
    st.tuples(st.just("unbind"), st.integers(0, 50)),
    st.tuples(st.just("match"), keys),
), max_size=60)


def expected(bound: list[Binding], key: str) -> Counter:
    return Counter(b.destination.name for b in bound if naive_matches(b.routing_key, key))


@settings(max_examples=400, deadline=None)
@given(operations, st.lists(keys, min_size=1, max_size=6))
def test_trie_routes_as_the_naive_matcher_through_binds_and_unbinds(ops, probes):
    trie = TopicTrie()
    bound: list[Binding] = []
    for op in ops:
        if op[0] == "bind":
            binding = Binding("x", QUEUES[op[2]], op[1])
            trie.insert(binding.routing_key, binding)
            bound.append(binding)
        elif op[0] == "unbind" and bound:
            binding = bound.pop(op[1] % len(bound))
            trie.remove(binding.routing_key, binding)
        elif op[0] == "match":
            got = Counter(q.name for q in trie.match(op[1]))
            assert got == expected(bound, op[1]), (op[1], bound)
    for key in probes:
        assert Counter(q.name for q in trie.match(key)) == expected(bound, key), (key, bound)


@settings(max_examples=200, deadline=None)
@given(patterns, keys)
def test_one_binding_matches_as_the_rules_say(pattern, key):
    trie = TopicTrie()
    trie.insert(pattern, Binding("x", QUEUES[0], pattern))
    assert bool(trie.match(key)) == naive_matches(pattern, key)


def test_a_bind_elsewhere_keeps_a_hot_keys_cached_answer():
    trie = TopicTrie()
    trie.insert("a.*", Binding("x", QUEUES[0], "a.*"))
    hot = trie.match("a.b")
    trie.insert("c.d", Binding("x", QUEUES[1], "c.d"))       # literal, another key
    trie.insert("c.#", Binding("x", QUEUES[1], "c.#"))       # wildcard that misses a.b
    assert trie.match("a.b") is hot
    trie.insert("#.b", Binding("x", QUEUES[2], "#.b"))       # one that matches: a new answer
    assert trie.match("a.b") is not hot
    assert sorted(q.name for q in trie.match("a.b")) == ["q0", "q2"]


def test_the_cache_stays_bounded():
    trie = TopicTrie()
    trie.insert("#", Binding("x", QUEUES[0], "#"))
    for i in range(CACHE_LIMIT * 2 + 1):
        assert trie.match(f"k{i}") == [QUEUES[0]]
    assert len(trie._cache.answers) <= CACHE_LIMIT


def test_a_pattern_over_more_hot_keys_than_it_updates_still_routes_right():
    """``#`` under more cached keys than ``UPDATE_LIMIT``: the answers are made again."""
    trie = TopicTrie()
    star = Binding("x", QUEUES[0], "a.*")
    trie.insert("a.*", star)
    keys = [f"a.{i}" for i in range(UPDATE_LIMIT * 2)]
    for key in keys:
        assert trie.match(key) == [QUEUES[0]]
    every = Binding("x", QUEUES[1], "#")
    trie.insert("#", every)
    assert all(sorted(q.name for q in trie.match(key)) == ["q0", "q1"] for key in keys)
    trie.remove("a.*", star)
    assert all(trie.match(key) == [QUEUES[1]] for key in keys)
    trie.remove("#", every)
    assert all(trie.match(key) == [] for key in keys)
