"""``warren ctl``: rabbitmqctl-style commands against a running broker's HTTP API.

Each command is one or two management-API calls (the API is RabbitMQ's, so the same calls work
against RabbitMQ; ``add_super_stream`` / ``delete_super_stream``, which RabbitMQ does with
``rabbitmq-streams``, use warren's own ``/api/super-streams``). Output is tab-separated like
rabbitmqctl's, so existing scripts keep parsing it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import urllib.parse
from typing import Any, Callable, Mapping

from .broker.topic_permissions import invalid_pattern


class ApiError(Exception):
    pass


class Api:
    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        # here, not at the top: ``warren run`` builds ctl's parser too, and urllib.request
        # (http.client, ssl, email) is a tenth of a second of every broker start
        import urllib.error
        import urllib.request
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("reason", detail)
            except ValueError:
                pass
            if e.code == 404:
                missing = missing_object(path)
                if missing:
                    raise ApiError(missing) from None
            raise ApiError(f"{e.code}: {detail}") from None
        except urllib.error.URLError as e:
            raise ApiError(f"cannot reach a broker at {self.url} ({e.reason}): is warren "
                           f"running there? Give its address with --url, --config FILE, "
                           f"WARREN_URL or WARREN_HTTP_PORT") from None
        return json.loads(raw) if raw else None


#: API collection -> (object kind, whether it lives in a vhost), for "not found" messages
_KINDS = {"queues": ("queue", True), "exchanges": ("exchange", True),
          "policies": ("policy", True), "vhosts": ("vhost", False), "users": ("user", False)}


def missing_object(path: str) -> str | None:
    """What a 404 of ``path`` means, named as rabbitmqctl names it:
    ``queue 'orders' not found in vhost '/'``; None when the path says nothing more."""
    parts = [urllib.parse.unquote(p) for p in path.split("?")[0].split("/")[2:]]
    if not parts:
        return None
    kind = parts[0]
    if kind == "parameters" and len(parts) >= 4:
        return (f"parameter '{parts[3]}' of component '{parts[1]}' not found in vhost "
                f"'{parts[2]}'")
    if kind in ("permissions", "topic-permissions") and len(parts) >= 3:
        return f"vhost '{parts[1]}' or user '{parts[2]}' not found"
    if kind not in _KINDS:
        return None
    name, in_vhost = _KINDS[kind]
    if in_vhost:
        if len(parts) == 2:
            return f"vhost '{parts[1]}' not found"
        if len(parts) >= 3:
            return f"{name} '{parts[2]}' not found in vhost '{parts[1]}'"
        return None
    return f"{name} '{parts[1]}' not found" if len(parts) >= 2 else None


def q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    print("\t".join(columns))
    for r in rows:
        print("\t".join(_cell(r.get(c, "")) for c in columns))


def _cell(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _vhost_path(args: argparse.Namespace, kind: str) -> str:
    return f"/api/{kind}/{q(args.vhost)}" if args.vhost else f"/api/{kind}"


def ctl_list_queues(api: Api, a: argparse.Namespace) -> None:
    cols = a.columns or ["name", "messages"]
    _table(api.call("GET", _vhost_path(a, "queues")), cols)


def ctl_list_exchanges(api: Api, a: argparse.Namespace) -> None:
    _table(api.call("GET", _vhost_path(a, "exchanges")), a.columns or ["name", "type"])


def ctl_list_bindings(api: Api, a: argparse.Namespace) -> None:
    _table(api.call("GET", _vhost_path(a, "bindings")),
           a.columns or ["source", "destination", "destination_type", "routing_key"])


def ctl_list_connections(api: Api, a: argparse.Namespace) -> None:
    _table(api.call("GET", "/api/connections"), a.columns or ["name", "user", "vhost", "state"])


def ctl_list_users(api: Api, a: argparse.Namespace) -> None:
    _table(api.call("GET", "/api/users"), ["name", "tags"])


def ctl_list_vhosts(api: Api, a: argparse.Namespace) -> None:
    _table(api.call("GET", "/api/vhosts"), ["name"])


def ctl_add_user(api: Api, a: argparse.Namespace) -> None:
    api.call("PUT", f"/api/users/{q(a.username)}", {"password": a.password, "tags": a.tags or ""})
    print(f'Adding user "{a.username}" ...')


def ctl_delete_user(api: Api, a: argparse.Namespace) -> None:
    api.call("DELETE", f"/api/users/{q(a.username)}")


def ctl_set_user_tags(api: Api, a: argparse.Namespace) -> None:
    user = api.call("GET", f"/api/users/{q(a.username)}")
    api.call("PUT", f"/api/users/{q(a.username)}",
             {"password_hash": user.get("password_hash", ""), "tags": ",".join(a.tags)})


def ctl_add_vhost(api: Api, a: argparse.Namespace) -> None:
    api.call("PUT", f"/api/vhosts/{q(a.name)}", {})
    print(f'Adding vhost "{a.name}" ...')


def ctl_delete_vhost(api: Api, a: argparse.Namespace) -> None:
    api.call("DELETE", f"/api/vhosts/{q(a.name)}")


def ctl_set_permissions(api: Api, a: argparse.Namespace) -> None:
    api.call("PUT", f"/api/permissions/{q(a.vhost or '/')}/{q(a.username)}",
             {"configure": a.configure, "write": a.write, "read": a.read})


def ctl_set_topic_permissions(api: Api, a: argparse.Namespace) -> None:
    """rabbitmqctl's ``set_topic_permissions [-p vhost] user exchange write read``.

    The patterns are checked here first: the API's refusal is RabbitMQ's JSON, which spells
    the message as character codes."""
    for pattern in (a.write, a.read):
        reason = invalid_pattern(pattern)
        if reason is not None:
            raise ApiError(f"invalid regular expression '{pattern}': {reason}")
    api.call("PUT", f"/api/topic-permissions/{q(a.vhost or '/')}/{q(a.username)}",
             {"exchange": a.exchange, "write": a.write, "read": a.read})
    print(f'Setting topic permissions on "{a.exchange}" for user "{a.username}" in vhost '
          f'"{a.vhost or "/"}" ...')


def ctl_clear_topic_permissions(api: Api, a: argparse.Namespace) -> None:
    """rabbitmqctl's ``clear_topic_permissions [-p vhost] user [exchange]``."""
    path = f"/api/topic-permissions/{q(a.vhost or '/')}/{q(a.username)}"
    api.call("DELETE", path + (f"/{q(a.exchange)}" if a.exchange else ""))


