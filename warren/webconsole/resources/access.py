"""/api/vhosts, /api/users, /api/permissions, /api/policies, /api/whoami.

Users, vhosts and permissions are the administrator's; policies are the policymaker's (in the
vhosts they may access); reading them follows RabbitMQ: a management user sees the vhosts it
has permissions in and its own permissions.
"""

from __future__ import annotations

from typing import Any

from ...model.errors import PreconditionFailed
from ...broker.stats import with_rates
from ...broker.users import HASHING_ALGORITHMS
from ...broker.vhost import VirtualHost
from ..api import (ApiError, Call, Route, as_int, as_str, as_table, bad_request, forbidden,
                   not_found)
from .parameters import escape_html_tags


# ---------------------------------------------------------------------------------- vhosts
def vhost_info(call: Call, vh: VirtualHost) -> dict[str, Any]:
    """A vhost with its depths and message_stats, and their rates, as RabbitMQ shows it."""
    ready = sum(q.message_count for q in vh.queues.values())
    unacked = sum(q.unacked for q in vh.queues.values())
    stats = call.site.stats
    depths = {"messages": ready + unacked, "messages_ready": ready,
              "messages_unacknowledged": unacked}
    return {"name": vh.name, "description": getattr(vh, "description", ""),
            "tags": list(getattr(vh, "tags", [])), "tracing": bool(vh.tracing),
            "default_queue_type": "classic",
            "metadata": {"description": getattr(vh, "description", ""),
                         "tags": list(getattr(vh, "tags", []))},
            **with_rates(depths, stats.depth_rates([vh.name]) if stats is not None else {}),
            "message_stats": stats.message_stats([vh.name]) if stats is not None else {},
            "cluster_state": {call.broker.node_name: "running"}}


def list_vhosts(call: Call) -> list[dict[str, Any]]:
    return [vhost_info(call, vh) for vh in call.visible_vhosts()]


def get_vhost(call: Call) -> dict[str, Any]:
    return vhost_info(call, call.vhost(call.params["name"]))


def put_vhost(call: Call) -> None:
    name = call.params["name"]
    body = call.obj()
    description = as_str(body.get("description"), "description", "")
    tags = body.get("tags", [])
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    elif not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise bad_request("tags must be a list of strings or a comma-separated string")
    if not name:
        raise bad_request("vhost name must not be empty")
    existed = name in call.broker.vhosts
    vh = call.broker.add_vhost(name, description=description, tags=tags)
    if not existed:
        # as RabbitMQ's maybe_grant_full_permissions: the creator may use what it created
        call.broker.set_permissions(call.login.name, name, ".*", ".*", ".*")
    if "tracing" in body:
        vh.tracing = bool(body["tracing"])
    call.status = 204 if existed else 201


def delete_vhost(call: Call) -> None:
    name = call.params["name"]
    if name not in call.broker.vhosts:
        raise not_found()
    call.broker.delete_vhost(name)
    call.status = 204


def vhost_permissions(call: Call) -> list[dict[str, Any]]:
    vh = call.vhost(call.params["name"])
    return [p.definition() for (u, v), p in sorted(call.broker.permissions.items())
            if v == vh.name and (call.is_admin or u == call.login.name)]


# ---------------------------------------------------------------------------------- users
def user_info(user: Any) -> dict[str, Any]:
    return {"name": user.name, "password_hash": user.password_hash,
            "hashing_algorithm": user.hashing_algorithm, "tags": list(user.tags),
            "limits": dict(user.limits)}


def list_users(call: Call) -> list[dict[str, Any]]:
    return [user_info(u) for _, u in sorted(call.broker.users.items())]


def get_user(call: Call) -> dict[str, Any]:
    user = call.broker.users.get(call.params["name"])
    if user is None:
        raise not_found()
    return user_info(user)


def put_user(call: Call) -> None:
    name = call.params["name"]
    body = call.obj()
    if not name:
        raise bad_request("user name must not be empty")
    tags = body.get("tags", "")
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    elif not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise bad_request("tags must be a comma-separated string or a list of strings")
    existing = call.broker.users.get(name)
    algorithm = None
    if "password" in body:
        password = as_str(body["password"], "password")
        password_hash = None   # hashed by the broker with its configured module
        if not password:
            password_hash = ""
    elif "password_hash" in body:
        password_hash = as_str(body["password_hash"], "password_hash")
        algorithm = body.get("hashing_algorithm")
        if algorithm is not None and algorithm not in HASHING_ALGORITHMS:
            raise bad_request(f"unknown hashing_algorithm '{algorithm}'")
    elif existing is not None:
        password_hash = existing.password_hash
        algorithm = existing.hashing_algorithm
    else:
        raise bad_request("password or password_hash must be set")
    call.broker.add_user(name, body.get("password") if password_hash is None else None, tags,
                         password_hash=password_hash, hashing_algorithm=algorithm)
    call.status = 204 if existing is not None else 201


def delete_user(call: Call) -> None:
    name = call.params["name"]
    if name not in call.broker.users:
        raise not_found()
    call.broker.delete_user(name)
    call.status = 204


def bulk_delete_users(call: Call) -> None:
    """Delete the users named in ``{"users": [...]}`` (rabbit_mgmt_wm_users_bulk_delete).

    As RabbitMQ: the users are deleted in order and the first unknown name stops it with 400
    ``["no_such_user", name]`` (those before it stay deleted); no ``users`` key is 400
    ``[{key_missing,users}]``.
    """
    body = call.obj()
    if "users" not in body:
        raise bad_request("[{key_missing,users}]")
    users = body["users"]
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise bad_request("users must be a list of user names")
    for name in users:
        if name not in call.broker.users:
            raise ApiError(400, "bad_request", ["no_such_user", name])
        call.broker.delete_user(name)
    call.status = 204


