"""Vhost and user limits, as RabbitMQ's ``rabbit_vhost_limit`` and user limits.

A vhost may cap its connections (``max-connections``) and queues (``max-queues``); a user may
cap its connections (``max-connections``) and the channels open over all of them
(``max-channels``). A negative value is no limit and 0 refuses everything, as RabbitMQ.

Where they live is where RabbitMQ keeps them, so definitions move between the two brokers:
vhost limits are the runtime parameter ``vhost-limits``/``limits`` of their vhost (stored,
recovered and exported with the other parameters; the component here validates them), user
limits a ``limits`` object on the user record.

Enforcement is in the core so every protocol counts: ``Broker.open_vhost`` checks the
connection limits for AMQP, STOMP and MQTT alike and counts the connection it admits, so the
count per vhost and user is kept as connections come and go, not found by a walk of all of
them; the AMQP front end asks ``check_channel`` before it opens a channel; a new queue is
checked in ``VirtualHost.declare_queue``. The texts are RabbitMQ's (``rabbit_reader``,
``rabbit_channel``, ``rabbit_amqqueue``).
"""

from __future__ import annotations

from typing import Any

from ..model.errors import NotAllowed, PreconditionFailed
from .erlang_terms import erlang_term

#: the runtime-parameter component and name RabbitMQ stores vhost limits under
VHOST_COMPONENT, VHOST_PARAMETER = "vhost-limits", "limits"
VHOST_LIMITS = ("max-connections", "max-queues")
USER_LIMITS = ("max-connections", "max-channels")


def validate(value: Any, allowed: tuple[str, ...], what: str = "limits") -> list[str]:
    """RabbitMQ's ``rabbit_parameter_validation:proplist`` errors for a limits object
    (``what`` is the name RabbitMQ gives the object: ``limits``, ``user-limits``)."""
    if not isinstance(value, dict):
        return [f"{what} should be a JSON object, actually was {erlang_term(value)}"]
    errors = []
    unknown = [(k, v) for k, v in value.items() if k not in allowed]
    if unknown:
        errors.append(f"Unrecognised terms {erlang_term(unknown)} in {what}")
    for k in allowed:
        v = value.get(k)
        if k in value and (isinstance(v, bool) or not isinstance(v, int)):
            errors.append(f"{k} should be a number, actually was {erlang_term(v)}")
    return errors


def _reached(limit: Any, count: int) -> bool:
    return isinstance(limit, int) and limit >= 0 and count >= limit


class VhostLimitsComponent:
    """The ``vhost-limits`` runtime-parameter component: validates, nothing to start."""

    name = VHOST_COMPONENT

    def validate(self, vhost: str, name: str, value: Any, user: Any | None) -> list[str]:
        return validate(value, VHOST_LIMITS)

    def notify(self, vhost: str, name: str, value: Any) -> None:
        pass

    def notify_clear(self, vhost: str, name: str) -> None:
        pass


