"""What the HTTP port serves while this broker is not master: its role and the lock holder.

A slave has no broker to show (its store belongs to the master), but operators used to the
RabbitMQ console expect the port to answer, and monitoring wants ``warren_ha_role``. So while
waiting the HTTP port serves:

- ``GET /api/overview``: ``{"node", "ha_role": "slave"|"waiting", "ha_lock_holder",
  "ha_lock"}``, the fields of the master's overview that make sense here;
- ``GET /metrics``: the ``warren_ha_role`` gauge (same family as the master's);
- anything else: 503 with a JSON body naming the master, so a client sees *why*.

No authentication: nothing here is more than what ``warren run`` logs (role, node name, the
lock holder's id). When this broker becomes master the real console replaces this on the same
port.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.web import resource, server

#: Roles the standby page and /metrics report (the master's collector knows the same names).
HA_ROLES = ("master", "slave", "waiting")


class StandbyResource(resource.Resource):
    isLeaf = True

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self.status = status

    def render_GET(self, request: Any) -> bytes:
        status = self.status()
        path = request.path.rstrip(b"/")
        if path == b"/api/overview":
            return self._json(request, 200, status)
        if path == b"/metrics":
            request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
            lines = ["# HELP warren_ha_role HA role of this broker (1 for the role it has)",
                     "# TYPE warren_ha_role gauge"]
            for role in sorted(set(HA_ROLES) | {status["ha_role"]}):
                value = 1 if role == status["ha_role"] else 0
                lines.append(f'warren_ha_role{{role="{role}"}} {value}')
            return ("\n".join(lines) + "\n").encode()
        holder = status.get("ha_lock_holder")
        return self._json(request, 503, {
            "error": "service_unavailable",
            "reason": f"this broker is {status['ha_role']}; the master is "
                      f"{holder or 'unknown'}"})

    def render_HEAD(self, request: Any) -> bytes:
        self.render_GET(request)
        return b""

    def render_POST(self, request: Any) -> bytes:
        return self._json(request, 503, {"error": "service_unavailable",
                                         "reason": "this broker is not master"})

    render_PUT = render_DELETE = render_POST

    @staticmethod
    def _json(request: Any, code: int, body: dict[str, Any]) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body).encode()


def make_standby_site(status: Callable[[], dict[str, Any]]) -> server.Site:
    site = server.Site(StandbyResource(status))
    site.displayTracebacks = False
    return site
