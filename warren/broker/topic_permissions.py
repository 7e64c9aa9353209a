"""Topic permissions: RabbitMQ's topic authorisation, per user, vhost and exchange.

A topic permission holds two regular expressions, ``write`` and ``read``, that a routing key
must match for a user to publish with it (write) or bind with it (read) on one exchange of
type ``topic``. As RabbitMQ's internal backend (``rabbit_auth_backend_internal``):

- no topic permission for the user, vhost and exchange means everything is allowed (they only
  narrow the normal permissions down, they never widen them);
- an empty pattern allows only the empty routing key (it stands for ``^$``);
- the pattern is searched for in the routing key, not anchored (``re:run``): ``^`` and ``$``
  are the pattern's own;
- ``{username}``, ``{vhost}`` and (MQTT) ``{client_id}`` in a pattern are replaced by the
  client's values, escaped, so a crafted client id cannot widen the pattern (RabbitMQ escapes
  them since 3.13);
- MQTT topics are checked as routing keys (``a/b`` as ``a.b``, filters' ``+`` as ``*``), on the
  MQTT exchange.

Publishing is the hot path, so a check that finds nothing costs one dict lookup by
(user, vhost) (:meth:`TopicPermissions.granted`), and none at all while no topic permission
exists; a pattern is expanded and compiled once per client and kept (a small bounded cache per
permission, since the expansion depends on the client).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..model.errors import AccessRefused, PreconditionFailed

if TYPE_CHECKING:
    from ..exchange.exchange import Exchange

#: compiled expansions kept per permission (one per distinct user/vhost/client id)
COMPILED_CACHE = 256


def invalid_pattern(pattern: str) -> str | None:
    """Why *pattern* is not a regular expression, or None when it is."""
    try:
        re.compile(pattern)
    except re.error as e:
        return str(e)
    return None


@dataclass
class TopicPermission:
    user: str
    vhost: str
    exchange: str
    write: str = ".*"
    read: str = ".*"
    _compiled: dict = field(default_factory=dict, repr=False, compare=False)

    def allows(self, kind: str, routing_key: str, user: str, vhost: str,
               client_id: str | None) -> bool:
        """Whether *routing_key* matches the ``write`` or ``read`` pattern, expanded for this
        client (compiled once per kind and client: a replaced permission is a new object)."""
        key = (kind, user, vhost, client_id)
        rx = self._compiled.get(key)
        if rx is None:
            pattern = getattr(self, kind) or "^$"
            if "{" in pattern:
                variables = {"username": user, "vhost": vhost}
                if client_id is not None:
                    variables["client_id"] = client_id
                for name, value in variables.items():
                    pattern = pattern.replace("{" + name + "}", re.escape(value))
            if len(self._compiled) >= COMPILED_CACHE:
                self._compiled.clear()
            rx = self._compiled[key] = re.compile(pattern)
        return rx.search(routing_key) is not None

    def definition(self) -> dict[str, str]:
        """RabbitMQ's JSON shape (API and definitions)."""
        return {"user": self.user, "vhost": self.vhost, "exchange": self.exchange,
                "write": self.write, "read": self.read}


class TopicPermissions:
    """Every topic permission of the broker, by (user, vhost), then by exchange name."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, str], dict[str, TopicPermission]] = {}

    def granted(self, user: str, vhost: str) -> dict[str, TopicPermission] | None:
        """The user's topic permissions in *vhost* by exchange; None (the usual case) when it
        has none, which allows everything."""
        return self.table.get((user, vhost))

    def set(self, user: str, vhost: str, exchange: str, write: str,
            read: str) -> TopicPermission:
        """Set (or replace) one; PreconditionFailed names a pattern that does not compile."""
        for pattern in (write, read):
            reason = invalid_pattern(pattern)
            if reason is not None:
                raise PreconditionFailed(f"invalid regular expression '{pattern}': {reason}")
        perm = TopicPermission(user, vhost, exchange, write, read)
        self.table.setdefault((user, vhost), {})[exchange] = perm
        return perm

    def clear(self, user: str, vhost: str, exchange: str | None = None
              ) -> list[TopicPermission]:
        """Remove the user's permission on *exchange* in *vhost*, or all of them there."""
        by_exchange = self.table.get((user, vhost))
        if not by_exchange:
            return []
        if exchange is None:
            removed = list(by_exchange.values())
            by_exchange.clear()
        else:
            perm = by_exchange.pop(exchange, None)
            removed = [] if perm is None else [perm]
        if not by_exchange:
            del self.table[(user, vhost)]
        return removed

    def all(self, *, user: str | None = None, vhost: str | None = None
            ) -> list[TopicPermission]:
        """Sorted by user, vhost, exchange; optionally of one user and/or one vhost."""
        return [p for (u, v), by_exchange in sorted(self.table.items())
                if (user is None or u == user) and (vhost is None or v == vhost)
                for _, p in sorted(by_exchange.items())]


def require_topic(granted: dict[str, TopicPermission] | None, exchange: "Exchange", kind: str,
                  routing_key: str, user: str, vhost: str, client_id: str | None = None) -> None:
    """Raise 403 with RabbitMQ's text unless *routing_key* may be used (``kind``: ``write``
    to publish, ``read`` to bind) on *exchange* (an Exchange) by *user*, given the user's
    topic permissions in *vhost* (:meth:`TopicPermissions.granted`)."""
    if not granted or exchange.type_name != "topic":
        return
    perm = granted.get(exchange.name)
    if perm is None:
        return
    if not perm.allows(kind, routing_key, user, vhost, client_id):
        raise AccessRefused(f"{kind} access to topic '{routing_key}' in exchange "
                            f"'{exchange.name}' in vhost '{vhost}' refused for user '{user}'")
