"""The ``shovel`` runtime-parameter component: validates definitions, runs one worker each.

Registered by the server before recovery (``warren.server.PARAMETER_COMPONENTS``), so stored
shovels start again with the broker — and only on the HA master, the one broker that has a
running :class:`~warren.server.BrokerService`; a fenced or stopping broker stops them all
(:meth:`ShovelComponent.stop_all`).

``validate`` is RabbitMQ's (:mod:`.definition`), plus its check on a local end (``amqp://``
with no host): the acting user must be allowed into that vhost, ``user "u" may not connect to
vhost "v"``. A shovel whose ``delete-after`` is reached clears its own parameter.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet.defer import Deferred, DeferredList

from ...broker.broker import Broker
from ...config import Config
from ..uri import LocalBroker
from . import definition as shovel_definition
from .definition import ShovelDefinition
from .local import LocalDestination, LocalSource
from .remote import RemoteDestination, RemoteSource
from .worker import Shovel

log = logging.getLogger("warren.network.shovel")

COMPONENT = "shovel"


class ShovelComponent:
    name = COMPONENT

    def __init__(self, broker: Broker, config: Config | None = None, reactor: Any = None) -> None:
        self.broker = broker
        self.reactor = reactor if reactor is not None else broker.clock
        self.node = getattr(config, "node_name", None) or broker.node_name
        self.shovels: dict[tuple[str, str], Shovel] = {}

    # ------------------------------------------------------------------ ParameterComponent
    def validate(self, vhost: str, name: str, value: Any, user: Any | None) -> list[str]:
        errors = shovel_definition.validate(name, value)
        if errors or user is None:
            return errors
        for key in ("src-uri", "dest-uri"):
            raw = value[key]
            for uri in raw if isinstance(raw, list) else [raw]:
                parsed = shovel_definition.parse_uri(uri)
                if isinstance(parsed, LocalBroker) and not self._may_connect(user, parsed.vhost):
                    errors.append(f'user "{user.name}" may not connect to vhost '
                                  f'"{parsed.vhost}"')
        return errors

    def notify(self, vhost: str, name: str, value: Any) -> None:
        old = self.shovels.pop((vhost, name), None)
        if old is not None:
            old.stop()
        definition = ShovelDefinition.parse(vhost, name, value)
        shovel = Shovel(definition, node=self.node, reactor=self.reactor,
                        make_source=self._source, make_destination=self._destination,
                        on_finished=self._finished)
        self.shovels[(vhost, name)] = shovel
        shovel.start()

    def notify_clear(self, vhost: str, name: str) -> None:
        shovel = self.shovels.pop((vhost, name), None)
        if shovel is not None:
            shovel.stop()
            log.info("shovel '%s' in vhost '%s' deleted", name, vhost)

    # ------------------------------------------------------------------ operations
    def status(self, vhost: str | None = None) -> list[dict[str, Any]]:
        return [s.status() for (v, _n), s in sorted(self.shovels.items())
                if vhost is None or v == vhost]

    def counters(self) -> list[dict[str, Any]]:
        """Every shovel's state and counters, whatever its state (for /metrics)."""
        return [{"vhost": v, "name": n, "state": s.status()["state"], "forwarded": s.forwarded,
                 "pending": s.pending, "restarts": s.restarts}
                for (v, n), s in sorted(self.shovels.items())]

    def restart(self, vhost: str, name: str) -> bool:
        shovel = self.shovels.get((vhost, name))
        if shovel is None:
            return False
        log.info("shovel '%s' in virtual host '%s' will be restarted", name, vhost)
        shovel.restart()
        return True

    def stop_all(self) -> Deferred:
        """Stop every shovel (broker stopping or fenced); their parameters stay stored."""
        shovels = list(self.shovels.values())
        self.shovels.clear()
        return DeferredList([s.stop() for s in shovels], consumeErrors=True)

    # ------------------------------------------------------------------ wiring
    def _source(self, shovel: Shovel) -> Any:
        d = shovel.definition
        if isinstance(d.src_uris[0], LocalBroker):
            return LocalSource(self.broker, d.src_uris[0], d)
        return RemoteSource(_remote(d.src_uris), d, self.reactor, shovel.link_state)

    def _destination(self, shovel: Shovel) -> Any:
        d = shovel.definition
        if isinstance(d.dest_uris[0], LocalBroker):
            return LocalDestination(self.broker, d.dest_uris[0], d)
        return RemoteDestination(_remote(d.dest_uris), d, self.reactor, shovel.link_state)

    def _finished(self, shovel: Shovel) -> None:
        d = shovel.definition
        if self.shovels.get((d.vhost, d.name)) is shovel:
            self.broker.runtime_parameters.clear(d.vhost, COMPONENT, d.name)

    def _may_connect(self, user: Any, vhost: str) -> bool:
        return vhost in self.broker.vhosts and (user.name, vhost) in self.broker.permissions


def _remote(uris: list[Any]) -> list[Any]:
    """The network URIs of a list (a local one mixed into a list of hosts is skipped)."""
    return [u for u in uris if not isinstance(u, LocalBroker)]
