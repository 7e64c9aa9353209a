"""Values by MQTT topic name, indexed level by level so that a topic filter finds what it
matches without testing every topic.

Retained messages are looked up on every SUBSCRIBE; testing each filter against every
retained topic of the vhost made a wildcard SUBSCRIBE cost the whole store, and a client
subscribing thousands of filters cost thousands of times that. Here a topic is a path of
levels (``a/b/c`` -> ``a``, ``b``, ``c``, empty levels included), so a literal level follows one
child, ``+`` each child of one node, and ``#`` one subtree: the cost is the nodes on the way
to what matches, not the number of topics stored (mosquitto's retain tree works the same way).

[MQTT-4.7.2-1]: a filter whose first level is a wildcard does not match topics starting with
``$``; at the root those children are skipped. The walks use an explicit stack: a topic may
have thousands of levels, deeper than Python's recursion limit.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

__all__ = ["TopicTree"]

V = TypeVar("V")


class _Node(Generic[V]):
    """One level: the value of the topic ending here (None: none) and the next levels (None
    while there are none: most nodes are leaves)."""

    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.children: dict[str, _Node[V]] | None = None
        self.value: V | None = None


class TopicTree(Generic[V]):
    """A map of topic name -> value (never None) with filter lookups (:meth:`matching`)."""

    def __init__(self) -> None:
        self._root: _Node[V] = _Node()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def get(self, topic: str) -> V | None:
        node = self._root
        for level in topic.split("/"):
            if node.children is None:
                return None
            child = node.children.get(level)
            if child is None:
                return None
            node = child
        return node.value

    def put(self, topic: str, value: V) -> None:
        node = self._root
        for level in topic.split("/"):
            if node.children is None:
                node.children = {}
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        if node.value is None:
            self._count += 1
        node.value = value

    def pop(self, topic: str) -> V | None:
        """Remove and return the value of *topic*; levels left empty are removed too."""
        path: list[tuple[_Node[V], str]] = []
        node = self._root
        for level in topic.split("/"):
            child = node.children.get(level) if node.children is not None else None
            if child is None:
                return None
            path.append((node, level))
            node = child
        value = node.value
        if value is None:
            return None
        node.value = None
        self._count -= 1
        for parent, level in reversed(path):
            if node.value is not None or node.children:
                break
            assert parent.children is not None
            del parent.children[level]
            if not parent.children:
                parent.children = None
            node = parent
        return value

    def matching(self, topic_filter: str) -> list[V]:
        """The values of the topics *topic_filter* (``+`` and ``#`` wildcards, not shared)
        matches [MQTT 4.7], depth first."""
        return [v for v in self.matching_steps(topic_filter) if v is not None]

    def matching_steps(self, topic_filter: str) -> Iterator[V | None]:
        """What :meth:`matching` returns, lazily and in the same order, with a None for each
        node visited that holds no value: one item per node, so a caller can stop between
        any two (a ``#`` over a million topics is sent a slice per reactor turn, and a ``+``
        that visits many nodes without a value is a million nodes too).

        The tree may change between items: a node already passed is not visited again, and a
        node's value is read when it is reached (popped: None; replaced: the new one)."""
        levels = topic_filter.split("/")
        n = len(levels)
        stack: list[tuple[_Node[V], int]] = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            if i == n:
                yield node.value
                continue
            level = levels[i]
            if level == "#":
                if i:
                    yield node.value      # "a/#" matches "a" too [MQTT-4.7.1-2]
                yield from self._below(node, i == 0)
                continue
            yield None
            children = node.children
            if not children:
                continue
            if level == "+":
                stack.extend([(child, i + 1) for name, child in reversed(children.items())
                              if not (i == 0 and name.startswith("$"))])
            else:
                found = children.get(level)
                if found is not None:
                    stack.append((found, i + 1))

    @staticmethod
    def _below(node: _Node[V], skip_dollar: bool) -> Iterator[V | None]:
        """The value (or None) of every node under *node* (not its own), depth first; at the
        root, none under a ``$`` level."""
        if not node.children:
            return
        stack = [child for name, child in reversed(node.children.items())
                 if not (skip_dollar and name.startswith("$"))]
        extend, pop = stack.extend, stack.pop
        while stack:
            n = pop()
            yield n.value
            if n.children:
                extend(reversed(n.children.values()))
