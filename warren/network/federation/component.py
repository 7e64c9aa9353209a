"""The ``federation-upstream`` and ``federation-upstream-set`` components: parameters and
policies in, links out.

Which links exist follows from state that changes in many places (upstream parameters, sets,
policies, exchanges and queues declared and deleted), so every such change schedules one
*reconcile* of its vhost on the next reactor turn rather than patching links case by case:
it computes the wanted set of links — for every exchange and queue whose applied policy has
``federation-upstream`` (one upstream), ``federation-upstream-set`` (a set; ``all`` means every
upstream of the vhost) or ``federation-upstream-pattern``, one link per upstream that exists —
and starts, keeps or stops links to match. A link whose upstream definition changed is
restarted. Several changes in one turn cost one reconcile.

Bindings are the exception: an exchange link follows its exchange's bindings one by one (the
core's ``binding.created`` / ``binding.deleted`` events), because re-listing them all for each
binding would make binding N cost N upstream calls.

``validate`` adds to RabbitMQ's texts a refusal of an upstream that is this broker itself
(``amqp://`` with no host, or this broker's AMQP port on a loopback address and the same
vhost) and of a set naming an upstream that does not exist.
"""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

from twisted.internet.defer import Deferred, DeferredList

from ...broker.broker import Broker
from ...config import Config
from ..uri import AmqpURI, LocalBroker
from . import definition
from .definition import Upstream
from .exchange_link import ExchangeLink
from .queue_link import QueueLink
from .upstream_link import UpstreamLink

log = logging.getLogger("warren.network.federation")

UPSTREAM = "federation-upstream"
UPSTREAM_SET = "federation-upstream-set"
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


