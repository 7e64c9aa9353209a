"""Export and import of definitions in RabbitMQ's JSON format.

The document is RabbitMQ's (``rabbit_definitions``): ``users``, ``vhosts``, ``permissions``,
``topic_permissions``, ``parameters``, ``global_parameters``, ``policies``, ``queues``,
``exchanges``, ``bindings``, plus version fields. A file exported from RabbitMQ imports here and
back: password hashes use the same format, user ``tags`` may be a list or RabbitMQ 3.8's
comma-separated string, unknown sections are ignored.

What is exported is what survives a restart: durable, non-exclusive queues; durable exchanges
other than the default and ``amq.*`` ones; bindings between exported (or built-in) objects.
A per-vhost export (``vhost=...``) leaves out users, vhosts and permissions and the ``vhost``
field of each object, as RabbitMQ's ``/api/definitions/{vhost}``; importing it needs a target
vhost.

Import is idempotent: an existing equivalent object is left as is; an inequivalent queue or
exchange raises PreconditionFailed (as a redeclare would). The document's shape (sections,
required keys, types) is checked before anything changes, so a malformed file changes nothing;
a conflict found while applying (an inequivalent queue) stops the import there.

Runtime parameters (``parameters``, RabbitMQ's ``[{"value", "vhost", "component", "name"}]``)
are checked against their components before anything changes too: a parameter of a component
that is not registered (a RabbitMQ file with shovels, before warren has them) fails the import
as RabbitMQ fails it (``Validation failed``, ``component shovel not found``, then
``(vhost/shovel/name)``; a 400 over HTTP), but here with nothing half imported. They are
applied last, after queues and bindings, so a component told of one (a shovel) finds the
objects it names.
``global_parameters`` are read-only here (``cluster_name``) and ignored on import.
"""

from __future__ import annotations

import time
from itertools import chain
from typing import Any, Iterator

from twisted.internet.defer import Deferred

from ..model.errors import BrokerError, PreconditionFailed
from .jsonvalue import jsonable
from .limits import USER_LIMITS, VHOST_LIMITS
from .limits import validate as validate_limits
from .topic_permissions import invalid_pattern
from ..turn_slices import turn_deadline

PRODUCT_VERSION = "3.13.0"  # the RabbitMQ version whose format we write
WARREN_VERSION = "0.1.0"


def export_definitions(broker: Any, vhost: str | None = None) -> dict[str, Any]:
    vhosts = [broker.vhost(vhost)] if vhost is not None else [
        broker.vhosts[n] for n in sorted(broker.vhosts)]
    per_vhost = vhost is not None
    queues, exchanges, bindings, policies, parameters = [], [], [], [], []
    for vh in vhosts:
        for q in sorted(vh.queues.values(), key=lambda q: q.name):
            if q.durable and q.exclusive_owner is None:
                queues.append(_strip({**q.definition(), "arguments": jsonable(q.arguments)},
                                     per_vhost))
        for ex in sorted(vh.exchanges.values(), key=lambda e: e.name):
            if ex.name and not ex.name.startswith("amq.") and ex.durable:
                exchanges.append(_strip({**ex.definition(),
                                         "arguments": jsonable(ex.arguments)}, per_vhost))
        for ex in sorted(vh.exchanges.values(), key=lambda e: e.name):
            if not ex.name:
                continue
            # RabbitMQ exports an exchange's bindings by routing key, then destination (its
            # route table's order; checked against 3.10.8), not in the order they were made
            for b in sorted(ex.bindings, key=lambda b: (b.routing_key, b.destination.kind,
                                                        b.destination.name)):
                d = b.destination
                if not d.durable or getattr(d, "exclusive_owner", None) is not None or \
                        getattr(d, "deleted", False):   # a deleted queue's, still going
                    continue
                if not ex.durable:
                    continue
                bindings.append(_strip({
                    "source": b.source, "vhost": vh.name, "destination": d.name,
                    "destination_type": d.kind, "routing_key": b.routing_key,
                    "arguments": jsonable(b.arguments)}, per_vhost))
        for p in sorted(broker.policies.get(vh.name, {}).values(), key=lambda p: p.name):
            policies.append(_strip(p.as_json(), per_vhost))
        for rp in broker.runtime_parameters.list(vhost=vh.name):
            parameters.append(_strip(rp.as_json(), per_vhost))
    out: dict[str, Any] = {
        "rabbit_version": PRODUCT_VERSION, "rabbitmq_version": PRODUCT_VERSION,
        "product_name": "warren", "product_version": WARREN_VERSION,
    }
    if not per_vhost:
        out["users"] = [u.definition() for _, u in sorted(broker.users.items())]
        # a vhost's limits are also its ``vhost-limits`` parameter; RabbitMQ writes both,
        # and an empty list (Erlang's empty proplist) when there are none
        out["vhosts"] = [{"name": vh.name, "description": getattr(vh, "description", ""),
                          "tags": list(getattr(vh, "tags", [])),
                          "limits": broker.limits.vhost_limits(vh.name) or [],
                          "metadata": {"description": getattr(vh, "description", ""),
                                       "tags": list(getattr(vh, "tags", []))}}
                         for vh in vhosts]
        out["permissions"] = [p.definition() for _, p in sorted(broker.permissions.items())]
        out["topic_permissions"] = [p.definition() for p in broker.topic_permissions.all()]
        out["global_parameters"] = [{"name": "cluster_name", "value": broker.node_name}]
    out["parameters"] = parameters
    out["policies"] = policies
    out["queues"] = queues
    out["exchanges"] = exchanges
    out["bindings"] = bindings
    return out


