"""``topic``: dot-separated words; ``*`` matches one word, ``#`` zero or more.

Matching walks a word trie (each level: literal children, one ``*`` child, one ``#`` child), as
NATS' sublist and RabbitMQ's topic trie do, instead of testing every pattern per message.
Results are memoised per routing key in a bounded cache that bind/unbind clears, so a hot key
costs one dict lookup.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .interface import Binding

CACHE_LIMIT = 4096


class _Node:
    __slots__ = ("children", "star", "hash", "bindings")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.hash: _Node | None = None
        self.bindings: dict[Binding, Any] = {}   # binding -> destination

    def empty(self) -> bool:
        return not (self.children or self.star or self.hash or self.bindings)


class TopicTrie:
    """Patterns -> bindings; ``match(key)`` returns the bindings whose pattern matches."""

    def __init__(self) -> None:
        self._root = _Node()
        self._cache: dict[str, list[Any]] = {}

    def insert(self, pattern: str, binding: Binding) -> None:
        node = self._root
        for word in pattern.split("."):
            node = self._child(node, word, create=True)
        node.bindings[binding] = binding.destination
        self._cache.clear()

    def remove(self, pattern: str, binding: Binding) -> None:
        path = [self._root]
        node = self._root
        words = pattern.split(".")
        for word in words:
            node = self._child(node, word, create=False)
            if node is None:
                return
            path.append(node)
        node.bindings.pop(binding, None)
        # prune empty nodes bottom-up so the trie does not keep dead branches
        for i in range(len(words), 0, -1):
            child, parent, word = path[i], path[i - 1], words[i - 1]
            if not child.empty():
                break
            if word == "*":
                parent.star = None
            elif word == "#":
                parent.hash = None
            else:
                del parent.children[word]
        self._cache.clear()

    @staticmethod
    def _child(node: _Node, word: str, create: bool) -> _Node | None:
        if word == "*":
            if node.star is None and create:
                node.star = _Node()
            return node.star
        if word == "#":
            if node.hash is None and create:
                node.hash = _Node()
            return node.hash
        child = node.children.get(word)
        if child is None and create:
            child = node.children[word] = _Node()
        return child

    def match(self, key: str) -> list[Any]:
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        words = key.split(".")
        found: dict[int, Any] = {}
        self._walk(self._root, words, 0, found)
        result = list(found.values())
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = result
        return result

    def _walk(self, node: _Node, words: list[str], i: int, found: dict[int, Any]) -> None:
        n = len(words)
        if node.hash is not None:
            # '#' may swallow zero or more words: try every remaining suffix
            h = node.hash
            for j in range(i, n + 1):
                self._walk(h, words, j, found)
        if i == n:
            for b, dest in node.bindings.items():
                found[id(b)] = dest
            return
        child = node.children.get(words[i])
        if child is not None:
            self._walk(child, words, i + 1, found)
        if node.star is not None:
            self._walk(node.star, words, i + 1, found)


class TopicExchange:
    name: ClassVar[str] = "topic"

    def __init__(self, arguments: dict[str, Any] | None = None) -> None:
        self._trie = TopicTrie()

    def validate_binding(self, binding: Binding) -> None:
        pass

    def bind(self, binding: Binding) -> None:
        self._trie.insert(binding.routing_key, binding)

    def unbind(self, binding: Binding) -> None:
        self._trie.remove(binding.routing_key, binding)

    def route(self, message) -> list[Any]:
        return self._trie.match(message.routing_key)
