"""/api/parameters and /api/global-parameters, as RabbitMQ's management plugin answers them.

The core is ``warren.broker.parameters``; this module only maps HTTP onto it, following
``rabbit_mgmt_wm_parameters`` / ``rabbit_mgmt_wm_parameter``:

- every method needs the policymaker tag (``is_authorized_policies``), administrators pass;
  lists show the vhosts the user may see; writing needs access to the vhost (403 otherwise);
- listing a component nobody registered answers ``[]`` (RabbitMQ lists its table, not its
  registry); a missing parameter or vhost is 404;
- PUT takes ``{"value": <any JSON>}`` (other keys, such as the ``component``/``vhost``/``name``
  a GET returned, are ignored) and answers 201 when created, 204 when it existed; a missing
  vhost is ``{"error": "not_found", "reason": "vhost_not_found"}``; a missing ``value`` is
  RabbitMQ's ``[{key_missing,value}]``; a refused value is 400 with the component's
  ``Validation failed`` text, HTML tags escaped as RabbitMQ escapes them (the console shows
  reasons, and a reason may quote the request);
- DELETE answers 204, or 404 when there is nothing to clear.

A PUT or DELETE is answered once the change is durable in the store (a broker killed right
after the answer still has it), as a definitions import is.

Global parameters (administrator only) are read-only: ``cluster_name`` is the one warren has.
"""

from __future__ import annotations

from typing import Any

from ...model.errors import PreconditionFailed
from ..api import ApiError, Call, Route, bad_request, forbidden, not_found


def _visible(call: Call, params: list[Any]) -> list[dict[str, Any]]:
    return [p.as_json() for p in params if call.may_see_vhost(p.vhost)]


def list_all(call: Call) -> list[dict[str, Any]]:
    """All runtime parameters in the vhosts this user may see."""
    return _visible(call, call.broker.runtime_parameters.list())


def list_component(call: Call) -> list[dict[str, Any]]:
    """The parameters of one component (``[]`` for a component nobody registered)."""
    return _visible(call, call.broker.runtime_parameters.list(
        component=call.params["component"]))


def list_component_vhost(call: Call) -> list[dict[str, Any]]:
    """The parameters of one component in one vhost."""
    vh = call.vhost()
    return [p.as_json() for p in call.broker.runtime_parameters.list(
        vhost=vh.name, component=call.params["component"])]


def get_parameter(call: Call) -> dict[str, Any]:
    """One runtime parameter."""
    vh = call.vhost()
    p = call.broker.runtime_parameters.lookup(vh.name, call.params["component"],
                                              call.params["name"])
    if p is None:
        raise not_found()
    return p.as_json()


def put_parameter(call: Call) -> Any:
    """Set a runtime parameter: 201 created, 204 updated, 400 when its component refuses it."""
    vhost = _writable_vhost(call)
    body = call.obj()
    if "value" not in body:
        raise bad_request("[{key_missing,value}]")
    try:
        created = call.broker.runtime_parameters.set(
            vhost, call.params["component"], call.params["name"], body["value"],
            user=call.user)
    except PreconditionFailed as e:
        raise bad_request(escape_html_tags(e.text)) from None
    call.status = 201 if created else 204
    return call.broker.sync().addCallback(lambda _: None)


def delete_parameter(call: Call) -> Any:
    """Clear a runtime parameter: 204, or 404 when it does not exist."""
    vhost = _writable_vhost(call)
    component, name = call.params["component"], call.params["name"]
    if call.broker.runtime_parameters.lookup(vhost, component, name) is None:
        raise not_found()
    call.broker.runtime_parameters.clear(vhost, component, name)
    call.status = 204
    return call.broker.sync().addCallback(lambda _: None)


def _writable_vhost(call: Call) -> str:
    vhost = call.params["vhost"]
    if vhost not in call.broker.vhosts:
        raise ApiError(404, "not_found", "vhost_not_found")
    if not call.is_admin and (call.login.name, vhost) not in call.broker.permissions:
        raise forbidden(f"User not authorised to access virtual host '{vhost}'")
    return vhost


def escape_html_tags(text: str) -> str:
    """RabbitMQ's ``rabbit_mgmt_format:escape_html_tags``: ``<``, ``>`` and ``&`` as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------------------------- global
def _globals(call: Call) -> list[dict[str, Any]]:
    return [{"name": "cluster_name", "value": call.site.cluster_name}]


def list_global(call: Call) -> list[dict[str, Any]]:
    """Global runtime parameters (read-only here: ``cluster_name``)."""
    return _globals(call)


def get_global(call: Call) -> dict[str, Any]:
    """One global runtime parameter."""
    for p in _globals(call):
        if p["name"] == call.params["name"]:
            return p
    raise not_found()


ROUTES = [
    Route("GET", "/api/parameters", list_all, "policymaker"),
    Route("GET", "/api/parameters/{component}", list_component, "policymaker"),
    Route("GET", "/api/parameters/{component}/{vhost}", list_component_vhost, "policymaker"),
    Route("GET", "/api/parameters/{component}/{vhost}/{name}", get_parameter, "policymaker"),
    Route("PUT", "/api/parameters/{component}/{vhost}/{name}", put_parameter, "policymaker",
          True),
    Route("DELETE", "/api/parameters/{component}/{vhost}/{name}", delete_parameter,
          "policymaker", True),
    Route("GET", "/api/global-parameters", list_global, "administrator"),
    Route("GET", "/api/global-parameters/{name}", get_global, "administrator"),
]