class FederationComponent:
    """Component ``federation-upstream``; owns every federation link of this broker."""

    name = UPSTREAM

    def __init__(self, broker: Broker, config: Config | None = None, reactor: Any = None) -> None:
        self.broker = broker
        self.reactor = reactor if reactor is not None else broker.clock
        self.node = getattr(config, "node_name", None) or broker.node_name
        self.amqp_port = getattr(config, "amqp_port", None)
        self.links: dict[tuple[str, str, str, str], UpstreamLink] = {}
        self._wanted: dict[tuple[str, str, str, str], tuple[Upstream, int]] = {}
        self._pending: set[str] = set()
        self._stopped = False
        self.companions = [UpstreamSetComponent(self)]
        broker.subscribe(self._event)
        # after recovery (the reactor runs): federate what the stored state says
        self.reactor.callLater(0, self._reconcile_all)

    # ------------------------------------------------------------------ ParameterComponent
    def validate(self, vhost: str, name: str, value: Any, user: Any | None) -> list[str]:
        errors = definition.validate_upstream(name, value)
        if errors:
            return errors
        for uri in definition.uris_of(value):
            if self._is_self(uri, vhost):
                errors.append(f'"{uri.redacted}" points at this broker itself '
                              f'(vhost "{vhost}"): an upstream must be another broker')
        return errors

    def notify(self, vhost: str, name: str, value: Any) -> None:
        self.schedule(vhost)

    def notify_clear(self, vhost: str, name: str) -> None:
        self.schedule(vhost)

    def _is_self(self, uri: AmqpURI | LocalBroker, vhost: str) -> bool:
        if isinstance(uri, LocalBroker):
            return True
        if uri.vhost != vhost or uri.tls is not None or not self.amqp_port:
            return False
        if uri.port != self.amqp_port:
            return False
        return uri.host in _LOOPBACK or uri.host == socket.gethostname()

    # ------------------------------------------------------------------ reconciling
    def _event(self, event: str, **info: Any) -> None:
        if event in ("binding.created", "binding.deleted"):
            binding = info["binding"]
            for (vhost, kind, name, _u), link in list(self.links.items()):
                if isinstance(link, ExchangeLink) and vhost == info["vhost"] \
                        and name == binding.source:
                    link.binding_changed(binding, event == "binding.created")
        elif event.startswith(("exchange.", "queue.", "policy.")):
            self.schedule(info["vhost"])

    def schedule(self, vhost: str) -> None:
        if self._stopped:
            return
        if not self._pending:
            self.reactor.callLater(0, self._run_pending)
        self._pending.add(vhost)

    def _run_pending(self) -> None:
        pending, self._pending = self._pending, set()
        for vhost in sorted(pending):
            self.reconcile(vhost)

    def _reconcile_all(self) -> None:
        for vhost in list(self.broker.vhosts):
            self.schedule(vhost)
        # links of vhosts that are gone
        for key in [k for k in self.links if k[0] not in self.broker.vhosts]:
            self._stop(key, cleanup=False)

    def reconcile(self, vhost: str) -> None:
        if self._stopped:
            return
        if (not self.broker.runtime_parameters.list(vhost, UPSTREAM)
                and not any(key[0] == vhost for key in self.links)):
            # no upstream, so no link wanted and none to stop: not a walk over every queue
            # and exchange of the vhost for each one declared (quadratic: 8,000 declares 140 s)
            return
        wanted = self.wanted(vhost)
        for key in [k for k in self.links if k[0] == vhost]:
            want = wanted.get(key)
            if want is None or want != self._wanted.get(key):
                self._stop(key, cleanup=want is None)
        for key, (upstream, _identity) in wanted.items():
            if key in self.links:
                continue
            _v, kind, name, _u = key
            cls = ExchangeLink if kind == "exchange" else QueueLink
            link = cls(self.broker, self.node, vhost, name, upstream, self.reactor)
            self.links[key] = link
            self._wanted[key] = wanted[key]
            log.info("%s: starting", link.describe())
            link.start()

    def wanted(self, vhost: str) -> dict[tuple[str, str, str, str], tuple[Upstream, int]]:
        """The links the vhost's state asks for, each with its upstream and the identity of
        the local object (a re-declared exchange or queue gets a new link)."""
        vh = self.broker.vhosts.get(vhost)
        out: dict[tuple[str, str, str, str], tuple[Upstream, int]] = {}
        if vh is None:
            return out
        # another broker's federation objects here (x-internal-purpose) are never federated
        # themselves, whatever a wide policy pattern matches
        objects: list[tuple[str, Any]] = [
            ("exchange", ex) for ex in vh.exchanges.values()
            if ex.name and "x-internal-purpose" not in ex.arguments]
        objects += [("queue", q) for q in vh.queues.values()
                    if q.exclusive_owner is None and "x-internal-purpose" not in q.arguments]
        for kind, obj in objects:
            policy = obj.policy or {}
            for element in self.upstreams_for(vhost, policy):
                name = element.get("upstream")
                if not isinstance(name, str):
                    continue   # (no parameter has such a name: value() would be None)
                param = self.broker.runtime_parameters.value(vhost, UPSTREAM, name)
                if not isinstance(param, dict):
                    continue
                upstream = Upstream.resolve(name, param, element, obj.name)
                if not upstream.uris:
                    continue
                out[(vhost, kind, obj.name, name)] = (upstream, id(obj))
        return out

    def upstreams_for(self, vhost: str, policy: dict[str, Any]) -> list[dict[str, Any]]:
        """``rabbit_federation_upstream:upstreams/1``: the set elements a policy names."""
        params = self.broker.runtime_parameters
        if "federation-upstream" in policy:
            return [{"upstream": policy["federation-upstream"]}]
        if "federation-upstream-set" in policy:
            set_name = policy["federation-upstream-set"]
            if set_name == "all":
                return [{"upstream": p.name} for p in params.list(vhost, UPSTREAM)]
            value = params.value(vhost, UPSTREAM_SET, set_name)
            return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []
        if "federation-upstream-pattern" in policy:
            rx = re.compile(policy["federation-upstream-pattern"])
            return [{"upstream": p.name} for p in params.list(vhost, UPSTREAM)
                    if rx.search(p.name)]
        return []

    def _stop(self, key: tuple[str, str, str, str], cleanup: bool) -> Deferred:
        link = self.links.pop(key)
        self._wanted.pop(key, None)
        log.info("%s: stopping", link.describe())
        return link.stop(cleanup)

    # ------------------------------------------------------------------ operations
    def status(self, vhost: str | None = None) -> list[dict[str, Any]]:
        return [link.as_json() for key, link in sorted(self.links.items())
                if vhost is None or key[0] == vhost]

    def counters(self) -> list[dict[str, Any]]:
        return [{"vhost": v, "type": k, "name": n, "upstream": u,
                 "status": link.status.state, "forwarded": link.forwarded,
                 "failures": link.link.counters.failures}
                for (v, k, n, u), link in sorted(self.links.items())]

    def stop_all(self) -> Deferred:
        """Broker stopping or fenced: every link closed, nothing deleted upstream."""
        self._stopped = True
        keys = list(self.links)
        return DeferredList([self._stop(k, cleanup=False) for k in keys], consumeErrors=True)


class UpstreamSetComponent:
    """Component ``federation-upstream-set``; changes re-federate the vhost."""

    name = UPSTREAM_SET

    def __init__(self, federation: FederationComponent) -> None:
        self.federation = federation

    def validate(self, vhost: str, name: str, value: Any, user: Any | None) -> list[str]:
        errors = definition.validate_set(name, value)
        if errors or user is None:
            # a definitions import checks every item before setting any: its upstreams
            # are not stored yet (and RabbitMQ ignores a set member that does not exist)
            return errors
        params = self.federation.broker.runtime_parameters
        for element in value:
            upstream = element["upstream"]
            if params.lookup(vhost, UPSTREAM, upstream) is None:
                errors.append(f'upstream "{upstream}" not found in vhost "{vhost}" '
                              f"(define the federation-upstream first)")
        return errors

    def notify(self, vhost: str, name: str, value: Any) -> None:
        self.federation.schedule(vhost)

    def notify_clear(self, vhost: str, name: str) -> None:
        self.federation.schedule(vhost)