def ctl_list_topic_permissions(api: Api, a: argparse.Namespace) -> None:
    """rabbitmqctl's ``list_topic_permissions [-p vhost]``: the vhost's (default '/')."""
    _table(api.call("GET", f"/api/vhosts/{q(a.vhost or '/')}/topic-permissions"),
           ["user", "exchange", "write", "read"])


def ctl_purge_queue(api: Api, a: argparse.Namespace) -> None:
    api.call("DELETE", f"/api/queues/{q(a.vhost or '/')}/{q(a.queue)}/contents")


def ctl_delete_queue(api: Api, a: argparse.Namespace) -> None:
    api.call("DELETE", f"/api/queues/{q(a.vhost or '/')}/{q(a.queue)}")


def ctl_set_policy(api: Api, a: argparse.Namespace) -> None:
    try:
        definition = json.loads(a.definition)
    except ValueError as e:
        raise ApiError(f"policy definition is not valid JSON: {e}") from None
    api.call("PUT", f"/api/policies/{q(a.vhost or '/')}/{q(a.name)}",
             {"pattern": a.pattern, "definition": definition, "priority": a.priority,
              "apply-to": a.apply_to})


def ctl_clear_policy(api: Api, a: argparse.Namespace) -> None:
    api.call("DELETE", f"/api/policies/{q(a.vhost or '/')}/{q(a.name)}")


