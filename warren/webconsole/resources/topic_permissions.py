"""/api/topic-permissions: RabbitMQ's topic authorisation, administrator only.

The shapes are RabbitMQ's (``rabbit_mgmt_wm_topic_permission(s)``):

- ``GET /api/topic-permissions`` lists every one as ``{user, vhost, exchange, write, read}``;
  ``/api/users/{name}/topic-permissions`` and ``/api/vhosts/{vhost}/topic-permissions`` those
  of a user or a vhost (404 for an unknown one).
- ``GET /api/topic-permissions/{vhost}/{user}`` is a *list* (one per exchange), 404 when the
  user has none there; ``PUT`` with ``{"exchange", "write", "read"}`` sets the one of that
  exchange (201 new, 204 replaced; 400 ``vhost_or_user_not_found``, RabbitMQ's
  ``[{key_missing,exchange}]`` for a missing field, ``["invalid_regexp", pattern, [message,
  offset]]`` for a pattern that does not compile, the message as character codes as RabbitMQ's
  JSON has it); ``DELETE`` clears them all, ``DELETE .../{exchange}`` only that one.

What they do is in ``warren/broker/topic_permissions.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..api import ApiError, Call, Route, bad_request, not_found


def list_all(call: Call) -> list[dict[str, Any]]:
    return [p.definition() for p in call.broker.topic_permissions.all()]


def list_of_user(call: Call) -> list[dict[str, Any]]:
    name = call.params["name"]
    if name not in call.broker.users:
        raise not_found()
    return [p.definition() for p in call.broker.topic_permissions.all(user=name)]


def list_of_vhost(call: Call) -> list[dict[str, Any]]:
    vhost = call.vhost().name
    return [p.definition() for p in call.broker.topic_permissions.all(vhost=vhost)]


def _user_vhost(call: Call) -> tuple[str, str]:
    """The path's user and vhost; 404 when either is unknown (RabbitMQ's not_found)."""
    user, vhost = call.params["user"], call.params["vhost"]
    if user not in call.broker.users or vhost not in call.broker.vhosts:
        raise not_found()
    return user, vhost


def get_one(call: Call) -> list[dict[str, Any]]:
    user, vhost = _user_vhost(call)
    found = call.broker.topic_permissions.all(user=user, vhost=vhost)
    if not found:
        raise not_found()
    return [p.definition() for p in found]


def put_one(call: Call) -> None:
    user, vhost = call.params["user"], call.params["vhost"]
    body = call.obj()
    if user not in call.broker.users or vhost not in call.broker.vhosts:
        raise bad_request("vhost_or_user_not_found")
    missing = [k for k in ("exchange", "write", "read") if k not in body]
    if missing:
        raise bad_request("[" + ",".join(f"{{key_missing,{k}}}" for k in missing) + "]")
    values = {}
    for k in ("exchange", "write", "read"):
        if not isinstance(body[k], str):
            raise bad_request(f"{k} must be a string, got {json.dumps(body[k])}")
        values[k] = body[k]
    for k in ("write", "read"):
        try:
            re.compile(values[k])
        except re.error as e:
            # RabbitMQ's {error, {invalid_regexp, Pattern, {Message, Offset}}} as its JSON
            # encoder writes it (checked against 3.10): the Erlang string message is a list of
            # character codes, e.g. ["invalid_regexp","(",[[109,105,...],1]]
            raise ApiError(400, "bad_request",
                           ["invalid_regexp", values[k], [[ord(c) for c in e.msg],
                                                          e.pos or 0]]) from None
    existed = values["exchange"] in (call.broker.topic_permissions.granted(user, vhost) or {})
    call.broker.set_topic_permissions(user, vhost, values["exchange"], values["write"],
                                      values["read"])
    call.status = 204 if existed else 201


def delete_all(call: Call) -> None:
    user, vhost = _user_vhost(call)
    if not call.broker.clear_topic_permissions(user, vhost):
        raise not_found()
    call.status = 204


def delete_exchange(call: Call) -> None:
    user, vhost = _user_vhost(call)
    if not call.broker.topic_permissions.granted(user, vhost):
        raise not_found()
    call.broker.clear_topic_permissions(user, vhost, call.params["exchange"])
    call.status = 204


ROUTES = [
    Route("GET", "/api/topic-permissions", list_all, "administrator"),
    Route("GET", "/api/topic-permissions/{vhost}/{user}", get_one, "administrator"),
    Route("PUT", "/api/topic-permissions/{vhost}/{user}", put_one, "administrator", True),
    Route("DELETE", "/api/topic-permissions/{vhost}/{user}", delete_all, "administrator", True),
    Route("GET", "/api/topic-permissions/{vhost}/{user}/{exchange}", get_one, "administrator"),
    Route("DELETE", "/api/topic-permissions/{vhost}/{user}/{exchange}", delete_exchange,
          "administrator", True),
    Route("GET", "/api/users/{name}/topic-permissions", list_of_user, "administrator"),
    Route("GET", "/api/vhosts/{vhost}/topic-permissions", list_of_vhost, "administrator"),
]
