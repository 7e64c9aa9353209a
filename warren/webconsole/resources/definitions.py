"""/api/definitions: export (GET) and import (POST) in RabbitMQ's format, whole broker
(administrator) or one vhost. The core work is ``warren.broker.definitions``."""

from __future__ import annotations

from typing import Any

from ...broker.definitions import export_definitions, import_definitions_sliced
from ..api import Call, Route


def export_all(call: Call) -> dict[str, Any]:
    return export_definitions(call.broker)


def export_vhost(call: Call) -> dict[str, Any]:
    return export_definitions(call.broker, call.vhost().name)


def import_all(call: Call) -> Any:
    done = import_definitions_sliced(call.broker, call.body)
    call.status = 204
    return done.addCallback(lambda _: call.broker.sync()).addCallback(lambda _: None)


def import_vhost(call: Call) -> Any:
    done = import_definitions_sliced(call.broker, call.body, call.vhost().name)
    call.status = 204
    return done.addCallback(lambda _: call.broker.sync()).addCallback(lambda _: None)


ROUTES = [
    Route("GET", "/api/definitions", export_all, "administrator"),
    # RabbitMQ's old name, still routed by 3.10 "to not break things gratuitously"
    Route("GET", "/api/all-configuration", export_all, "administrator"),
    Route("POST", "/api/all-configuration", import_all, "administrator", True),
    Route("POST", "/api/definitions", import_all, "administrator", True),
    Route("GET", "/api/definitions/{vhost}", export_vhost, "administrator"),
    Route("POST", "/api/definitions/{vhost}", import_vhost, "administrator", True),
]