def ctl_list_policies(api: Api, a: argparse.Namespace) -> None:
    _table(api.call("GET", _vhost_path(a, "policies")),
           ["vhost", "name", "pattern", "apply-to", "definition", "priority"])


def ctl_set_parameter(api: Api, a: argparse.Namespace) -> None:
    """rabbitmqctl's ``set_parameter [-p vhost] component name value``, value in JSON."""
    try:
        value = json.loads(a.value)
    except ValueError as e:
        raise ApiError(f"JSON decoding error. Reason: {e}") from None
    vhost = a.vhost or "/"
    print(f'Setting runtime parameter "{a.name}" for component "{a.component}" to '
          f'"{a.value}" in vhost "{vhost}" ...')
    api.call("PUT", f"/api/parameters/{q(a.component)}/{q(vhost)}/{q(a.name)}",
             {"value": value})


def ctl_clear_parameter(api: Api, a: argparse.Namespace) -> None:
    vhost = a.vhost or "/"
    print(f'Clearing runtime parameter "{a.name}" for component "{a.component}" on vhost '
          f'"{vhost}" ...')
    api.call("DELETE", f"/api/parameters/{q(a.component)}/{q(vhost)}/{q(a.name)}")


def ctl_list_parameters(api: Api, a: argparse.Namespace) -> None:
    """The parameters of one vhost ('/' by default), as rabbitmqctl lists them."""
    vhost = a.vhost or "/"
    _table([p for p in api.call("GET", "/api/parameters") if p.get("vhost") == vhost],
           ["component", "name", "value"])


def _limits_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ApiError(f"JSON decoding error. Reason: {e}") from None
    if not isinstance(value, dict):
        raise ApiError("limits must be a JSON object")
    return value


def ctl_set_vhost_limits(api: Api, a: argparse.Namespace) -> None:
    """rabbitmqctl's ``set_vhost_limits [-p vhost] json``: the vhost's limits become these
    (the ``vhost-limits`` runtime parameter, replaced whole as RabbitMQ does)."""
    vhost = a.vhost or "/"
    limits = _limits_json(a.limits)
    print(f'Applying limits "{a.limits}" to vhost "{vhost}" ...')
    path = f"/api/parameters/vhost-limits/{q(vhost)}/limits"
    if limits:
        api.call("PUT", path, {"value": limits})
    else:
        ctl_clear_vhost_limits(api, a, announce=False)


def ctl_clear_vhost_limits(api: Api, a: argparse.Namespace, announce: bool = True) -> None:
    vhost = a.vhost or "/"
    if announce:
        print(f'Clearing vhost "{vhost}" limits ...')
    if api.call("GET", f"/api/vhost-limits/{q(vhost)}"):
        api.call("DELETE", f"/api/parameters/vhost-limits/{q(vhost)}/limits")


def ctl_list_vhost_limits(api: Api, a: argparse.Namespace) -> None:
    """One vhost's limits as JSON, or with ``--global`` every vhost that has some."""
    if a.all_vhosts:
        _table(api.call("GET", "/api/vhost-limits"), ["vhost", "value"])
        return
    rows = api.call("GET", f"/api/vhost-limits/{q(a.vhost or '/')}")
    print(json.dumps(rows[0]["value"] if rows else {}))


def ctl_set_user_limits(api: Api, a: argparse.Namespace) -> None:
    """rabbitmqctl's ``set_user_limits user json``: these limits are added to the user's."""
    limits = _limits_json(a.limits)
    print(f'Setting user limits to "{a.limits}" for user "{a.username}" ...')
    for name, value in limits.items():
        api.call("PUT", f"/api/user-limits/{q(a.username)}/{q(name)}", {"value": value})


def ctl_clear_user_limits(api: Api, a: argparse.Namespace) -> None:
    """``clear_user_limits user name``; ``all`` clears every limit of the user."""
    print(f'Clearing "{a.name}" limit for user "{a.username}" ...')
    api.call("DELETE", f"/api/user-limits/{q(a.username)}/{q(a.name)}")


