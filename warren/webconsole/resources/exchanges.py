"""/api/exchanges: list, declare, delete, publish; an exchange's bindings.

The default exchange is ``""`` in listings and ``amq.default`` in URLs, as in RabbitMQ.
Publishing through the API (``POST .../publish``) answers ``{"routed": true|false}`` once a
persistent message routed to a durable queue is on disk.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ...broker.jsonvalue import jsonable
from ...model.errors import AccessRefused
from ...model.message import Message, Properties
from ...broker.stats import with_rates
from ...broker.vhost import VirtualHost
from ...exchange.exchange import Exchange
from ...exchange.interface import Binding
from ...exchange.registry import EXCHANGE_TYPES
from ..api import Call, Route, as_bool, as_str, as_table, bad_request, not_found
from .bindings import binding_info, in_listing_order

PROPERTY_TYPES: dict[str, type | tuple[type, ...]] = {
    "content_type": str, "content_encoding": str, "headers": dict, "delivery_mode": int,
    "priority": int, "correlation_id": str, "reply_to": str, "expiration": str,
    "message_id": str, "timestamp": int, "type": str, "user_id": str, "app_id": str,
    "cluster_id": str,
}


def exchange_info(call: Call, vh: VirtualHost, ex: Exchange) -> dict[str, Any]:
    return {
        "name": ex.name, "vhost": vh.name, "type": ex.type_name, "durable": ex.durable,
        "auto_delete": ex.auto_delete, "internal": ex.internal,
        "arguments": jsonable(ex.arguments), "policy": ex.policy_name,
        "user_who_performed_action": "rmq-internal" if (not ex.name or
                                                       ex.name.startswith("amq.")) else "",
        "message_stats": with_rates(
            {"publish_in": ex.published_in, "publish_out": ex.published_out},
            call.site.stats.exchange_rates(vh.name, ex.name) if call.site.stats else {}),
    }


def exchange_name(raw: str) -> str:
    return "" if raw == "amq.default" else raw


def list_exchanges(call: Call) -> list[dict[str, Any]]:
    vhs = [call.vhost()] if "vhost" in call.params else call.visible_vhosts()
    return [exchange_info(call, vh, ex) for vh in vhs
            for ex in sorted(vh.exchanges.values(), key=lambda e: e.name)]


def _exchange(call: Call) -> tuple[VirtualHost, Exchange]:
    vh = call.vhost()
    ex = vh.exchanges.get(exchange_name(call.params["name"]))
    if ex is None:
        raise not_found()
    return vh, ex


def get_exchange(call: Call) -> dict[str, Any]:
    vh, ex = _exchange(call)
    return exchange_info(call, vh, ex)


def put_exchange(call: Call) -> None:
    vh = call.vhost()
    name = exchange_name(call.params["name"])
    body = call.obj()
    type_name = as_str(body.get("type"), "type")
    if type_name not in EXCHANGE_TYPES:
        raise bad_request(f"unknown exchange type '{type_name}'")
    durable = as_bool(body.get("durable"), "durable", True)
    auto_delete = as_bool(body.get("auto_delete"), "auto_delete", False)
    internal = as_bool(body.get("internal"), "internal", False)
    arguments = as_table(body.get("arguments"), "arguments")
    if not name:
        raise _default_exchange_refused()
    call.check(vh.name, "configure", "exchange", name)
    existed = name in vh.exchanges
    vh.declare_exchange(name, type_name, durable=durable, auto_delete=auto_delete,
                        internal=internal, arguments=arguments)
    call.status = 204 if existed else 201


def _default_exchange_refused() -> Exception:
    return AccessRefused("operation not permitted on the default exchange")


def delete_exchange(call: Call) -> None:
    vh, ex = _exchange(call)
    call.check(vh.name, "configure", "exchange", ex.name)
    vh.delete_exchange(ex.name, if_unused=as_bool(call.query.get("if-unused"), "if-unused",
                                                  False))
    call.status = 204


def publish(call: Call) -> Any:
    vh, ex = _exchange(call)
    body = call.obj()
    routing_key = as_str(body.get("routing_key"), "routing_key")
    payload = as_str(body.get("payload"), "payload")
    encoding = as_str(body.get("payload_encoding"), "payload_encoding", "string")
    if encoding == "string":
        data = payload.encode("utf-8")
    elif encoding == "base64":
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("payload is not valid base64") from None
    else:
        raise bad_request("payload_encoding must be string or base64")
    props = message_properties(as_table(body.get("properties"), "properties"))
    publisher = call.broker.publisher(vh, call.user)
    publisher.exchange(ex.name)
    message = Message(ex.name, routing_key, data, codec=call.broker.codec, props=props)
    try:
        routed = publisher.publish(ex, message)
    except AccessRefused as e:
        # a topic permission refused the routing key: RabbitMQ's publish runs on a channel,
        # whose closing it answers as 400 "<code> <reply text>" (checked against 3.10)
        raise bad_request(f"{e.code} {e.reply_text}") from None
    if routed.stored:
        d = call.broker.sync()
        d.addCallback(lambda _: {"routed": bool(routed.queues)})
        return d
    return {"routed": bool(routed.queues)}


def message_properties(raw: dict[str, Any]) -> Properties:
    """RabbitMQ's JSON properties object -> Properties, each field's type checked (400)."""
    values: dict[str, Any] = {}
    for key, value in raw.items():
        want = PROPERTY_TYPES.get(key)
        if want is None:
            raise bad_request(f"unknown message property '{key}'")
        if want is int and isinstance(value, str) and value.isdigit():
            value = int(value)
        if want is str and key == "expiration" and isinstance(value, int):
            value = str(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise bad_request(f"message property '{key}' has the wrong type")
        values[key] = value
    if "delivery_mode" in values and values["delivery_mode"] not in (1, 2):
        raise bad_request("delivery_mode must be 1 or 2")
    if "priority" in values and not 0 <= values["priority"] <= 255:
        raise bad_request("priority must be 0..255")
    if "expiration" in values:
        try:
            if int(values["expiration"]) < 0:
                raise ValueError
        except ValueError:
            raise bad_request("expiration must be a non-negative integer string") from None
    return Properties(**values)


def source_bindings(call: Call) -> list[dict[str, Any]]:
    vh, ex = _exchange(call)
    if ex.name == "":
        return [binding_info(vh, Binding("", q, q.name))
                for q in sorted(vh.queues.values(), key=lambda q: q.name)]
    # (a deleted queue's bindings still being removed, VirtualHost.delete_queue, are left out)
    return in_listing_order(binding_info(vh, b) for b in ex.bindings
                            if not getattr(b.destination, "deleted", False))


def destination_bindings(call: Call) -> list[dict[str, Any]]:
    vh, ex = _exchange(call)
    return in_listing_order(binding_info(vh, b) for b in ex.inbound)


ROUTES = [
    Route("GET", "/api/exchanges", list_exchanges),
    Route("GET", "/api/exchanges/{vhost}", list_exchanges),
    Route("GET", "/api/exchanges/{vhost}/{name}", get_exchange),
    Route("PUT", "/api/exchanges/{vhost}/{name}", put_exchange, mutates=True),
    Route("DELETE", "/api/exchanges/{vhost}/{name}", delete_exchange, mutates=True),
    Route("POST", "/api/exchanges/{vhost}/{name}/publish", publish, mutates=True),
    Route("GET", "/api/exchanges/{vhost}/{name}/bindings/source", source_bindings),
    Route("GET", "/api/exchanges/{vhost}/{name}/bindings/destination", destination_bindings),
]
