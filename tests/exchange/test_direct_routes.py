"""The direct exchange answers each routing key from a list made when bindings change
(``exchange/direct.py``): through any bind/unbind sequence it routes as the rule says
(every binding whose key equals the routing key, each destination once per binding)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from warren.amqp.properties import CODEC
from warren.exchange.direct import DirectExchange
from warren.exchange.interface import Binding
from warren.model.message import Message

from .test_topic_trie import QUEUES

KEYS = ["a", "b", ""]
operations = st.lists(st.one_of(
    st.tuples(st.just("bind"), st.sampled_from(KEYS), st.integers(0, len(QUEUES) - 1)),
    st.tuples(st.just("unbind"), st.integers(0, 20)),
    st.tuples(st.just("route"), st.sampled_from(KEYS + ["c"])),
), max_size=40)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_direct_routes_as_the_rule_says(ops):
    exchange = DirectExchange()
    bound: list[Binding] = []
    for op in ops:
        if op[0] == "bind":
            binding = Binding("x", QUEUES[op[2]], op[1])
            bound.append(binding)
            exchange.bind(binding)
        elif op[0] == "unbind":
            if bound:
                exchange.unbind(bound.pop(op[1] % len(bound)))
        else:
            got = exchange.route(Message("x", op[1], b"", codec=CODEC))
            want = Counter(b.destination.name for b in bound if b.routing_key == op[1])
            assert Counter(q.name for q in got) == want
