"""What of an MQTT session outlives its connection: subscriptions, in-flight deliveries and the
QoS 2 ids received (:class:`SessionState`), with the subscription (:class:`Sub`) and in-flight
delivery (:class:`Inflight`) records it holds. Plain data and bookkeeping, no I/O: the session
registry (``registry.py``) keeps and stores these, a connection's session (``session.py``)
works on the one it attached.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

from warren.model.message import QueueEntry
from warren.exchange.interface import Binding
from warren.exchange.sharded_map import grown
from warren.exchange.topic import TopicTrie
from warren.mqtt import errors as rc
from warren.mqtt.codec import (MqttError)
from warren.mqtt.retained import RetainedMessage
from warren.mqtt.topics import (filter_matches, filter_to_pattern, topic_to_key)


__all__ = ["NEVER_EXPIRES", "AttachedSession", "Inflight", "SessionState", "Sub"]

NEVER_EXPIRES = 0xFFFFFFFF


class AttachedSession(Protocol):
    """What a state asks of the connection's session attached to it (``session.py``)."""

    def taken_over(self) -> None: ...   # another connection took the client id over


@dataclass(frozen=True, slots=True)
class Sub:
    """One subscription of a session, as granted."""

    topic_filter: str            # the MQTT filter without any $share prefix
    group: str | None            # share group, or None
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    identifier: int | None = None

    @property
    def full_filter(self) -> str:
        return self.topic_filter if self.group is None else \
            f"$share/{self.group}/{self.topic_filter}"


@dataclass(slots=True)
class Inflight:
    """A delivery sent at QoS 1/2 and not yet completed by the client."""

    queue: Any                   # Queue it came from, or None for a retained message
    entry: QueueEntry | None
    qos: int
    retained: RetainedMessage | None = None
    released: bool = False       # QoS 2: PUBREC received, PUBREL sent, awaiting PUBCOMP


class SessionState:
    """What outlives a connection: subscriptions, in-flight deliveries, QoS 2 ids."""

    def __init__(self, vhost: str, client_id: str, expiry: int) -> None:
        self.vhost = vhost
        self.client_id = client_id
        self.expiry = expiry                         # seconds; NEVER_EXPIRES = forever
        self.subs: dict[str, Sub] = {}               # full filter -> subscription (put_sub)
        self.no_local_count = 0                      # subscriptions with no-local
        self.own_qos_count = 0                       # non-shared subscriptions with QoS > 0
        # what changed since the last save (each put_sub / pop_sub of a persistent
        # session, in order: None for a removal) and how many of those belong to packets
        # already answered (session_records.py writes those)
        self.unsaved: list[tuple[str, Sub | None]] = []
        self.unsaved_upto = 0
        self.marked_count = 0                        # subscriptions when last marked
        self.record_parts: list[int] = []            # the parts the stored head names
        self.record_next = 0                         # the number of the next part
        self.record_entries = 0                      # entries in those parts
        self.writing_parts: list[int] | None = None  # parts of a save not yet in a head
        self.record_rewrite = False                  # the next save writes the whole set
        self.sub_trie = TopicTrie()                  # own subscriptions by pattern
        # full filter -> its trie entry; split into shards once large (``grown``): grown as
        # a dict, it resized at the same SUBSCRIBE filter as ``subs`` (two resizes of 1-2
        # ms each in one step at 43,691 filters). ``subs`` keeps its order (the records'
        # and the resume's), and so stays a dict
        self._trie_entries: MutableMapping[str, Binding] = {}
        self._seq = 0                                # subscription order
        self.inflight: dict[int, Inflight] = {}      # outbound packet id -> delivery
        self.qos2_received: set[int] = set()         # inbound QoS 2 ids awaiting PUBREL
        self.next_id = 0
        self.session: AttachedSession | None = None  # attached connection, if any
        self.expiry_call = None                      # pending session end
        self.will_call = None                        # timer of a pending delayed will
        self.pending_will: tuple | None = None  # (vhost, Will, user, client id) to publish
        self.ended = False

    def put_sub(self, full: str, sub: Sub) -> None:
        """Add or replace a subscription (a replaced one keeps its place); the counters and
        the trie keep SUBSCRIBE O(1) per filter and delivery independent of their number."""
        old = self.subs.get(full)
        seq = None
        if old is not None:
            self._count(old, -1)
            seq = self._untrie(full)
        self.subs[full] = sub
        self._count(sub, 1)
        if self.expiry:
            self.unsaved.append((full, sub))
        if sub.group is None:
            if seq is None:
                self._seq += 1
                seq = self._seq
            b = Binding("", (seq, sub), filter_to_pattern(sub.topic_filter))
            self.sub_trie.insert(b.routing_key, b)
            self._trie_entries[full] = b
            self._trie_entries = grown(self._trie_entries)

    def pop_sub(self, full: str) -> Sub | None:
        sub = self.subs.pop(full, None)
        if sub is not None:
            self._count(sub, -1)
            self._untrie(full)
            if self.expiry:
                self.unsaved.append((full, None))
        return sub

    def let_go(self) -> Iterator[None]:
        """The subscriptions of an ended session removed one per step, the newest first
        (``SessionRegistry.end`` runs it in slices): left to go with the session, 50,000 of
        them (a ``Sub``, a trie entry and its trie nodes each) were freed in the one step
        that tore the connection down, 60 ms of CPU."""
        while self.subs:
            full, sub = self.subs.popitem()
            self._count(sub, -1)
            self._untrie(full)
            yield None

    def _untrie(self, full: str) -> int | None:
        b = self._trie_entries.pop(full, None)
        if b is None:
            return None
        self.sub_trie.remove(b.routing_key, b)
        return b.destination[0]

    def matching(self, topic: str) -> tuple[Sub, ...]:
        """Own (non-shared) subscriptions matching ``topic``, in subscription order: the trie
        gives the candidates (it may over-match ``$`` topics), MQTT's rule decides."""
        found = sorted(self.sub_trie.match(topic_to_key(topic)), key=lambda d: d[0])
        return tuple(sub for _seq, sub in found if filter_matches(sub.topic_filter, topic))

    def _count(self, sub: Sub, n: int) -> None:
        if sub.no_local:
            self.no_local_count += n
        if sub.group is None and sub.qos:
            self.own_qos_count += n

    @property
    def queue_name(self) -> str:
        return f"mqtt-subscription-{self.client_id}qos1"

    def allocate_id(self) -> int:
        inflight = self.inflight
        for _ in range(65535):
            self.next_id = self.next_id % 65535 + 1
            if self.next_id not in inflight:
                return self.next_id
        raise MqttError(rc.QUOTA_EXCEEDED, "no free packet identifier")
