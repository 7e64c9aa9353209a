"""MQTT topics <-> AMQP topic-exchange routing keys, and MQTT's own filter matching.

The mapping is RabbitMQ's MQTT plugin's (``rabbit_mqtt_util:mqtt_to_amqp/amqp_to_mqtt``):
the level separators swap, ``/`` <-> ``.``, so MQTT ``a/b/c`` is routing key ``a.b.c`` on
``amq.topic`` and an AMQP or STOMP publisher's ``a.b.c`` reaches MQTT subscribers of
``a/b/c``. A dot *inside* an MQTT level becomes a slash in the key (``v1.0/x`` -> ``v1/0.x``)
so that it does not split the level for the topic exchange, and turns back into a dot on the
way out: the translation is its own inverse. In filters ``+`` becomes ``*``; ``#`` stays.

Routing alone over-approximates MQTT in one place: a filter starting with a wildcard must not
match a topic starting with ``$`` [MQTT-4.7.2-1], but the topic exchange knows nothing of
that. Sessions therefore re-check each delivery with :func:`filter_matches`, which also picks
the matching subscriptions (their QoS, identifiers, no-local, retain-as-published).
"""

from __future__ import annotations

_SWAP = str.maketrans({"/": ".", ".": "/"})
_FILTER = str.maketrans({"/": ".", ".": "/", "+": "*"})

_CACHE_LIMIT = 4096
#: topic_to_key's memo, topic -> routing key; read in line by the publish hot path
key_cache: dict[str, str] = {}
_topic_cache: dict[str, str] = {}

SHARE_PREFIX = "$share/"


def topic_to_key(topic: str) -> str:
    """MQTT topic name -> AMQP routing key (memoised: hot topics cost one dict lookup)."""
    key = key_cache.get(topic)
    if key is None:
        key = topic.translate(_SWAP)
        if len(key_cache) >= _CACHE_LIMIT:
            key_cache.clear()
        key_cache[topic] = key
    return key


def key_to_topic(key: str) -> str:
    """AMQP routing key -> MQTT topic name (the same swap, so the inverse of topic_to_key)."""
    topic = _topic_cache.get(key)
    if topic is None:
        topic = key.translate(_SWAP)
        if len(_topic_cache) >= _CACHE_LIMIT:
            _topic_cache.clear()
        _topic_cache[key] = topic
    return topic


def filter_to_pattern(topic_filter: str) -> str:
    """MQTT topic filter -> topic-exchange binding pattern (``+`` -> ``*``)."""
    return topic_filter.translate(_FILTER)


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """``$share/group/f`` -> ``("group", "f")``; any other filter -> ``(None, filter)``.

    The codec's ``validate_topic_filter`` has already checked the shape.
    """
    if topic_filter.startswith(SHARE_PREFIX):
        _, group, rest = topic_filter.split("/", 2)
        return group, rest
    return None, topic_filter


def filter_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching of one (non-shared) filter against a topic name [MQTT 4.7]."""
    if topic_filter == topic:
        return True
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False  # [MQTT-4.7.2-1]
    if "+" not in topic_filter and "#" not in topic_filter:
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    n = len(t_levels)
    for i, level in enumerate(f_levels):
        if level == "#":
            return True  # matches the parent level too: "a/#" matches "a" [MQTT-4.7.1-2]
        if i >= n:
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == n
