"""/api/vhost-limits and /api/user-limits, as RabbitMQ's ``rabbit_mgmt_wm_limits``.

Lists have one row per vhost (``{"vhost", "value"}``) or user (``{"user", "value"}``) that has
limits; a vhost's row is seen by whoever may see the vhost, users' rows by administrators.
``PUT .../{name}`` with ``{"value": N}`` sets one limit, ``DELETE`` clears it. What a limit
means and how it is checked is the core's (``broker/limits.py``).
"""

from __future__ import annotations

from typing import Any

from ...broker.users import User
from ..api import Call, Route, bad_request, not_found


def _value(call: Call) -> Any:
    body = call.obj()
    if "value" not in body:
        raise bad_request("[{key_missing,value}]")
    return body["value"]


# ---------------------------------------------------------------------------------- vhosts
def _vhost_rows(call: Call, vhosts: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for vh in vhosts:
        value = call.broker.limits.vhost_limits(vh.name)
        if value:
            rows.append({"vhost": vh.name, "value": value})
    return rows


def list_vhost_limits(call: Call) -> list[dict[str, Any]]:
    return _vhost_rows(call, call.visible_vhosts())


def get_vhost_limits(call: Call) -> list[dict[str, Any]]:
    return _vhost_rows(call, [call.vhost()])


def put_vhost_limit(call: Call) -> None:
    vh = call.vhost()
    call.broker.limits.set_vhost_limit(vh.name, call.params["name"], _value(call))
    call.status = 204


def delete_vhost_limit(call: Call) -> None:
    vh = call.vhost()
    call.broker.limits.clear_vhost_limit(vh.name, call.params["name"])
    call.status = 204


# ---------------------------------------------------------------------------------- users
def _user(call: Call) -> User:
    user = call.broker.users.get(call.params["user"])
    if user is None:
        raise not_found()
    return user


def list_user_limits(call: Call) -> list[dict[str, Any]]:
    return [{"user": name, "value": dict(u.limits)}
            for name, u in sorted(call.broker.users.items()) if u.limits]


def get_user_limits(call: Call) -> list[dict[str, Any]]:
    user = _user(call)
    return [{"user": user.name, "value": dict(user.limits)}] if user.limits else []


def put_user_limit(call: Call) -> None:
    call.broker.limits.set_user_limit(_user(call).name, call.params["name"], _value(call))
    call.status = 204


def delete_user_limit(call: Call) -> None:
    call.broker.limits.clear_user_limit(_user(call).name, call.params["name"])
    call.status = 204


ROUTES = [
    Route("GET", "/api/vhost-limits", list_vhost_limits),
    Route("GET", "/api/vhost-limits/{vhost}", get_vhost_limits),
    Route("PUT", "/api/vhost-limits/{vhost}/{name}", put_vhost_limit, "administrator", True),
    Route("DELETE", "/api/vhost-limits/{vhost}/{name}", delete_vhost_limit, "administrator",
          True),
    Route("GET", "/api/user-limits", list_user_limits, "administrator"),
    Route("GET", "/api/user-limits/{user}", get_user_limits, "administrator"),
    Route("PUT", "/api/user-limits/{user}/{name}", put_user_limit, "administrator", True),
    Route("DELETE", "/api/user-limits/{user}/{name}", delete_user_limit, "administrator",
          True),
]
