"""/api/bindings: list, create and delete bindings (exchange->queue ``q`` and exchange->exchange
``e``), addressed as RabbitMQ does by a ``properties_key``.

A binding has no name; RabbitMQ names it in URLs by its *properties key*: the routing key
(``~`` when empty) when it has no arguments, else ``<routing key>~<hash of the arguments>``.
The default exchange's implicit bindings are listed (source ``""``) but cannot be changed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from typing import Any

from ...broker.jsonvalue import jsonable
from ...broker.queue import Queue
from ...broker.vhost import VirtualHost
from ...exchange.exchange import Exchange
from ...exchange.interface import Binding
from ..api import Call, Route, as_str, as_table, bad_request, not_found


def properties_key(b: Binding) -> str:
    """RabbitMQ's ``pack_binding_props``: the routing key quote_plus'ed (``~`` as ``%7E``),
    ``~`` alone for an empty key, ``~<hash>`` appended when there are arguments."""
    key = urllib.parse.quote_plus(b.routing_key).replace("~", "%7E")
    if not b.arguments:
        return key or "~"
    canon = json.dumps(b.arguments, sort_keys=True, default=str).encode()
    digest = base64.urlsafe_b64encode(hashlib.md5(canon).digest()).decode().rstrip("=")
    return f"{key}~{digest}"


def binding_info(vh: VirtualHost, b: Binding) -> dict[str, Any]:
    return {"source": b.source, "vhost": vh.name, "destination": b.destination.name,
            "destination_type": b.destination.kind, "routing_key": b.routing_key,
            "arguments": jsonable(b.arguments), "properties_key": properties_key(b)}


def in_listing_order(infos: Any) -> list[dict[str, Any]]:
    """Bindings as RabbitMQ's management API lists them (its default sort: vhost, source,
    destination, routing key, properties key; checked against 3.10.8), not in the order the
    exchange holds them, which past 8,192 bindings is its shards' (``sharded_map.py``) and
    changes from one run to the next with the hash seed."""
    return sorted(infos, key=lambda i: (i["vhost"], i["source"], i["destination"],
                                        i["routing_key"], i["properties_key"]))


def list_bindings(call: Call) -> list[dict[str, Any]]:
    vhs = [call.vhost()] if "vhost" in call.params else call.visible_vhosts()
    return in_listing_order(binding_info(vh, b) for vh in vhs for b in vh.bindings())


def _ends(call: Call) -> tuple[VirtualHost, Exchange, Queue | Exchange]:
    """The vhost, source exchange and destination named by the path (404 if any is missing)."""
    vh = call.vhost()
    source = vh.exchanges.get(_exchange_name(call.params["source"]))
    kind = call.params.get("kind", "q")
    dests = vh.queues if kind == "q" else vh.exchanges
    dest = dests.get(call.params["destination"])
    if source is None or dest is None:
        raise not_found()
    return vh, source, dest


def _between(call: Call) -> list[Binding]:
    vh, source, dest = _ends(call)
    if source.name == "" and dest.kind == "queue":
        return [Binding("", dest, dest.name)] if vh.queues.get(dest.name) is dest else []
    return [b for b in source.bindings if b.destination is dest]


def between(call: Call) -> list[dict[str, Any]]:
    vh = call.vhost()
    return in_listing_order(binding_info(vh, b) for b in _between(call))


def create(call: Call) -> None:
    vh, source, dest = _ends(call)
    body = call.obj()
    routing_key = as_str(body.get("routing_key"), "routing_key", "")
    arguments = as_table(body.get("arguments"), "arguments")
    call.check(vh.name, "write", dest.kind, dest.name)
    call.check(vh.name, "read", "exchange", source.name)
    b = vh.bind(source.name, dest, routing_key, arguments)
    call.status = 201
    call.headers["Location"] = properties_key(b)


def _one(call: Call) -> Binding:
    props = call.params["props"]
    for b in _between(call):
        # the packed key, or (as clients often send) the plain routing key of a binding
        # without arguments
        if properties_key(b) == props or (not b.arguments and b.routing_key == props):
            return b
    raise not_found()


def get_one(call: Call) -> dict[str, Any]:
    return binding_info(call.vhost(), _one(call))


def delete_one(call: Call) -> None:
    vh, source, dest = _ends(call)
    b = _one(call)
    if source.name == "":
        raise bad_request("bindings of the default exchange cannot be deleted")
    call.check(vh.name, "write", dest.kind, dest.name)
    call.check(vh.name, "read", "exchange", source.name)
    vh.unbind(source.name, dest, b.routing_key, b.arguments)
    call.status = 204


def _exchange_name(name: str) -> str:
    return "" if name == "amq.default" else name


ROUTES = [Route("GET", "/api/bindings", list_bindings),
          Route("GET", "/api/bindings/{vhost}", list_bindings)]


def _to(kind: str, view):
    """The view with the destination kind (``q`` or ``e``, a literal in the path) bound."""
    def routed(call: Call) -> Any:
        call.params["kind"] = kind
        return view(call)
    routed.__name__ = view.__name__
    routed.__doc__ = view.__doc__
    return routed


for _kind in ("q", "e"):
    _base = "/api/bindings/{vhost}/e/{source}/" + _kind + "/{destination}"
    ROUTES += [
        Route("GET", _base, _to(_kind, between)),
        Route("POST", _base, _to(_kind, create), mutates=True),
        Route("GET", _base + "/{props}", _to(_kind, get_one)),
        Route("DELETE", _base + "/{props}", _to(_kind, delete_one), mutates=True),
    ]