def users_without_permissions(call: Call) -> list[dict[str, Any]]:
    """Users with no permissions in any vhost."""
    granted = {u for u, _ in call.broker.permissions}
    return [user_info(u) for name, u in sorted(call.broker.users.items())
            if name not in granted]


def user_permissions(call: Call) -> list[dict[str, Any]]:
    name = call.params["name"]
    if name not in call.broker.users:
        raise not_found()
    return [p.definition() for (u, _), p in sorted(call.broker.permissions.items()) if u == name]


def whoami(call: Call) -> dict[str, Any]:
    return {"name": call.login.name, "tags": list(call.login.tags)}


# ---------------------------------------------------------------------------------- permissions
def list_permissions(call: Call) -> list[dict[str, Any]]:
    return [p.definition() for _, p in sorted(call.broker.permissions.items())]


def get_permission(call: Call) -> dict[str, Any]:
    p = call.broker.permissions.get((call.params["user"], call.params["vhost"]))
    if p is None:
        raise not_found()
    return p.definition()


def put_permission(call: Call) -> None:
    user, vhost = call.params["user"], call.params["vhost"]
    body = call.obj()
    if user not in call.broker.users or vhost not in call.broker.vhosts:
        raise bad_request("vhost_or_user_not_found")
    pats = {}
    for kind in ("configure", "write", "read"):
        pats[kind] = as_str(body.get(kind), kind)
        try:
            import re
            re.compile(pats[kind])
        except re.error as e:
            raise bad_request(f"invalid regex for {kind}: {e}") from None
    existed = (user, vhost) in call.broker.permissions
    call.broker.set_permissions(user, vhost, pats["configure"], pats["write"], pats["read"])
    call.status = 204 if existed else 201


def delete_permission(call: Call) -> None:
    key = (call.params["user"], call.params["vhost"])
    if key not in call.broker.permissions:
        raise not_found()
    call.broker.clear_permissions(*key)
    call.status = 204


# ---------------------------------------------------------------------------------- policies
def list_policies(call: Call) -> list[dict[str, Any]]:
    vhs = [call.vhost()] if "vhost" in call.params else call.visible_vhosts()
    return [p.as_json() for vh in vhs
            for _, p in sorted(call.broker.policies.get(vh.name, {}).items())]


def get_policy(call: Call) -> dict[str, Any]:
    vh = call.vhost()
    p = call.broker.policies.get(vh.name, {}).get(call.params["name"])
    if p is None:
        raise not_found()
    return p.as_json()


def put_policy(call: Call) -> None:
    vh = call.vhost()
    _may_change_policies(call, vh.name)
    body = call.obj()
    name = call.params["name"]
    pattern = as_str(body.get("pattern"), "pattern")
    definition = as_table(body.get("definition"), "definition")
    priority = as_int(body.get("priority"), "priority", 0, minimum=-2 ** 31)
    apply_to = as_str(body.get("apply-to"), "apply-to", "all")
    existed = name in call.broker.policies.get(vh.name, {})
    try:
        call.broker.set_policy(vh.name, name, pattern, definition, priority=priority,
                               apply_to=apply_to)
    except PreconditionFailed as e:
        # the texts show Erlang terms such as <<"5">>, escaped as RabbitMQ's API escapes them
        raise bad_request(escape_html_tags(e.text)) from None
    call.status = 204 if existed else 201


def delete_policy(call: Call) -> None:
    vh = call.vhost()
    _may_change_policies(call, vh.name)
    if call.params["name"] not in call.broker.policies.get(vh.name, {}):
        raise not_found()
    call.broker.clear_policy(vh.name, call.params["name"])
    call.status = 204


def _may_change_policies(call: Call, vhost: str) -> None:
    if call.is_admin:
        return
    if (call.login.name, vhost) not in call.broker.permissions:
        raise forbidden(f"User not authorised to access virtual host '{vhost}'")


ROUTES = [
    Route("GET", "/api/whoami", whoami),
    Route("GET", "/api/vhosts", list_vhosts),
    Route("GET", "/api/vhosts/{name}", get_vhost),
    Route("PUT", "/api/vhosts/{name}", put_vhost, "administrator", True),
    Route("DELETE", "/api/vhosts/{name}", delete_vhost, "administrator", True),
    Route("GET", "/api/vhosts/{name}/permissions", vhost_permissions),
    Route("GET", "/api/users", list_users, "administrator"),
    # literal paths before /api/users/{name} (the table also matches literals first)
    Route("POST", "/api/users/bulk-delete", bulk_delete_users, "administrator", True),
    Route("GET", "/api/users/without-permissions", users_without_permissions, "administrator"),
    Route("GET", "/api/users/{name}", get_user, "administrator"),
    Route("PUT", "/api/users/{name}", put_user, "administrator", True),
    Route("DELETE", "/api/users/{name}", delete_user, "administrator", True),
    Route("GET", "/api/users/{name}/permissions", user_permissions, "administrator"),
    Route("GET", "/api/permissions", list_permissions, "administrator"),
    Route("GET", "/api/permissions/{vhost}/{user}", get_permission, "administrator"),
    Route("PUT", "/api/permissions/{vhost}/{user}", put_permission, "administrator", True),
    Route("DELETE", "/api/permissions/{vhost}/{user}", delete_permission, "administrator",
          True),
    Route("GET", "/api/policies", list_policies, "policymaker"),
    Route("GET", "/api/policies/{vhost}", list_policies, "policymaker"),
    Route("GET", "/api/policies/{vhost}/{name}", get_policy, "policymaker"),
    Route("PUT", "/api/policies/{vhost}/{name}", put_policy, "policymaker", True),
    Route("DELETE", "/api/policies/{vhost}/{name}", delete_policy, "policymaker", True),
]
