"""``[[network]]`` tables of the config file: ActiveMQ's ``<networkConnector>`` attributes in
snake case, checked at start-up so a mistake is one line naming the key.

Keys: ``name``, ``uri`` (one URI, a list, or ``static:(amqp://h1:5672,amqp://h2:5672)``),
``duplex``, ``include`` / ``exclude`` (``queue://orders.>``, ``topic://prices.*``; a pattern
without a scheme is a queue, as ActiveMQ's ``dynamicallyIncludedDestinations``),
``network_ttl`` (hops, default 1), ``conduit_subscriptions`` (default true),
``decrease_network_consumer_priority`` (default false), ``prefetch`` (default 1000),
``reconnect_delay`` (seconds, default 5), ``vhost`` (the vhost of this broker the connector
serves, default ``/``; the peer's vhost is the URI's). No ``include`` means every queue and
topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .uri import AmqpURI, InvalidURI, parse_uri

KEYS = ("name", "vhost", "uri", "duplex", "include", "exclude", "network_ttl",
        "conduit_subscriptions", "decrease_network_consumer_priority", "prefetch",
        "reconnect_delay")
_SEGMENT = re.compile(r"^[^.*>#\s]+$")


class ConnectorConfigError(ValueError):
    """One line naming the ``[[network]]`` table and key."""


@dataclass(frozen=True)
class Pattern:
    """One destination pattern: ``kind`` is ``queue`` or ``topic``, ``parts`` the
    ``.``-separated segments where ``*`` is one segment and a final ``>`` any rest."""

    kind: str
    text: str
    parts: tuple[str, ...]

    def matches(self, name: str) -> bool:
        segs = name.split(".")
        for i, part in enumerate(self.parts):
            if part == ">":
                return len(segs) > i
            if i >= len(segs) or (part != "*" and part != segs[i]):
                return False
        return len(segs) == len(self.parts)

    @property
    def binding_key(self) -> str:
        """The ``amq.topic`` binding key of a topic pattern (``>`` is AMQP's ``#``)."""
        return ".".join("#" if p == ">" else p for p in self.parts)


def parse_pattern(text: Any, where: str) -> Pattern:
    if not isinstance(text, str) or not text:
        raise ConnectorConfigError(f"{where}: expected a destination pattern string, "
                                   f"got {text!r}")
    kind, rest = "queue", text
    for scheme in ("queue://", "topic://"):
        if text.startswith(scheme):
            kind, rest = scheme[:-3], text[len(scheme):]
            break
    else:
        if "://" in text:
            raise ConnectorConfigError(f"{where}: {text!r} is not a destination pattern "
                                       f"(queue://NAME or topic://NAME)")
    parts = tuple(rest.split("."))
    for i, part in enumerate(parts):
        if part in ("*", ">"):
            if part == ">" and i != len(parts) - 1:
                raise ConnectorConfigError(f"{where}: {text!r}: '>' must be the last segment")
            continue
        if not _SEGMENT.match(part):
            raise ConnectorConfigError(f"{where}: {text!r} is not a destination pattern "
                                       f"(segment {part!r})")
    return Pattern(kind, text, parts)


def parse_uris(value: Any, where: str) -> tuple[AmqpURI, ...]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("static:"):
            inner = text[len("static:"):].strip()
            if inner.startswith("(") and inner.endswith(")"):
                inner = inner[1:-1]
            items: list[Any] = [u.strip() for u in inner.split(",") if u.strip()]
        else:
            items = [text]
    elif isinstance(value, list):
        items = value
    else:
        raise ConnectorConfigError(f"{where}: expected a URI, a list of URIs or "
                                   f"static:(uri1,uri2), got {value!r}")
    if not items:
        raise ConnectorConfigError(f"{where}: no URI given")
    out = []
    for item in items:
        try:
            uri = parse_uri(item)
        except InvalidURI as error:
            raise ConnectorConfigError(f"{where}: {error}") from None
        if not isinstance(uri, AmqpURI):
            raise ConnectorConfigError(f"{where}: {item!r} names no host: a network "
                                       f"connector reaches another broker")
        out.append(uri)
    return tuple(out)


@dataclass(frozen=True)
class ConnectorDef:
    name: str
    uris: tuple[AmqpURI, ...]
    duplex: bool = False
    include: tuple[Pattern, ...] = ()
    exclude: tuple[Pattern, ...] = ()
    network_ttl: int = 1
    conduit_subscriptions: bool = True
    decrease_network_consumer_priority: bool = False
    prefetch: int = 1000
    reconnect_delay: float = 5.0
    vhost: str = "/"            # this broker's vhost it serves (the peer's is in the URI)

    def wants(self, kind: str, name: str) -> bool:
        """An included, not excluded queue or topic (no include = everything)."""
        if any(p.kind == kind and p.matches(name) for p in self.exclude):
            return False
        if not self.include:
            return True
        return any(p.kind == kind and p.matches(name) for p in self.include)

    def topic_keys(self) -> list[str]:
        """``amq.topic`` binding keys the topic side listens to (``#`` with no include)."""
        if not self.include:
            return ["#"]
        return sorted({p.binding_key for p in self.include if p.kind == "topic"})


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConnectorConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConnectorConfigError(f"{where}: expected an integer, got {value!r}")
    if value < minimum:
        raise ConnectorConfigError(f"{where}: must be at least {minimum}, got {value}")
    return value


def parse_connectors(value: Any) -> list[ConnectorDef]:
    """The ``network`` config value (a list of tables) as connector definitions."""
    if value in (None, []):
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ConnectorConfigError(f"network: expected [[network]] tables, got {value!r}")
    out: list[ConnectorDef] = []
    names: set[str] = set()
    for i, table in enumerate(value):
        if not isinstance(table, dict):
            raise ConnectorConfigError(f"network[{i}]: expected a table, got {table!r}")
        label = f"network[{i}]"
        table = {str(k).replace("-", "_"): v for k, v in table.items()}
        for key in table:
            if key not in KEYS:
                raise ConnectorConfigError(f"{label}: unknown key '{key}' "
                                           f"(known: {', '.join(KEYS)})")
        name = table.get("name", f"connector-{i + 1}")
        if not isinstance(name, str) or not name:
            raise ConnectorConfigError(f"{label}.name: expected a non-empty string")
        if name in names:
            raise ConnectorConfigError(f"{label}.name: '{name}' is used twice")
        names.add(name)
        label = f"network '{name}'"
        if "uri" not in table:
            raise ConnectorConfigError(f"{label}: key 'uri' is missing")
        kwargs: dict[str, Any] = {"name": name,
                                  "uris": parse_uris(table["uri"], f"{label}.uri")}
        if "vhost" in table:
            vhost = table["vhost"]
            if not isinstance(vhost, str) or not vhost:
                raise ConnectorConfigError(f"{label}.vhost: expected a vhost name, "
                                           f"got {vhost!r}")
            kwargs["vhost"] = vhost
        for key in ("duplex", "conduit_subscriptions", "decrease_network_consumer_priority"):
            if key in table:
                kwargs[key] = _bool(table[key], f"{label}.{key}")
        if "network_ttl" in table:
            kwargs["network_ttl"] = _int(table["network_ttl"], f"{label}.network_ttl", 1)
        if "prefetch" in table:
            kwargs["prefetch"] = _int(table["prefetch"], f"{label}.prefetch", 1)
        if "reconnect_delay" in table:
            delay = table["reconnect_delay"]
            if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay <= 0:
                raise ConnectorConfigError(f"{label}.reconnect_delay: expected a positive "
                                           f"number of seconds, got {delay!r}")
            kwargs["reconnect_delay"] = float(delay)
        for key in ("include", "exclude"):
            if key in table:
                raw = table[key]
                raw = [raw] if isinstance(raw, str) else raw
                if not isinstance(raw, list):
                    raise ConnectorConfigError(f"{label}.{key}: expected a list of "
                                               f"destination patterns, got {raw!r}")
                kwargs[key] = tuple(parse_pattern(p, f"{label}.{key}") for p in raw)
        out.append(ConnectorDef(**kwargs))
    return out