def import_definitions(broker: Any, defs: Any, vhost: str | None = None) -> None:
    """Apply a definitions document; ``vhost`` forces every object into that vhost."""
    for _ in _import_steps(broker, defs, vhost, _prepare(broker, defs, vhost)):
        pass


def import_definitions_sliced(broker: Any, defs: Any, vhost: str | None = None) -> Deferred:
    """``import_definitions``, objects applied until the turn's budget is spent in each
    reactor turn (``turn_slices.turn_deadline``; a count of 1,000 was 14-22 ms), so a document of
    100,000 queues and bindings does not hold every other client for seconds. The document is
    checked at once (a bad one raises here and changes nothing); the Deferred fires when the
    last object is applied, or fails with the error of the object that failed (those before
    it stay, as with RabbitMQ's import)."""
    vh_of = _prepare(broker, defs, vhost, check=False)
    steps = chain(_checks(broker, defs, vh_of), _import_steps(broker, defs, vhost, vh_of))
    done: Deferred[None] = Deferred()

    def run() -> None:
        end = turn_deadline()
        try:
            next(steps)
            while time.monotonic() < end:
                next(steps)
        except StopIteration:
            done.callback(None)
            return
        except Exception:
            done.errback()
            return
        broker.clock.callLater(0, run)

    run()
    return done


