"""/api/durable-subscriptions: JMS durable topic subscriptions, as ActiveMQ's console lists
its "Durable Topic Subscribers" (RabbitMQ has no such page; its management API shows the
queues underneath, which ``/api/queues`` still does). Rows come from the core
(``broker/subscriptions.py``), so the console imports no front end; a user sees the vhosts it
may see, as for queues.
"""

from __future__ import annotations

from typing import Any

from ...broker.subscriptions import durable_subscriptions
from ..api import Call, Route


def list_subscriptions(call: Call) -> list[dict[str, Any]]:
    vhs = [call.vhost()] if "vhost" in call.params else call.visible_vhosts()
    return durable_subscriptions(vhs)


ROUTES = [
    Route("GET", "/api/durable-subscriptions", list_subscriptions),
    Route("GET", "/api/durable-subscriptions/{vhost}", list_subscriptions),
]