def ctl_list_user_limits(api: Api, a: argparse.Namespace) -> None:
    if a.username:
        rows = api.call("GET", f"/api/user-limits/{q(a.username)}")
        print(json.dumps(rows[0]["value"] if rows else {}))
        return
    _table(api.call("GET", "/api/user-limits"), ["user", "value"])


#: rabbitmqctl's information units: SI ones are powers of 1000, the others of 1024
_UNITS = {"kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4,
          "k": 1024, "kib": 1024, "m": 1024 ** 2, "mib": 1024 ** 2, "g": 1024 ** 3,
          "gib": 1024 ** 3, "t": 1024 ** 4, "tib": 1024 ** 4}


def _bytes(text: str) -> int:
    """``50000000``, ``50MB``, ``1GiB``, ``512M``, as rabbitmqctl reads a memory amount."""
    number = text.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    unit = text[len(number):].lower()
    try:
        value = int(number)
    except ValueError:
        raise ApiError(f"invalid amount of memory: {text!r}") from None
    if unit and unit not in _UNITS:
        raise ApiError(f"invalid unit {text[len(number):]!r} in {text!r}")
    return value * _UNITS.get(unit, 1)


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ApiError(f"not a number: {text!r}") from None


#: ISO 8601 durations as ``rabbitmq-streams --max-age`` takes them (P5DT8H, PT10M30S)
_DURATION = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?"
                       r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")
#: seconds of each field, as rabbitmq-streams counts them (a year 365 days, a month 30)
_DURATION_SECONDS = (365 * 86400, 30 * 86400, 86400, 3600, 60, 1)


def _max_age(text: str) -> str:
    """An ISO 8601 duration as a stream's ``x-max-age`` in seconds (``PT10M`` -> ``600s``)."""
    m = _DURATION.fullmatch(text)
    if m is None or text in ("P", "PT") or text.endswith("T"):
        raise ApiError("Invalid value for --max-age, the value must a ISO 8601 duration, e.g. "
                       "e.g. PT10M30S for 10 minutes 30 seconds, P5DT8H for 5 days 8 hours.")
    seconds = sum(int(v or 0) * unit for v, unit in zip(m.groups(), _DURATION_SECONDS))
    return f"{seconds}s"


def ctl_add_super_stream(api: Api, a: argparse.Namespace) -> None:
    """``rabbitmq-streams add_super_stream <name> [--partitions N | --binding-keys a,b]``
    with the partitions' retention: the exchange, partition streams and bindings."""
    if a.partitions is not None and a.binding_keys is not None:
        raise ApiError("Specify --partitions or --binding-keys, not both.")
    body: dict[str, Any] = {}
    if a.binding_keys is not None:
        body["binding-keys"] = [k.strip() for k in a.binding_keys.split(",")]
    else:
        try:
            body["partitions"] = int(a.partitions or 3)
        except ValueError:
            raise ApiError(f"--partitions is not a number: {a.partitions!r}") from None
        if body["partitions"] < 1:
            raise ApiError("The partition number must be greater than 0")
    # one node: a leader locator and a cluster size change nothing, but scripts written for
    # rabbitmq-streams pass them, and get its refusals for bad values
    if a.leader_locator is not None and a.leader_locator not in (
            "client-local", "balanced", "random", "least-leaders"):
        raise ApiError("Invalid value for --leader-locator, valid values are client-local, "
                       "balanced.")
    if a.initial_cluster_size is not None:
        try:
            size = int(a.initial_cluster_size)
        except ValueError:
            raise ApiError("Invalid value for --initial-cluster-size, the value must be a "
                           "positive integer.") from None
        if size <= 0:
            raise ApiError("Invalid value for --initial-cluster-size, the value must be "
                           "positive.")
    arguments: dict[str, Any] = {}
    if a.max_length_bytes is not None:
        arguments["x-max-length-bytes"] = _bytes(a.max_length_bytes)
    if a.max_age is not None:
        arguments["x-max-age"] = _max_age(a.max_age)
    if a.stream_max_segment_size_bytes is not None:
        arguments["x-stream-max-segment-size-bytes"] = _bytes(a.stream_max_segment_size_bytes)
    body["arguments"] = arguments
    api.call("PUT", f"/api/super-streams/{q(a.vhost or '/')}/{q(a.name)}", body)
    print(f"Super stream {a.name} has been created")