class Limits:
    """The broker's limits and the connection counts they are checked against."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self._by_vhost: dict[str, set[Any]] = {}
        self._by_user: dict[str, set[Any]] = {}
        self._admitted: dict[Any, tuple[str, str]] = {}   # connection -> (user, vhost)
        broker.runtime_parameters.register(VhostLimitsComponent())

    # ---------------------------------------------------------------- vhost limits
    def vhost_limits(self, vhost: str) -> dict[str, int]:
        value = self.broker.runtime_parameters.value(vhost, VHOST_COMPONENT, VHOST_PARAMETER)
        return dict(value) if isinstance(value, dict) else {}

    def set_vhost_limits(self, vhost: str, limits: dict[str, Any]) -> None:
        """Replace a vhost's limits (``rabbitmqctl set_vhost_limits``); {} clears them."""
        if not limits:
            self.clear_vhost_limits(vhost)
            return
        self.broker.runtime_parameters.set(vhost, VHOST_COMPONENT, VHOST_PARAMETER,
                                           dict(limits))

    def clear_vhost_limits(self, vhost: str) -> None:
        self.broker.vhost(vhost)
        params = self.broker.runtime_parameters
        if params.lookup(vhost, VHOST_COMPONENT, VHOST_PARAMETER) is not None:
            params.clear(vhost, VHOST_COMPONENT, VHOST_PARAMETER)

    def set_vhost_limit(self, vhost: str, name: str, value: Any) -> None:
        """One limit of a vhost (``PUT /api/vhost-limits/{vhost}/{name}``)."""
        limits = self.vhost_limits(vhost)
        limits[name] = value
        self.set_vhost_limits(vhost, limits)

    def clear_vhost_limit(self, vhost: str, name: str) -> None:
        limits = self.vhost_limits(vhost)
        limits.pop(name, None)
        self.set_vhost_limits(vhost, limits)

    # ---------------------------------------------------------------- user limits
    def set_user_limits(self, user: str, limits: dict[str, Any]) -> None:
        """Replace a user's limits; stored with the user (definitions ``users[].limits``).
        Refused with the first error alone, without "Validation failed", as RabbitMQ's
        ``rabbit_auth_backend_internal`` answers."""
        errors = validate(limits, USER_LIMITS, "user-limits")
        if errors:
            raise PreconditionFailed(errors[0])
        self.broker.set_user_limits(user, dict(limits))

    def set_user_limit(self, user: str, name: str, value: Any) -> None:
        limits = dict(self.broker.user(user).limits)
        limits[name] = value
        self.set_user_limits(user, limits)

    def clear_user_limit(self, user: str, name: str) -> None:
        """One limit, or every limit for ``all`` (``rabbitmqctl clear_user_limits u all``)."""
        limits = dict(self.broker.user(user).limits)
        if name == "all":
            limits = {}
        limits.pop(name, None)
        self.set_user_limits(user, limits)

    # ---------------------------------------------------------------- enforcement
    def check_connection(self, user: Any, vhost: str) -> None:
        """Before a connection is admitted to ``vhost``: RabbitMQ's vhost check, then the
        user's (530 NOT_ALLOWED, with its texts)."""
        limit = self.vhost_limits(vhost).get("max-connections")
        if _reached(limit, len(self._by_vhost.get(vhost, ()))):
            raise NotAllowed(f"access to vhost '{vhost}' refused for user '{user.name}': "
                             f"connection limit ({limit}) is reached")
        limit = user.limits.get("max-connections")
        if _reached(limit, len(self._by_user.get(user.name, ()))):
            raise NotAllowed(f"connection refused for user '{user.name}': "
                             f"user connection limit ({limit}) is reached")

    def admit(self, connection: Any, user: str, vhost: str) -> None:
        """Count ``connection`` against its vhost and user until ``release``."""
        self.release(connection)
        self._admitted[connection] = (user, vhost)
        self._by_vhost.setdefault(vhost, set()).add(connection)
        self._by_user.setdefault(user, set()).add(connection)

    def release(self, connection: Any) -> None:
        who = self._admitted.pop(connection, None)
        if who is None:
            return
        for index, key in ((self._by_user, who[0]), (self._by_vhost, who[1])):
            conns = index.get(key)
            if conns is not None:
                conns.discard(connection)
                if not conns:
                    del index[key]

    def vhost_connections(self, vhost: str) -> int:
        return len(self._by_vhost.get(vhost, ()))

    def check_channel(self, user: Any) -> None:
        """Before a channel opens: the user's channels over all its connections (each
        admitted connection with channels keeps them in ``channels``)."""
        limit = user.limits.get("max-channels")
        if not isinstance(limit, int) or limit < 0:
            return
        opened = sum(len(getattr(c, "channels", ())) for c in self._by_user.get(user.name, ()))
        if opened >= limit:
            raise NotAllowed(f"number of channels opened for user '{user.name}' has reached "
                             f"the maximum allowed user limit of ({limit})")

    def check_queue(self, vhost: Any, name: str) -> None:
        """Before a new queue is made in ``vhost`` (406, as ``rabbit_amqqueue``)."""
        limit = self.vhost_limits(vhost.name).get("max-queues")
        if _reached(limit, len(vhost.queues)):
            raise PreconditionFailed(f"cannot declare queue '{name}': queue limit in vhost "
                                     f"'{vhost.name}' ({limit}) is reached")
