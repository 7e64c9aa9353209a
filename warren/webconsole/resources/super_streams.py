"""/api/super-streams: make, show and delete a super stream (``warren ctl add_super_stream``).

RabbitMQ's management API has no such resource (``rabbitmq-streams add_super_stream`` calls
the node directly); warren's ``ctl`` speaks only HTTP, so this is where it makes one, through
the same ``stream/super_streams.py`` the Stream protocol's ``create_super_stream`` uses: the
same checks and texts, the same exchange, partitions and bindings.
"""

from __future__ import annotations

from typing import Any

from ...stream import super_streams
from ..api import Call, Route, as_int, as_table, bad_request


def put_super_stream(call: Call) -> None:
    """Body: ``partitions`` (a count: ``<name>-0`` ... bound with ``0`` ...) or
    ``binding-keys`` (``<name>-<key>`` bound with ``<key>``), and the partitions'
    ``arguments`` (``x-max-length-bytes``, ``x-max-age``, ...)."""
    vh = call.vhost()
    name = call.params["name"]
    body = call.obj()
    keys = body.get("binding-keys")
    if keys is not None and "partitions" in body:
        raise bad_request("Specify --partitions or --binding-keys, not both.")
    if keys is None:
        count = as_int(body.get("partitions"), "partitions", 3, minimum=1)
        keys = [str(i) for i in range(count)]
    elif not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise bad_request("binding-keys must be a non-empty list of strings")
    arguments = as_table(body.get("arguments"), "arguments")
    partitions = [f"{name}-{key}" for key in keys]
    super_streams.check_manage(call.broker, call.user, vh.name, name, partitions)
    super_streams.create(vh, name, partitions, keys, arguments)
    call.status = 201


def get_super_stream(call: Call) -> dict[str, Any]:
    vh = call.vhost()
    name = call.params["name"]
    return {"name": name, "vhost": vh.name,
            "partitions": super_streams.partitions(vh, name)}


def delete_super_stream(call: Call) -> None:
    vh = call.vhost()
    name = call.params["name"]
    partitions = super_streams.partitions(vh, name)
    super_streams.check_manage(call.broker, call.user, vh.name, name, partitions)
    super_streams.delete(vh, name, partitions)
    call.status = 204


ROUTES = [
    Route("GET", "/api/super-streams/{vhost}/{name}", get_super_stream),
    Route("PUT", "/api/super-streams/{vhost}/{name}", put_super_stream, mutates=True),
    Route("DELETE", "/api/super-streams/{vhost}/{name}", delete_super_stream, mutates=True),
]
