"""The OpenAPI 3.1 document of the API, served at /api/openapi.json.

Paths and methods come from the route table itself, so the document cannot list a path the
server lacks or miss one it has; the response schemas below describe the objects (RabbitMQ's
field names). Schemas are JSON Schema 2020-12 (OpenAPI 3.1) and name the fields every object
has, leaving ``additionalProperties`` open as RabbitMQ adds fields between versions. The tests
validate real responses against them.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

RATE = {"type": "object", "properties": {"rate": {"type": "number"}}, "required": ["rate"]}
STR, INT, BOOL, NUM = ({"type": "string"}, {"type": "integer"}, {"type": "boolean"},
                       {"type": "number"})
OBJ = {"type": "object"}
NSTR = {"type": ["string", "null"]}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": {**required, **(optional or {})},
            "required": sorted(required)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


SCHEMAS: dict[str, Any] = {
    # reason is a string, except where RabbitMQ answers an Erlang term (users/bulk-delete)
    "Error": _obj({"error": STR, "reason": {"type": ["string", "array"]}}),
    "Rate": RATE,
    "Queue": _obj({"name": STR, "vhost": STR, "durable": BOOL, "auto_delete": BOOL,
                   "exclusive": BOOL, "arguments": OBJ, "node": STR, "state": STR,
                   "type": STR, "messages": INT, "messages_ready": INT,
                   "messages_unacknowledged": INT, "consumers": INT, "memory": INT,
                   "message_bytes": INT, "message_stats": OBJ,
                   "messages_ready_details": RATE, "messages_redelivery_held": INT},
                  {"policy": NSTR, "delivery_limit": {"type": ["integer", "null"]},
                   "redelivery_back_off": {"type": ["object", "null"]}}),
    "Exchange": _obj({"name": STR, "vhost": STR, "type": STR, "durable": BOOL,
                      "auto_delete": BOOL, "internal": BOOL, "arguments": OBJ}),
    "Binding": _obj({"source": STR, "vhost": STR, "destination": STR,
                     "destination_type": {"enum": ["queue", "exchange"]}, "routing_key": STR,
                     "arguments": OBJ, "properties_key": STR}),
    "Vhost": _obj({"name": STR, "description": STR, "tags": {"type": "array", "items": STR},
                   "tracing": BOOL, "messages": INT, "messages_ready": INT,
                   "messages_unacknowledged": INT}, {"message_stats": OBJ}),
    "User": _obj({"name": STR, "password_hash": STR, "hashing_algorithm": STR,
                  "tags": {"type": "array", "items": STR}}),
    "Permission": _obj({"user": STR, "vhost": STR, "configure": STR, "write": STR,
                        "read": STR}),
    "TopicPermission": _obj({"user": STR, "vhost": STR, "exchange": STR, "write": STR,
                             "read": STR}),
    "Policy": _obj({"vhost": STR, "name": STR, "pattern": STR, "apply-to": STR,
                    "definition": OBJ, "priority": INT}),
    "Parameter": _obj({"value": {}, "vhost": STR, "component": STR, "name": STR}),
    "GlobalParameter": _obj({"name": STR, "value": {}}),
    "VhostLimits": _obj({"vhost": STR, "value": OBJ}),
    "UserLimits": _obj({"user": STR, "value": OBJ}),
    "Shovel": _obj({"name": STR, "vhost": STR, "type": STR, "state": STR, "node": STR,
                    "timestamp": STR},
                   {"reason": STR, "src_uri": STR, "dest_uri": STR, "src_protocol": STR,
                    "dest_protocol": STR, "src_queue": STR, "src_exchange": STR,
                    "src_exchange_key": STR, "dest_queue": STR, "dest_exchange": STR,
                    "dest_exchange_key": STR, "blocked_status": STR, "forwarded": INT,
                    "pending": INT, "remaining": INT, "remaining_unacked": INT}),
    "FederationLink": _obj({"node": STR, "vhost": STR, "id": STR, "type": STR,
                            "upstream": STR, "uri": STR, "status": STR, "timestamp": STR},
                           {"exchange": STR, "upstream_exchange": STR, "queue": STR,
                            "upstream_queue": STR, "consumer_tag": STR,
                            "local_connection": STR, "error": STR}),
    "NetworkConnector": _obj({"node": STR, "vhost": STR, "type": STR, "name": STR,
                              "uri": STR, "status": STR, "duplex": BOOL,
                              "network_ttl": INT, "forwarded_out": INT, "forwarded_in": INT,
                              "timestamp": STR},
                             {"peer": {"type": ["string", "null"]}, "error": STR,
                              "include": {"type": "array"}, "exclude": {"type": "array"},
                              "queues": {"type": "array"}, "conduit_subscriptions": BOOL}),
    "Whoami": _obj({"name": STR, "tags": {"type": "array", "items": STR}}),
    "Overview": _obj({"management_version": STR, "rabbitmq_version": STR,
                      "product_name": STR, "product_version": STR, "node": STR,
                      "cluster_name": STR, "message_stats": OBJ,
                      "queue_totals": _obj({"messages": INT, "messages_ready": INT,
                                            "messages_unacknowledged": INT}),
                      "object_totals": _obj({"channels": INT, "connections": INT,
                                             "consumers": INT, "exchanges": INT,
                                             "queues": INT}),
                      "listeners": {"type": "array", "items": _obj({
                          "node": STR, "protocol": STR, "ip_address": STR, "port": INT})},
                      "ha_role": STR}),
    "Node": _obj({"name": STR, "type": STR, "running": BOOL, "mem_used": INT,
                  "mem_limit": INT, "mem_alarm": BOOL, "disk_free": INT,
                  "disk_free_limit": INT, "disk_free_alarm": BOOL, "uptime": INT}),
    "Connection": _obj({"name": STR, "protocol": STR, "user": STR, "vhost": STR,
                        "peer_host": STR, "peer_port": INT, "state": STR},
                       {"channels": INT, "connected_at": INT, "recv_oct": INT,
                        "send_oct": INT, "client_properties": OBJ, "auth_mechanism": STR,
                        "ssl": BOOL, "ssl_protocol": NSTR, "peer_cert_subject": NSTR,
                        "peer_cert_issuer": NSTR, "peer_cert_validity": NSTR}),
    "Channel": _obj({"name": STR, "number": INT, "user": STR, "vhost": STR,
                     "connection_details": OBJ}, {"consumer_count": INT,
                                                  "messages_unacknowledged": INT,
                                                  "message_stats": OBJ}),
    "Consumer": _obj({"consumer_tag": STR, "queue": _obj({"name": STR, "vhost": STR}),
                      "ack_required": BOOL, "exclusive": BOOL}, {"prefetch_count": INT}),
    "Message": _obj({"payload_bytes": INT, "redelivered": BOOL, "exchange": STR,
                     "routing_key": STR, "message_count": INT, "properties": OBJ,
                     "payload": STR, "payload_encoding": {"enum": ["string", "base64"]}}),
    "Routed": _obj({"routed": BOOL}),
    "Moved": _obj({"moved": INT}),
    "Status": _obj({"status": STR}, {"reason": STR}),
    "ClusterName": _obj({"name": STR}),
    "Definitions": _obj({"rabbit_version": STR, "queues": {"type": "array"},
                         "exchanges": {"type": "array"}, "bindings": {"type": "array"},
                         "policies": {"type": "array"}},
                        {"users": {"type": "array"}, "vhosts": {"type": "array"},
                         "permissions": {"type": "array"}}),
}

#: (method, template) -> (status, schema) of success; lists get pagination as alternative
RESPONSES: dict[tuple[str, str], tuple[str, Any]] = {}


def _set(method: str, templates: Iterable[str], status: str, schema: Any) -> None:
    for t in templates:
        RESPONSES[(method, t)] = (status, schema)


_set("GET", ["/api/overview"], "200", _ref("Overview"))
_set("GET", ["/api/whoami"], "200", _ref("Whoami"))
_set("GET", ["/api/nodes"], "200", _list("Node"))
_set("GET", ["/api/nodes/{name}"], "200", _ref("Node"))
_set("GET", ["/api/queues", "/api/queues/{vhost}"], "200", _list("Queue"))
_set("GET", ["/api/queues/{vhost}/{name}"], "200", _ref("Queue"))
_set("GET", ["/api/exchanges", "/api/exchanges/{vhost}"], "200", _list("Exchange"))
_set("GET", ["/api/exchanges/{vhost}/{name}"], "200", _ref("Exchange"))
_set("GET", ["/api/bindings", "/api/bindings/{vhost}", "/api/queues/{vhost}/{name}/bindings",
             "/api/exchanges/{vhost}/{name}/bindings/source",
             "/api/exchanges/{vhost}/{name}/bindings/destination",
             "/api/bindings/{vhost}/e/{source}/q/{destination}",
             "/api/bindings/{vhost}/e/{source}/e/{destination}"], "200", _list("Binding"))
_set("GET", ["/api/bindings/{vhost}/e/{source}/q/{destination}/{props}",
             "/api/bindings/{vhost}/e/{source}/e/{destination}/{props}"], "200",
     _ref("Binding"))
_set("GET", ["/api/vhosts"], "200", _list("Vhost"))
_set("GET", ["/api/vhosts/{name}"], "200", _ref("Vhost"))
_set("GET", ["/api/users"], "200", _list("User"))
_set("GET", ["/api/users/{name}"], "200", _ref("User"))
_set("GET", ["/api/permissions", "/api/users/{name}/permissions",
             "/api/vhosts/{name}/permissions"], "200", _list("Permission"))
_set("GET", ["/api/permissions/{vhost}/{user}"], "200", _ref("Permission"))
_set("GET", ["/api/policies", "/api/policies/{vhost}"], "200", _list("Policy"))
_set("GET", ["/api/policies/{vhost}/{name}"], "200", _ref("Policy"))
_set("GET", ["/api/parameters", "/api/parameters/{component}",
             "/api/parameters/{component}/{vhost}"], "200", _list("Parameter"))
_set("GET", ["/api/parameters/{component}/{vhost}/{name}"], "200", _ref("Parameter"))
_set("GET", ["/api/global-parameters"], "200", _list("GlobalParameter"))
_set("GET", ["/api/vhost-limits", "/api/vhost-limits/{vhost}"], "200", _list("VhostLimits"))
_set("GET", ["/api/user-limits", "/api/user-limits/{user}"], "200", _list("UserLimits"))
_set("GET", ["/api/global-parameters/{name}"], "200", _ref("GlobalParameter"))
_set("GET", ["/api/shovels", "/api/shovels/{vhost}"], "200", _list("Shovel"))
_set("GET", ["/api/shovels/{vhost}/{name}"], "200", _ref("Shovel"))
_set("GET", ["/api/federation-links", "/api/federation-links/{vhost}"], "200",
     _list("FederationLink"))
_set("GET", ["/api/network-connectors"], "200", _list("NetworkConnector"))
_set("GET", ["/api/connections", "/api/vhosts/{vhost}/connections"], "200",
     _list("Connection"))
_set("GET", ["/api/connections/{name}"], "200", _ref("Connection"))
_set("GET", ["/api/connections/username/{username}"], "200", _list("Connection"))
_set("GET", ["/api/channels", "/api/vhosts/{vhost}/channels",
             "/api/connections/{name}/channels"], "200", _list("Channel"))
_set("GET", ["/api/channels/{name}"], "200", _ref("Channel"))
_set("GET", ["/api/consumers", "/api/consumers/{vhost}"], "200", _list("Consumer"))
_set("GET", ["/api/definitions", "/api/definitions/{vhost}", "/api/all-configuration"], "200",
     _ref("Definitions"))
_set("GET", ["/api/healthchecks/alarms", "/api/health/checks/alarms",
             "/api/health/checks/local-alarms", "/api/aliveness-test/{vhost}",
             "/api/healthchecks/node", "/api/healthchecks/node/{node}",
             "/api/health/checks/virtual-hosts", "/api/health/checks/node-is-quorum-critical",
             "/api/health/checks/node-is-mirror-sync-critical",
             "/api/health/checks/certificate-expiration/{within}/{unit}"], "200",
     _ref("Status"))
_set("GET", ["/api/health/checks/port-listener/{port}"], "200",
     _obj({"status": STR, "port": INT}))
_set("GET", ["/api/health/checks/protocol-listener/{protocol}"], "200",
     _obj({"status": STR, "protocol": STR}))
_set("GET", ["/api/auth"], "200", _obj({"enable_uaa": BOOL}))
_set("GET", ["/api/feature-flags", "/api/operator-policies", "/api/operator-policies/{vhost}",
             "/api/vhost-limits", "/api/vhost-limits/{vhost}", "/api/user-limits",
             "/api/user-limits/{name}"],
     "200", {"type": "array"})
_set("GET", ["/api/topic-permissions", "/api/topic-permissions/{vhost}/{user}",
             "/api/topic-permissions/{vhost}/{user}/{exchange}",
             "/api/users/{name}/topic-permissions", "/api/vhosts/{vhost}/topic-permissions"],
     "200", _list("TopicPermission"))
_set("GET", ["/api/users/without-permissions"], "200", _list("User"))
_set("GET", ["/api/nodes/{name}/memory/relative"], "200", _obj({"memory": _obj({
    "total": INT, "binary": INT, "queue_procs": INT, "other_proc": INT})}))
_set("GET", ["/api/nodes/{name}/memory"], "200", _obj({"memory": _obj({
    "total": _obj({"erlang": INT, "rss": INT, "allocated": INT}), "strategy": STR,
    "binary": INT, "queue_procs": INT, "other_proc": INT})}))
_set("GET", ["/api/extensions"], "200", {"type": "array"})
_set("GET", ["/api/cluster-name"], "200", _ref("ClusterName"))
_set("POST", ["/api/queues/{vhost}/{name}/get"], "200", _list("Message"))
_set("POST", ["/api/exchanges/{vhost}/{name}/publish"], "200", _ref("Routed"))
_set("POST", ["/api/queues/{vhost}/{name}/actions/move"], "200", _ref("Moved"))
_set("GET", ["/api/openapi.json"], "200", OBJ)

ERROR = {"description": "RabbitMQ-style error", "content": {
    "application/json": {"schema": _ref("Error")}}}


def openapi_document(routes: Iterable[Any], server_url: str = "/") -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in routes:
        op: dict[str, Any] = {
            "operationId": f"{r.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', r.template.lower())}"
                           .strip("_"),
            "summary": (r.view.__doc__ or r.view.__name__).strip().splitlines()[0],
            "security": [] if r.needs is None else [{"basic": []}],
            "responses": {"401": ERROR, "403": ERROR, "404": ERROR, "400": ERROR},
        }
        answer = RESPONSES.get((r.method, r.template))
        if answer is not None:
            status, schema = answer
            if schema.get("type") == "array":
                schema = {"oneOf": [schema, _ref("Page")]}
            op["responses"][status] = {"description": "OK", "content": {
                "application/json": {"schema": schema}}}
        elif r.method in ("PUT", "POST"):
            op["responses"]["201"] = {"description": "Created"}
            op["responses"]["204"] = {"description": "Updated"}
        else:
            op["responses"]["204"] = {"description": "Done"}
        if r.method in ("PUT", "POST"):
            op["requestBody"] = {"required": False, "content": {
                "application/json": {"schema": OBJ}}}
        params = re.findall(r"{(\w+)}", r.template)
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True,
                                 "schema": STR} for p in params]
        if r.method == "GET" and answer is not None and answer[1].get("type") == "array":
            op.setdefault("parameters", []).extend(
                {"name": n, "in": "query", "required": False, "schema": s}
                for n, s in (("page", INT), ("page_size", INT), ("name", STR),
                             ("use_regex", BOOL), ("columns", STR), ("sort", STR),
                             ("sort_reverse", BOOL)))
        paths.setdefault(r.template, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "warren management API",
                 "version": "1", "description": "RabbitMQ management-API compatible HTTP API "
                 "of the warren broker. Vhost '/' is written %2F in paths."},
        "servers": [{"url": server_url}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {**SCHEMAS, "Page": _obj({
                "filtered_count": INT, "item_count": INT, "items": {"type": "array"},
                "page": INT, "page_count": INT, "page_size": INT, "total_count": INT})},
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        },
    }