def ctl_delete_super_stream(api: Api, a: argparse.Namespace) -> None:
    """``rabbitmq-streams delete_super_stream <name>``: its exchange and partitions."""
    api.call("DELETE", f"/api/super-streams/{q(a.vhost or '/')}/{q(a.name)}")
    print(f"Super stream {a.name} has been deleted")


def ctl_set_disk_free_limit(api: Api, a: argparse.Namespace) -> None:
    """rabbitmqctl's ``set_disk_free_limit <bytes>`` or ``set_disk_free_limit mem_relative
    <fraction>``: the running broker's free-disk limit, the alarm checked at once."""
    args = a.limit
    if len(args) == 2 and args[0] == "mem_relative":
        body: dict[str, Any] = {"mem_relative": _fraction(args[1])}
    elif len(args) == 1:
        body = {"limit": _bytes(args[0])}
    else:
        raise ApiError("usage: set_disk_free_limit <disk_limit> | mem_relative <fraction>")
    node = api.call("GET", "/api/overview").get("node", "")
    print(f"Setting disk free limit on {node} to {' '.join(args)} bytes ...")
    api.call("PUT", f"/api/nodes/{q(node)}/disk-free-limit", body)


def ctl_set_vm_memory_high_watermark(api: Api, a: argparse.Namespace) -> None:
    """rabbitmqctl's ``set_vm_memory_high_watermark <fraction>`` or ``... absolute <bytes>``."""
    args = a.watermark
    if len(args) == 2 and args[0] == "absolute":
        body: dict[str, Any] = {"absolute": _bytes(args[1])}
    elif len(args) == 1:
        body = {"relative": _fraction(args[0])}
    else:
        raise ApiError("usage: set_vm_memory_high_watermark <fraction> | absolute <bytes>")
    node = api.call("GET", "/api/overview").get("node", "")
    print(f"Setting memory threshold on {node} to {' '.join(args)} ...")
    api.call("PUT", f"/api/nodes/{q(node)}/memory-high-watermark", body)


def ctl_federation_status(api: Api, a: argparse.Namespace) -> None:
    """rabbitmqctl's ``federation_status``: one row per link (``name`` is the exchange or
    queue), with the reason of a failed one."""
    links = api.call("GET", _vhost_path(a, "federation-links"))
    _table([{**x, "name": x.get("exchange", x.get("queue", "")),
             "upstream_name": x.get("upstream_exchange", x.get("upstream_queue", ""))}
            for x in links],
           ["type", "name", "vhost", "upstream", "upstream_name", "status", "uri",
            "timestamp", "error"])


def ctl_export_definitions(api: Api, a: argparse.Namespace) -> None:
    defs = api.call("GET", "/api/definitions")
    text = json.dumps(defs, indent=2)
    if a.file == "-":
        print(text)
    else:
        with open(a.file, "w") as f:
            f.write(text)


def ctl_import_definitions(api: Api, a: argparse.Namespace) -> None:
    with (sys.stdin if a.file == "-" else open(a.file)) as f:
        defs = json.load(f)
    api.call("POST", "/api/definitions", defs)


def ctl_move_messages(api: Api, a: argparse.Namespace) -> None:
    body = {"destination": a.destination}
    if a.count is not None:
        body["count"] = a.count
    result = api.call("POST", f"/api/queues/{q(a.vhost or '/')}/{q(a.source)}/actions/move",
                      body)
    print(f"moved {result.get('moved', 0) if isinstance(result, dict) else 0} messages")


