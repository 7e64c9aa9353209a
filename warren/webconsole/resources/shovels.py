"""/api/shovels, as RabbitMQ's shovel management plugin answers it (``rabbit_shovel_mgmt``).

The status of each running shovel comes from the ``shovel`` runtime-parameter component
(registered by the network package); the console only asks it, by name, so it imports no
network code. Monitoring users (and administrators) see every vhost's shovels, others the
vhosts they may use; a vhost that does not exist is 404. ``DELETE
/api/shovels/vhost/{vhost}/{name}/restart`` restarts one shovel (204), 404 when no shovel of
that name runs.
"""

from __future__ import annotations

from typing import Any

from ..api import Call, Route, not_found

COMPONENT = "shovel"


def _component(call: Call) -> Any:
    return call.broker.runtime_parameters.component(COMPONENT)


def _status(call: Call, vhost: str | None = None) -> list[dict[str, Any]]:
    return call.component_status(COMPONENT, vhost)


def list_all(call: Call) -> list[dict[str, Any]]:
    """Every shovel this user may see, with its state."""
    return _status(call)


def list_vhost(call: Call) -> list[dict[str, Any]]:
    """The shovels of one vhost."""
    return _status(call, call.vhost().name)


def get_shovel(call: Call) -> dict[str, Any]:
    """One shovel's status (404 when none of that name runs)."""
    vh = call.vhost()
    for status in _status(call, vh.name):
        if status["name"] == call.params["name"]:
            return status
    raise not_found()


def restart(call: Call) -> None:
    """Stop and start one shovel again."""
    vh = call.vhost()
    component = _component(call)
    if component is None or not component.restart(vh.name, call.params["name"]):
        raise not_found()
    call.status = 204


ROUTES = [
    Route("GET", "/api/shovels", list_all, "monitoring"),
    Route("GET", "/api/shovels/{vhost}", list_vhost, "monitoring"),
    Route("GET", "/api/shovels/{vhost}/{name}", get_shovel, "monitoring"),
    Route("DELETE", "/api/shovels/vhost/{vhost}/{name}/restart", restart, "monitoring",
          mutates=True),
]
