"""Retained messages: the last retained PUBLISH per topic, kept in the broker's store.

Where they live: each retained message is a runtime *parameter* of the broker,
``broker.save_definition("parameter", resource_key("mqtt-retained", vhost, topic), record)``, so
it goes through the same journal/SQL store as every definition (fsync'd by the next
``broker.sync()``, the one that also covers a QoS 1 PUBLISH's PUBACK) and comes back in
``broker.parameters`` after a restart. An empty retained payload deletes the entry
[MQTT-3.3.1-10]. This is a dedicated key space, not messages in a queue: a retained message
is state per topic, replaced rather than appended, which is what a definition is.

Matching on SUBSCRIBE walks a :class:`~warren.mqtt.topic_tree.TopicTree` per vhost, so a
subscription's lookup costs what its filter matches, not every retained topic of the vhost;
the walk is lazy (:meth:`RetainedStore.matching_steps`), so that a filter matching a million
of them is found and sent a slice at a time (``retained_delivery.py``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from warren.mqtt.topic_tree import TopicTree
from warren.store.interface import resource_key, split_key

KEY_PREFIX = resource_key("mqtt-retained", "")


@dataclass(frozen=True, slots=True)
class RetainedMessage:
    """One retained message. ``expires_at`` is wall-clock epoch seconds or None."""

    topic: str
    payload: bytes
    qos: int
    properties: dict[str, Any] = field(default_factory=dict)  # MQTT 5 PUBLISH properties
    expires_at: float | None = None

    def to_record(self) -> dict[str, Any]:
        props = dict(self.properties)
        if "correlation_data" in props:
            props["correlation_data"] = base64.b64encode(props["correlation_data"]).decode()
        if "user_property" in props:
            props["user_property"] = [list(p) for p in props["user_property"]]
        return {"topic": self.topic, "payload": base64.b64encode(self.payload).decode(),
                "qos": self.qos, "properties": props, "expires_at": self.expires_at}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "RetainedMessage":
        props = dict(record.get("properties") or {})
        if "correlation_data" in props:
            props["correlation_data"] = base64.b64decode(props["correlation_data"])
        if "user_property" in props:
            props["user_property"] = [tuple(p) for p in props["user_property"]]
        return cls(record["topic"], base64.b64decode(record["payload"]), int(record["qos"]),
                   props, record.get("expires_at"))


class RetainedStore:
    """Retained messages of every vhost, mirrored into the broker's store."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self._by_vhost: dict[str, TopicTree[RetainedMessage]] = {}
        for key, value in list(broker.parameters.items()):
            if key.startswith(KEY_PREFIX) and isinstance(value, dict):
                vhost = split_key(key)[1]
                try:
                    msg = RetainedMessage.from_record(value)
                except (KeyError, ValueError, TypeError):
                    continue
                self._tree(vhost).put(msg.topic, msg)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_vhost.values())

    def _tree(self, vhost: str) -> TopicTree[RetainedMessage]:
        tree = self._by_vhost.get(vhost)
        if tree is None:
            tree = self._by_vhost[vhost] = TopicTree()
        return tree

    @staticmethod
    def _key(vhost: str, topic: str) -> str:
        return resource_key("mqtt-retained", vhost, topic)

    def put(self, vhost: str, message: RetainedMessage) -> None:
        """Store (or with an empty payload, clear) the retained message of its topic."""
        key = self._key(vhost, message.topic)
        topics = self._tree(vhost)
        if not message.payload:
            if topics.pop(message.topic) is not None:
                self.broker.parameters.pop(key, None)
                self.broker.save_definition("parameter", key, None)
            return
        topics.put(message.topic, message)
        record = message.to_record()
        self.broker.parameters[key] = record
        self.broker.save_definition("parameter", key, record)

    def has_any(self, vhost: str) -> bool:
        """Whether *vhost* holds a retained message (else a SUBSCRIBE has none to walk)."""
        tree = self._by_vhost.get(vhost)
        return tree is not None and len(tree) > 0

    def get(self, vhost: str, topic: str) -> RetainedMessage | None:
        tree = self._by_vhost.get(vhost)
        return None if tree is None else tree.get(topic)

    def matching(self, vhost: str, topic_filter: str, now: float) -> list[RetainedMessage]:
        """Live retained messages whose topic matches ``topic_filter``; expired ones go."""
        return [m for m in self.matching_steps(vhost, topic_filter, lambda: now)
                if m is not None]

    def matching_steps(self, vhost: str, topic_filter: str,
                       now: Callable[[], float]) -> Iterator[RetainedMessage | None]:
        """:meth:`matching` lazily, a tree node per item (None: nothing to send there, see
        :meth:`TopicTree.matching_steps`), so a SUBSCRIBE's retained messages can be sent a
        slice per reactor turn; one found expired at ``now()`` is deleted and not returned."""
        topics = self._by_vhost.get(vhost)
        if not topics:
            return
        for msg in topics.matching_steps(topic_filter):
            if msg is not None and msg.expires_at is not None and msg.expires_at <= now():
                self.put(vhost, RetainedMessage(msg.topic, b"", 0))
                msg = None
            yield msg