def ctl_status(api: Api, a: argparse.Namespace) -> None:
    """Which broker this is: rabbitmqctl status's first lines, from /api/overview."""
    o = api.call("GET", "/api/overview")
    print(f"Status of node {o.get('node', '?')} ...")
    for key, value in (("url", api.url), ("node", o.get("node", "")),
                       ("product", f"{o.get('product_name', '')} {o.get('product_version', '')}"
                                   .strip()),
                       ("ha_role", o.get("ha_role", ""))):
        print(f"{key}\t{value}")


COMMANDS = {
    "status": (ctl_status, []),
    "list_queues": (ctl_list_queues, ["columns*"]),
    "list_exchanges": (ctl_list_exchanges, ["columns*"]),
    "list_bindings": (ctl_list_bindings, ["columns*"]),
    "list_connections": (ctl_list_connections, ["columns*"]),
    "list_users": (ctl_list_users, []),
    "list_vhosts": (ctl_list_vhosts, []),
    "list_policies": (ctl_list_policies, []),
    "add_user": (ctl_add_user, ["username", "password", "--tags"]),
    "delete_user": (ctl_delete_user, ["username"]),
    "set_user_tags": (ctl_set_user_tags, ["username", "tags*"]),
    "add_vhost": (ctl_add_vhost, ["name"]),
    "delete_vhost": (ctl_delete_vhost, ["name"]),
    "set_permissions": (ctl_set_permissions, ["username", "configure", "write", "read"]),
    "set_topic_permissions": (ctl_set_topic_permissions,
                              ["username", "exchange", "write", "read"]),
    "clear_topic_permissions": (ctl_clear_topic_permissions, ["username", "exchange?"]),
    "list_topic_permissions": (ctl_list_topic_permissions, []),
    "purge_queue": (ctl_purge_queue, ["queue"]),
    "delete_queue": (ctl_delete_queue, ["queue"]),
    "set_policy": (ctl_set_policy, ["name", "pattern", "definition", "--priority",
                                    "--apply-to"]),
    "clear_policy": (ctl_clear_policy, ["name"]),
    "set_parameter": (ctl_set_parameter, ["component", "name", "value"]),
    "clear_parameter": (ctl_clear_parameter, ["component", "name"]),
    "list_parameters": (ctl_list_parameters, []),
    "set_vhost_limits": (ctl_set_vhost_limits, ["limits"]),
    "clear_vhost_limits": (ctl_clear_vhost_limits, []),
    "list_vhost_limits": (ctl_list_vhost_limits, ["--global"]),
    "set_user_limits": (ctl_set_user_limits, ["username", "limits"]),
    "clear_user_limits": (ctl_clear_user_limits, ["username", "name"]),
    "list_user_limits": (ctl_list_user_limits, ["--user?"]),
    "set_disk_free_limit": (ctl_set_disk_free_limit, ["limit*"]),
    "set_vm_memory_high_watermark": (ctl_set_vm_memory_high_watermark, ["watermark*"]),
    "federation_status": (ctl_federation_status, []),
    "export_definitions": (ctl_export_definitions, ["file"]),
    "import_definitions": (ctl_import_definitions, ["file"]),
    "move_messages": (ctl_move_messages, ["source", "destination", "--count"]),
    "add_super_stream": (ctl_add_super_stream, [
        "name", "--partitions", "--binding-keys", "--max-length-bytes", "--max-age",
        "--stream-max-segment-size-bytes", "--leader-locator", "--initial-cluster-size"]),
    "delete_super_stream": (ctl_delete_super_stream, ["name"]),
}


