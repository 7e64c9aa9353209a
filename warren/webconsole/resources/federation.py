"""/api/federation-links, as RabbitMQ's federation management plugin answers it
(``rabbit_federation_mgmt``): one entry per link with ``rabbit_federation_status``'s fields.

The links live in the ``federation-upstream`` runtime-parameter component (registered by the
network package); the console asks it by name and imports no network code. Users see the
links of the vhosts they may see; a vhost that does not exist is 404.
``/api/network-connectors`` lists the config file's ActiveMQ-style connectors the same way
(component ``network-connector``).
"""

from __future__ import annotations

from typing import Any

from ..api import Call, Route

COMPONENT = "federation-upstream"
CONNECTORS = "network-connector"


def _status(call: Call, vhost: str | None = None) -> list[dict[str, Any]]:
    return call.component_status(COMPONENT, vhost)


def list_all(call: Call) -> list[dict[str, Any]]:
    """Every federation link this user may see, with its status."""
    return _status(call)


def list_vhost(call: Call) -> list[dict[str, Any]]:
    """The federation links of one vhost."""
    return _status(call, call.vhost().name)


def connectors(call: Call) -> list[dict[str, Any]]:
    """The ActiveMQ-style network connectors of the config file (``type`` ``connector``)."""
    return call.component_status(CONNECTORS)


ROUTES = [
    Route("GET", "/api/federation-links", list_all, "monitoring"),
    Route("GET", "/api/federation-links/{vhost}", list_vhost, "monitoring"),
    Route("GET", "/api/network-connectors", connectors, "monitoring"),
]
