"""Topic <-> routing key mapping and MQTT filter matching, as properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from warren.exchange.interface import Binding
from warren.exchange.topic import TopicTrie
from warren.mqtt.topic_tree import TopicTree
from warren.mqtt.topics import (filter_matches, filter_to_pattern, key_to_topic,
                                split_shared, topic_to_key)

level = st.text(alphabet="ab.$x", max_size=3)
topics = st.lists(level, min_size=1, max_size=4).map("/".join).filter(bool)
filter_level = st.one_of(level, st.just("+"))
filters = st.builds(lambda ls, tail: "/".join(ls + (["#"] if tail else [])),
                    st.lists(filter_level, min_size=1, max_size=4), st.booleans())


@settings(max_examples=200, deadline=None)
@given(topics)
def test_mapping_is_its_own_inverse(topic):
    assert key_to_topic(topic_to_key(topic)) == topic


@settings(max_examples=200, deadline=None)
@given(filters, topics)
def test_topic_exchange_agrees_with_mqtt_matching(topic_filter, topic):
    """Routing by pattern never loses a match; it over-matches only for $ topics."""
    trie = TopicTrie()
    binding = Binding("amq.topic", object(), filter_to_pattern(topic_filter))
    trie.insert(filter_to_pattern(topic_filter), binding)
    routed = bool(trie.match(topic_to_key(topic)))
    mqtt = filter_matches(topic_filter, topic)
    if mqtt:
        assert routed
    elif routed:
        assert topic.startswith("$")


@settings(max_examples=100, deadline=None)
@given(st.lists(topics, max_size=12), st.lists(topics, max_size=6),
       st.one_of(filters, st.just("#"), st.just("+")))
def test_topic_tree_finds_what_mqtt_matching_finds(stored, removed, topic_filter):
    """The retained messages' index: a filter's lookup gives exactly the stored topics that
    filter_matches accepts (wildcards, ``$`` topics at the first level, "a/#" matching "a"),
    after removals too, and removals leave no empty levels behind."""
    tree: TopicTree[str] = TopicTree()
    for t in stored:
        tree.put(t, t)
    kept = set(stored)
    for t in removed:
        assert tree.pop(t) == (t if t in kept else None)
        kept.discard(t)
    assert len(tree) == len(kept)
    assert sorted(tree.matching(topic_filter)) == sorted(
        t for t in kept if filter_matches(topic_filter, t))
    assert all(tree.get(t) == t for t in kept)
    for t in kept:
        tree.pop(t)
    assert tree._root.children is None


def test_examples():
    assert topic_to_key("a/b/c") == "a.b.c"
    assert topic_to_key("v1.0/x") == "v1/0.x"
    assert filter_to_pattern("a/+/#") == "a.*.#"
    assert split_shared("$share/g/a/b") == ("g", "a/b")
    assert filter_matches("a/#", "a")
    assert not filter_matches("#", "$SYS/x")
    assert filter_matches("$SYS/#", "$SYS/x")
    assert not filter_matches("a/+", "a/b/c")