def _prepare(broker: Any, defs: Any, vhost: str | None, check: bool = True):
    if not isinstance(defs, dict):
        raise PreconditionFailed("definitions must be a JSON object")
    for section in ("users", "vhosts", "permissions", "topic_permissions", "policies", "queues",
                    "exchanges", "bindings", "parameters"):
        items = defs.get(section, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise PreconditionFailed(f"'{section}' must be a list of objects")
    if vhost is not None:
        broker.vhost(vhost)

    def vh_of(item: dict[str, Any]) -> str:
        name = vhost if vhost is not None else item.get("vhost", "/")
        if not isinstance(name, str):
            raise PreconditionFailed(f"bad vhost in {item!r}")
        return name

    if check:
        for _ in _checks(broker, defs, vh_of):
            pass
    return vh_of


def _checks(broker: Any, defs: dict[str, Any], vh_of) -> Iterator[None]:
    """The document's checks, a step per object checked (100,000 objects: some 50 ms at
    once), before any object is applied."""
    yield from _validate(defs, vh_of)
    _check_parameters(broker, defs, vh_of)


def _import_steps(broker: Any, defs: dict[str, Any], vhost: str | None,
                  vh_of) -> Iterator[None]:
    """Apply the document one object per step."""
    if vhost is None:
        for v in defs.get("vhosts", []):
            meta = v.get("metadata") or {}
            broker.add_vhost(v["name"], description=v.get("description",
                                                          meta.get("description", "")),
                             tags=_tags(v.get("tags", meta.get("tags", []))))
            if v.get("limits"):
                broker.limits.set_vhost_limits(v["name"], v["limits"])
            yield
        for u in defs.get("users", []):
            broker.add_user(u["name"], u.get("password"), _tags(u.get("tags", [])),
                            password_hash=u.get("password_hash") if "password" not in u
                            else None, hashing_algorithm=u.get("hashing_algorithm"),
                            limits=u.get("limits") or None)
            yield
        for p in defs.get("permissions", []):
            broker.set_permissions(p["user"], p["vhost"], p.get("configure", ""),
                                   p.get("write", ""), p.get("read", ""))
            yield
        for p in defs.get("topic_permissions", []):
            broker.set_topic_permissions(p["user"], p["vhost"], p["exchange"],
                                         p.get("write", ""), p.get("read", ""))
            yield
    for p in defs.get("policies", []):
        broker.set_policy(vh_of(p), p["name"], p["pattern"], p["definition"],
                          priority=int(p.get("priority", 0)),
                          apply_to=p.get("apply-to", "all"))
        yield
    for e in defs.get("exchanges", []):
        broker.vhost(vh_of(e)).declare_exchange(
            e["name"], e.get("type", "direct"), durable=bool(e.get("durable", True)),
            auto_delete=bool(e.get("auto_delete", False)),
            internal=bool(e.get("internal", False)), arguments=e.get("arguments") or {})
        yield
    for q in defs.get("queues", []):
        broker.vhost(vh_of(q)).declare_queue(
            q["name"], durable=bool(q.get("durable", True)),
            auto_delete=bool(q.get("auto_delete", False)), arguments=q.get("arguments") or {})
        yield
    for b in defs.get("bindings", []):
        vh = broker.vhost(vh_of(b))
        if b.get("destination_type", "queue") == "queue":
            dest = vh.queue(b["destination"])
        else:
            dest = vh.exchange(b["destination"])
        vh.bind(b["source"], dest, b.get("routing_key", ""), b.get("arguments") or {})
        yield
    for p in defs.get("parameters", []):
        broker.runtime_parameters.set(vh_of(p), p["component"], p["name"], p["value"])
        yield




def _validate(defs: dict[str, Any], vh_of) -> Iterator[None]:
    """Check shapes and references before changing anything (a step per object)."""
    required = {"users": ("name",), "vhosts": ("name",),
                "permissions": ("user", "vhost"),
                "topic_permissions": ("user", "vhost", "exchange"),
                "policies": ("name", "pattern", "definition"),
                "queues": ("name",), "exchanges": ("name",),
                "bindings": ("source", "destination"),
                "parameters": ("component", "name", "value")}
    for section, keys in required.items():
        for item in defs.get(section, []):
            for k in keys:
                if k not in item:
                    raise PreconditionFailed(f"{section}: an item lacks '{k}'")
            for k in ("name", "source", "destination", "user", "component", "exchange",
                      "vhost", "write", "read", "configure"):
                if k in item and not isinstance(item[k], str):
                    raise PreconditionFailed(f"{section}: '{k}' must be a string")
            yield
    for u in defs.get("users", []):
        if "password" not in u and not isinstance(u.get("password_hash", ""), str):
            raise PreconditionFailed("users: password_hash must be a string")
    for section, allowed, what in (("users", USER_LIMITS, "user-limits"),
                                   ("vhosts", VHOST_LIMITS, "limits")):
        for item in defs.get(section, []):
            # an empty list is Erlang's empty proplist (RabbitMQ's export of no limits)
            limits = item.get("limits")
            errors = validate_limits(limits, allowed, what) if limits else []
            if errors:
                raise PreconditionFailed(f"{section}: {item['name']}: {'; '.join(errors)}")
    for section in ("queues", "exchanges", "bindings", "policies", "parameters"):
        for item in defs.get(section, []):
            if vh_of(item) is None:
                raise PreconditionFailed(f"{section}: no vhost")
            yield
    for p in defs.get("topic_permissions", []):
        for k in ("write", "read"):
            reason = invalid_pattern(p.get(k, ""))
            if reason is not None:
                raise PreconditionFailed(
                    f"topic_permissions: invalid regular expression '{p[k]}': {reason}")


def _check_parameters(broker: Any, defs: dict[str, Any], vh_of) -> None:
    """Each parameter's component must exist and accept the value, before anything changes.

    The error is RabbitMQ's (``add_parameter``): the component's text and `` (vhost/component/
    name)``. The vhost may be one this import creates.
    """
    known = set(broker.vhosts) | {v["name"] for v in defs.get("vhosts", [])}
    for p in defs.get("parameters", []):
        vhost = vh_of(p)
        if vhost not in known:
            raise PreconditionFailed(
                f'Please create virtual host "{vhost}" prior to importing definitions.')
        try:
            broker.runtime_parameters.check(vhost, p["component"], p["name"], p["value"])
        except BrokerError as e:
            raise PreconditionFailed(
                f"{e.text} ({vhost}/{p['component']}/{p['name']})") from None


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list):
        return [str(t) for t in value]
    return []


def _strip(d: dict[str, Any], per_vhost: bool) -> dict[str, Any]:
    if per_vhost:
        d = dict(d)
        d.pop("vhost", None)
    return d