def add_ctl_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ctl", help="control a running broker through its HTTP API")
    p.add_argument("--url", default=None,
                   help="the broker's HTTP API (default: from --config, else $WARREN_URL, "
                        "else http://localhost:$WARREN_HTTP_PORT, port 15672 by default)")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="the broker's TOML config file: its http_port and bind say where "
                        "its API is")
    # dests differ from the commands' own ``username``/``password`` positionals (add_user),
    # which would otherwise overwrite the login credentials
    p.add_argument("--user", "-u", dest="api_user",
                   default=os.environ.get("WARREN_USER", "guest"))
    p.add_argument("--password", "-p", dest="api_password",
                   default=os.environ.get("WARREN_PASSWORD", "guest"))
    p.add_argument("--vhost", "-V", default=None, help="virtual host (default: all / '/')")
    cmds = p.add_subparsers(dest="ctl_command", required=True)
    for name, (func, params) in COMMANDS.items():
        c = cmds.add_parser(name)
        # -V may also follow the command name, where rabbitmqctl users write -p
        c.add_argument("--vhost", "-V", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        for param in params:
            if param == "--user?":
                # rabbitmqctl's ``list_user_limits --user u`` (``--user`` before the command
                # is the API login)
                c.add_argument("--user", dest="username", default=None)
            elif param.endswith("*"):
                c.add_argument(param[:-1], nargs="*")
            elif param.endswith("?"):
                c.add_argument(param[:-1], nargs="?", default=None)
            elif param == "--priority":
                c.add_argument(param, type=int, default=0)
            elif param == "--count":
                c.add_argument(param, type=int, default=None)
            elif param == "--global":
                c.add_argument(param, dest="all_vhosts", action="store_true")
            elif param == "--apply-to":
                c.add_argument(param, default="all",
                               choices=["queues", "exchanges", "all", "classic_queues"])
            elif param.startswith("--"):
                c.add_argument(param)
            else:
                c.add_argument(param)
        c.set_defaults(func=_run_ctl(func), parser=c)


def broker_url(url: str | None, config: str | None,
               env: Mapping[str, str] | None = None) -> str:
    """Where ``warren ctl`` finds its broker: ``--url``, else ``--config FILE`` (its
    ``http_port`` and ``bind``, as ``warren run`` reads them with the WARREN_* variables),
    else ``WARREN_URL``, else ``WARREN_HTTP_PORT`` / ``WARREN_BIND``, else localhost:15672."""
    environ: Mapping[str, str] = os.environ if env is None else env
    if url:
        return url
    if not config and environ.get("WARREN_URL"):
        return environ["WARREN_URL"]
    from .config import load
    cfg = load(config, env=environ, warn=lambda _message: None)
    host = cfg.bind if cfg.bind not in ("", "0.0.0.0", "::") else "localhost"
    if ":" in host:
        host = f"[{host}]"
    if not cfg.http_port and cfg.https_port and cfg.tls_cert:
        return f"https://{host}:{cfg.https_port}"
    return f"http://{host}:{cfg.http_port}"


def _run_ctl(func: Callable[[Api, argparse.Namespace], object]
             ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from .config import ConfigError
        try:
            url = broker_url(args.url, args.config)
        except ConfigError as e:
            print(f"Error: {e}", file=sys.stderr)
            return 2
        api = Api(url, args.api_user, args.api_password)
        try:
            func(api, args)
        except ApiError as e:
            print(f"Error: {e}", file=sys.stderr)
            return 2
        return 0
    return run


def add_db_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="SQL store maintenance")
    cmds = p.add_subparsers(dest="db_command", required=True)
    up = cmds.add_parser("upgrade", help="run Alembic migrations to the newest schema")
    up.add_argument("--store-url", default=None)
    up.add_argument("--data-dir", default=None)
    up.add_argument("--config", default=None)

    def run(args: argparse.Namespace) -> int:
        from .config import ConfigError, load
        from .startup import StartupError, check_store_url
        try:
            cfg = load(args.config, overrides={"store_url": args.store_url,
                                               "data_dir": args.data_dir, "store": "sql"})
            check_store_url(cfg)
        except (ConfigError, StartupError) as error:
            print(f"Error: {error}", file=sys.stderr)
            return 2
        from .store.sql.migrate import upgrade
        os.makedirs(cfg.data_dir, exist_ok=True) if not cfg.store_url else None
        upgrade(cfg.sql_url)
        print(f"schema of {cfg.sql_url} is up to date")
        return 0
    up.set_defaults(func=run)
