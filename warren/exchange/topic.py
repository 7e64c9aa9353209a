"""``topic``: dot-separated words; ``*`` matches one word, ``#`` zero or more.

Matching walks a word trie (each level: literal children, one ``*`` child, one ``#`` child), as
NATS' sublist and RabbitMQ's topic trie do, instead of testing every pattern per message.
Results are memoised per routing key in a bounded cache, so a hot key costs one dict lookup.
Binding and unbinding update the cached answers in place rather than clearing them, as NATS'
sublist does: a literal pattern can only match the routing key spelled the same, so it touches
that one answer; a pattern with ``*`` or ``#`` finds the answers it changes by walking a trie
of the cached keys (:class:`MatchCache`), not by testing every key, and marks every answer
stale when that walk grows past ``UPDATE_LIMIT`` nodes (``#`` under thousands of hot keys).
Publishers to hot keys therefore keep their cached answer while other clients subscribe and
unsubscribe (MQTT sessions come and go all the time).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, ClassVar

from ..model.message import Message
from .interface import Binding
from .sharded_map import grown

CACHE_LIMIT = 4096
#: a binding whose pattern matches more cached keys than this, or whose ``#`` reaches more of
#: their trie's nodes (``#`` under a full cache), makes every cached answer stale instead:
#: updating thousands of answers, or freeing them, would hold the reactor for milliseconds;
#: each hot key's answer is made again at its next publish
UPDATE_LIMIT = 512


def split_words(key: str) -> list[str]:
    """The words of a routing key or binding key. As RabbitMQ splits them, the empty key has
    no words, so only ``#`` (and ``#.#``, and the empty pattern) matches it, never ``*``."""
    return key.split(".") if key else []


class _Node:
    __slots__ = ("children", "star", "hash", "bindings")

    def __init__(self) -> None:
        # split past SPLIT_AT words (a level holding a million: sharded_map.py)
        self.children: MutableMapping[str, _Node] = {}
        self.star: _Node | None = None
        self.hash: _Node | None = None
        # the binding of the pattern ending here, or {binding: destination} when several
        # share it: most patterns have one, and a dict each would be 1M more objects for the
        # cyclic collector to scan (and some 200 MB) at 1M bindings
        self.bindings: Binding | dict[Binding, Any] | None = None

    def empty(self) -> bool:
        return not (self.children or self.star or self.hash or self.bindings)


class _Cached:
    """One routing key's answer: the matching bindings (-> destination) and the list
    ``match`` returns, replaced (never changed) when a binding comes or goes."""

    __slots__ = ("bindings", "result", "generation")

    def __init__(self, bindings: dict[Binding, Any], generation: int) -> None:
        self.bindings = bindings
        self.result = list(bindings.values())
        self.generation = generation   # current while it equals the cache's

    def add(self, binding: Binding) -> None:
        if binding not in self.bindings:
            self.bindings[binding] = binding.destination
            self.result = list(self.bindings.values())

    def discard(self, binding: Binding) -> None:
        if binding in self.bindings:
            del self.bindings[binding]
            self.result = list(self.bindings.values())


class _KeyNode:
    __slots__ = ("children", "cached")

    def __init__(self) -> None:
        self.children: dict[str, _KeyNode] = {}
        self.cached: _Cached | None = None


class MatchCache:
    """Answers by routing key, at most ``CACHE_LIMIT`` (then it starts afresh), and the cached
    keys as a word trie, so a pattern finds the answers it changes by walking that trie: a
    literal word follows one child, ``*`` every child, ``#`` every descendant.

    ``answers[key]`` is current while its ``generation`` is the cache's: the match path reads
    the two directly, as it runs for every message published to a topic exchange."""

    def __init__(self) -> None:
        self.answers: dict[str, _Cached] = {}
        self.generation = 0
        self._keys = _KeyNode()

    def make_stale(self) -> None:
        """Every answer is made again on its next use (they stay until then: no mass free)."""
        self.generation += 1

    def put(self, key: str, words: list[str], bindings: dict[Binding, Any]) -> list[Any]:
        if len(self.answers) >= CACHE_LIMIT and key not in self.answers:
            self.answers.clear()
            self._keys = _KeyNode()
        node = self._keys
        for word in words:
            child = node.children.get(word)
            if child is None:
                child = node.children[word] = _KeyNode()
            node = child
        cached = node.cached = self.answers[key] = _Cached(bindings, self.generation)
        return cached.result

    def matching(self, pattern: str, words: list[str]) -> list[_Cached] | None:
        """The cached answers of the routing keys that ``pattern`` matches; None when there are
        more than ``UPDATE_LIMIT``, or ``#`` would walk more nodes than that to find them."""
        if "*" not in words and "#" not in words:
            cached = self.answers.get(pattern)     # a literal pattern matches itself only
            return [] if cached is None else [cached]
        # level by level: the key-trie nodes the pattern's words so far can stand at
        nodes = [self._keys]
        for word in words:
            if word == "*":
                nodes = [child for node in nodes for child in node.children.values()]
            elif word == "#":
                nodes = _and_descendants(nodes, UPDATE_LIMIT)
            else:
                nodes = [child for node in nodes
                         if (child := node.children.get(word)) is not None]
            if not nodes:
                return []
            if len(nodes) > UPDATE_LIMIT and word == "#":
                return None
        found = [node.cached for node in nodes if node.cached is not None]
        return None if len(found) > UPDATE_LIMIT else found


def _and_descendants(nodes: list[_KeyNode], limit: int) -> list[_KeyNode]:
    """Every node under ``nodes`` and themselves, each once (``#``: zero or more words); it
    stops once it has more than ``limit``."""
    seen: set[int] = set()
    out: list[_KeyNode] = []
    stack = list(nodes)
    while stack and len(out) <= limit:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        out.append(node)
        stack.extend(node.children.values())
    return out


class TopicTrie:
    """Patterns -> bindings; ``match(key)`` returns the bindings whose pattern matches."""

    def __init__(self) -> None:
        self._root = _Node()
        self._cache = MatchCache()

    def insert(self, pattern: str, binding: Binding) -> None:
        words = split_words(pattern)
        node = self._root
        for word in words:
            node = self._grow(node, word)
        here = node.bindings
        if here is None:
            node.bindings = binding
        elif isinstance(here, dict):
            here[binding] = binding.destination
        elif here is not binding:
            node.bindings = {here: here.destination, binding: binding.destination}
        affected = self._cache.matching(pattern, words)
        if affected is None:
            self._cache.make_stale()
        else:
            for cached in affected:
                cached.add(binding)

    def remove(self, pattern: str, binding: Binding) -> None:
        path = [self._root]
        node = self._root
        words = split_words(pattern)
        for word in words:
            found = self._child(node, word)
            if found is None:
                return
            node = found
            path.append(node)
        here = node.bindings
        if isinstance(here, dict):
            if binding not in here:
                return
            del here[binding]
            if len(here) == 1:
                node.bindings = next(iter(here))
        elif here is binding:
            node.bindings = None
        else:
            return
        affected = self._cache.matching(pattern, words)
        if affected is None:
            self._cache.make_stale()
        else:
            for cached in affected:
                cached.discard(binding)
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

    @staticmethod
    def _child(node: _Node, word: str) -> _Node | None:
        if word == "*":
            return node.star
        if word == "#":
            return node.hash
        return node.children.get(word)

    @staticmethod
    def _grow(node: _Node, word: str) -> _Node:
        """The child for ``word``, made if missing."""
        if word == "*":
            if node.star is None:
                node.star = _Node()
            return node.star
        if word == "#":
            if node.hash is None:
                node.hash = _Node()
            return node.hash
        child = node.children.get(word)
        if child is None:
            child = node.children[word] = _Node()
            node.children = grown(node.children)
        return child

    def match(self, key: str) -> list[Any]:
        cache = self._cache
        hit = cache.answers.get(key)
        if hit is not None and hit.generation == cache.generation:
            return hit.result
        words = split_words(key)
        found: dict[Binding, Any] = {}
        self._walk(self._root, words, 0, found)
        return self._cache.put(key, words, found)

    def _walk(self, node: _Node, words: list[str], i: int, found: dict[Binding, Any]) -> None:
        n = len(words)
        if node.hash is not None:
            # '#' may swallow zero or more words: try every remaining suffix
            h = node.hash
            for j in range(i, n + 1):
                self._walk(h, words, j, found)
        if i == n:
            here = node.bindings
            if isinstance(here, dict):
                found.update(here)
            elif here is not None:
                found[here] = here.destination
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

    def route(self, message: Message) -> list[Any]:
        # the trie's cached answer read here (``TopicTrie.match``'s first lines): a routing
        # key seen before costs no second Python call per message
        key = message.routing_key
        trie = self._trie
        cache = trie._cache
        hit = cache.answers.get(key)
        if hit is not None and hit.generation == cache.generation:
            return hit.result
        return trie.match(key)
