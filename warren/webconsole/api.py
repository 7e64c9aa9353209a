"""The management HTTP API: routing, authentication, CSRF, errors and list shaping.

Shaped like RabbitMQ's management plugin (``rabbit_mgmt_dispatcher`` / ``rabbit_mgmt_util``) so
rabbitmqadmin and scripts written against RabbitMQ work unchanged: same paths (vhost ``/`` is
``%2F``), same JSON field names, same status codes, errors as ``{"error": ..., "reason": ...}``.

The views live in ``warren/webconsole/resources/*.py``; each module exports ``ROUTES``, a list
of :class:`Route`. This module owns everything they share:

- one route table (method + path template -> view, and the management tag the view needs);
- HTTP basic auth against the broker's users. Bad or missing credentials: 401 with a
  ``WWW-Authenticate`` header. Authenticated but not allowed (no management tag, not an
  administrator, no access to the vhost, a refused permission): 403. RabbitMQ 3.x answers 401
  for both (its code carries a TODO to move to 403); we take the 403 it planned, so clients can
  tell "log in again" from "you may not";
- CSRF: a browser sends cached basic-auth credentials along with cross-site requests. A
  cross-site HTML form can only POST with a form content type, and anything else cross-site
  needs a CORS preflight we never grant. So a POST or PUT must carry a JSON content type or an
  ``X-Requested-With`` header, and any request whose ``Origin`` is not this host is refused.
  rabbitmqadmin and ``warren ctl`` send JSON, so they pass;
- the one place broker errors become HTTP statuses (``ERROR_STATUS``); nothing else leaks:
  an unexpected exception is logged and answered 500 with a generic body, never a traceback;
- an audit line for every state-changing request (who, method, path, status);
- RabbitMQ's list parameters: ``columns=a,b.c``, ``sort``, ``sort_reverse``, and pagination
  (``page``, ``page_size``, ``name``, ``use_regex``) answering RabbitMQ's paged object.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from twisted.internet import defer
from twisted.web import resource, server

from ..model.errors import (AccessRefused, BrokerError, NotAllowed, NotFound,
                             PreconditionFailed, ResourceLocked)
from ..broker.broker import Broker
from ..broker.stats import MessageStats
from ..broker.users import User
from ..broker.vhost import VirtualHost
from ..config import Config
from ..endpoint import is_loopback

log = logging.getLogger("warren.webconsole")
audit = logging.getLogger("warren.webconsole.audit")

MAX_BODY = 64 * 1024 * 1024
REALM = 'Basic realm="RabbitMQ Management"'


class ApiError(Exception):
    """An answer other than success: status, RabbitMQ's ``error`` word and a ``reason``
    (text, or the list an Erlang term becomes in RabbitMQ's JSON)."""

    def __init__(self, status: int, error: str, reason: str | list[Any],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = headers or {}


def not_found() -> ApiError:
    return ApiError(404, "Object Not Found", "Not Found")


def bad_request(reason: str) -> ApiError:
    return ApiError(400, "bad_request", reason)


def forbidden(reason: str) -> ApiError:
    return ApiError(403, "not_authorised", reason)


#: The one mapping of core errors to HTTP (RabbitMQ's management plugin maps AMQP errors
#: raised on its internal channel the same way).
ERROR_STATUS: dict[type, tuple[int, str]] = {
    NotFound: (404, "not_found"),
    AccessRefused: (403, "access_refused"),
    NotAllowed: (403, "not_allowed"),
    ResourceLocked: (405, "resource_locked"),
    PreconditionFailed: (400, "bad_request"),
}


def error_from_broker(e: BrokerError) -> ApiError:
    for cls in type(e).__mro__:
        if cls in ERROR_STATUS:
            status, word = ERROR_STATUS[cls]
            return ApiError(status, word, e.text)
    return ApiError(400, "bad_request", e.text)


@dataclass
class Call:
    """One API request as a view sees it."""

    broker: Broker
    config: Config
    site: ApiResource              # the stats sampler, the cluster name
    method: str
    path: str
    params: dict[str, str]         # path template values, already percent-decoded
    query: dict[str, str]
    body: Any                      # parsed JSON (dict/list) or None
    user: User | None
    peer: str
    request: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    # -- who may do what -----------------------------------------------------------------
    @property
    def login(self) -> User:
        """The user who made this call. Every route that needs a tag has one; an open route's
        view that asks anyway is answered as an unauthenticated request."""
        if self.user is None:
            raise ApiError(401, "not_authorized", "Not_Authorized", {"WWW-Authenticate": REALM})
        return self.user

    @property
    def is_admin(self) -> bool:
        return self.user is not None and "administrator" in self.user.tags

    @property
    def sees_all(self) -> bool:
        """monitoring and administrator see every vhost and every connection."""
        return self.user is not None and bool({"administrator", "monitoring"} & set(self.user.tags))

    def component_status(self, component: str, vhost: str | None = None
                         ) -> list[dict[str, Any]]:
        """The status entries of a runtime-parameter component that runs things (shovels,
        federation links), in the vhosts this user may see; ``[]`` when nobody registered it.
        The console asks the registry by name, so it imports no network code."""
        registered = self.broker.runtime_parameters.running(component)
        if registered is None:
            return []
        return [s for s in registered.status(vhost) if self.may_see_vhost(s["vhost"])]

    def may_see_vhost(self, name: str) -> bool:
        return self.sees_all or (self.login.name, name) in self.broker.permissions

    def visible_vhosts(self) -> list[VirtualHost]:
        return [vh for name, vh in sorted(self.broker.vhosts.items()) if self.may_see_vhost(name)]

    def vhost(self, name: str | None = None) -> VirtualHost:
        """The vhost named in the path: 404 when missing, 403 when this user has no access."""
        name = self.params["vhost"] if name is None else name
        vh = self.broker.vhosts.get(name)
        if vh is None:
            raise not_found()
        if not self.may_see_vhost(name):
            raise forbidden(f"User not authorised to access virtual host '{name}'")
        return vh

    def check(self, vhost: str, kind: str, resource_kind: str, name: str) -> None:
        self.broker.check(self.login, vhost, kind, resource_kind, name)

    # -- body fields ---------------------------------------------------------------------
    def obj(self) -> dict[str, Any]:
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise bad_request("payload must be a JSON object")
        return self.body

    def owns(self, info: dict[str, Any]) -> bool:
        return self.sees_all or info.get("user") == self.login.name


def _has(user: User | None, tag: str) -> bool:
    """RabbitMQ's tag hierarchy: administrator does everything; monitoring and policymaker
    each include management but not each other."""
    if user is None:
        return False
    tags = set(user.tags)
    if "administrator" in tags:
        return True
    if tag == "management":
        return bool(tags & {"management", "policymaker", "monitoring"})
    if tag == "policymaker":
        return "policymaker" in tags
    if tag == "monitoring":
        return "monitoring" in tags
    return False


# ---------------------------------------------------------------------------------- values
def as_bool(value: Any, name: str, default: bool | None = None) -> bool:
    """RabbitMQ accepts JSON booleans and the strings "true"/"false" (rabbitmqadmin sends those)."""
    if value is None:
        if default is None:
            raise bad_request(f"{name} is required")
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request(f"{name} must be a boolean, got {json.dumps(value)}")


def as_int(value: Any, name: str, default: int | None = None, *, minimum: int = 0) -> int:
    if value is None or value == "":
        if default is None:
            raise bad_request(f"{name} is required")
        return default
    if isinstance(value, bool):
        raise bad_request(f"{name} must be an integer, got {json.dumps(value)}")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be an integer, got {json.dumps(value)}") from None
    if isinstance(value, float) and value != n:
        raise bad_request(f"{name} must be an integer, got {json.dumps(value)}")
    if n < minimum:
        raise bad_request(f"{name} must be at least {minimum}")
    return n


def as_str(value: Any, name: str, default: str | None = None) -> str:
    if value is None:
        if default is None:
            raise bad_request(f"{name} is required")
        return default
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string, got {json.dumps(value)}")
    return value


def as_table(value: Any, name: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{name} must be a JSON object, got {json.dumps(value)}")
    return value


# ---------------------------------------------------------------------------------- routes
@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str                  # "/api/queues/{vhost}/{name}"
    view: Callable[[Call], Any]
    needs: str | None = "management"  # tag needed; None = no login (openapi, health probes)
    mutates: bool = False          # audit-logged and CSRF-checked (GET views never mutate)

    @property
    def parts(self) -> list[str]:
        return self.template.strip("/").split("/")


class RouteTable:
    """Routes by segment count, matched literal-first: a path with a literal where another has
    a parameter (``/api/users/bulk-delete``, ``/api/users/{name}``) belongs to the literal one
    for every method, as in RabbitMQ's dispatcher."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._by_len: dict[int, list[Route]] = {}
        for r in routes:
            self._by_len.setdefault(len(r.parts), []).append(r)
        for rs in self._by_len.values():
            rs.sort(key=lambda r: [p.startswith("{") for p in r.parts])

    def match(self, method: str, segments: list[str]) -> tuple[Route, dict[str, str]]:
        """The route and its parameters; 404 when no path matches, 405 when no method does."""
        allowed: list[str] = []
        owner: list[str] | None = None
        for r in self._by_len.get(len(segments), []):
            params = _bind(r.parts, segments)
            if params is None:
                continue
            if owner is None:
                owner = r.parts
            elif r.parts != owner:
                # the most literal path owns the request, as cowboy's first match does in
                # RabbitMQ: GET /api/users/bulk-delete is 405, not the user "bulk-delete"
                break
            if r.method == method or (method == "HEAD" and r.method == "GET"):
                return r, params
            allowed.append(r.method)
        if allowed:
            raise ApiError(405, "Method Not Allowed", "Method Not Allowed",
                           {"Allow": ", ".join(sorted(set(allowed)))})
        raise not_found()

    def __iter__(self):
        for rs in self._by_len.values():
            yield from rs


def _bind(parts: list[str], segments: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for p, s in zip(parts, segments):
        if p.startswith("{"):
            params[p[1:-1]] = s
        elif p != s:
            return None
    return params


# ---------------------------------------------------------------------------------- lists
def shape_list(call: Call, items: list[dict[str, Any]]) -> Any:
    """Apply RabbitMQ's list query parameters: filter, sort, paginate, then pick columns."""
    q = call.query
    total = len(items)
    name = q.get("name")
    if name:
        if q.get("use_regex", "false").lower() == "true":
            try:
                rx = re.compile(name)
            except re.error as e:
                raise bad_request(f"invalid regex in name: {e}") from None
            items = [i for i in items if rx.search(str(i.get("name", "")))]
        else:
            items = [i for i in items if name in str(i.get("name", ""))]
    sort = q.get("sort")
    if sort:
        items = sorted(items, key=lambda i: _sort_key(_dig(i, sort)),
                       reverse=q.get("sort_reverse", "false").lower() == "true")
    cols = [c for c in q.get("columns", "").split(",") if c]
    if "page" not in q:
        return [pick_columns(i, cols) for i in items] if cols else items
    page = as_int(q.get("page"), "page", minimum=1)
    size = as_int(q.get("page_size"), "page_size", 100, minimum=1)
    if size > 500:
        raise bad_request("page_size must be at most 500")
    filtered = len(items)
    page_count = max(1, -(-filtered // size))
    if page > page_count:
        raise bad_request(f"page {page} is beyond the last page {page_count}")
    window = items[(page - 1) * size: page * size]
    return {"filtered_count": filtered, "item_count": len(window),
            "items": [pick_columns(i, cols) for i in window] if cols else window,
            "page": page, "page_count": page_count, "page_size": size, "total_count": total}


def _sort_key(v: Any) -> tuple:
    if v is None:
        return (0, 0)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (1, v)
    return (2, str(v))


def _dig(item: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(item, dict):
            return None
        item = item.get(part)
    return item


def pick_columns(item: dict[str, Any], cols: list[str]) -> dict[str, Any]:
    """``columns=name,message_stats.publish`` keeps those keys, nested ones nested."""
    out: dict[str, Any] = {}
    for col in cols:
        parts = col.split(".")
        value = _dig(item, col)
        if value is None and not _has_path(item, parts):
            continue
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _has_path(item: Any, parts: list[str]) -> bool:
    for p in parts:
        if not isinstance(item, dict) or p not in item:
            return False
        item = item[p]
    return True


# ---------------------------------------------------------------------------------- resource
class ApiResource(resource.Resource):
    """``/api/...``: one leaf resource that routes by the table."""

    isLeaf = True

    def __init__(self, broker: Broker, config: Config, routes: Iterable[Route], *,
                 stats: MessageStats | None = None) -> None:
        super().__init__()
        self.broker = broker
        self.config = config
        self.routes = RouteTable(routes)
        self.stats = stats
        self.cluster_name = broker.node_name

    def render(self, request: server.Request) -> Any:
        call: Call | None = None
        route: Route | None = None
        try:
            method = request.method.decode("ascii", "replace")
            raw_path = request.path.decode("ascii", "replace")
            segments = [urllib.parse.unquote(s) for s in raw_path.strip("/").split("/")]
            if segments and segments[-1] == "" and len(segments) > 1:
                segments.pop()
            route, params = self.routes.match(method, segments)
            user = self._authenticate(request, route)
            if route.mutates:
                self._check_csrf(request)
            call = Call(self.broker, self.config, self, method, raw_path, params,
                        _query(request), self._body(request, route), user,
                        _peer_host(request), request)
            result = route.view(call)
        except ApiError as e:
            return self._error(request, e, route, call)
        except BrokerError as e:
            return self._error(request, error_from_broker(e), route, call)
        except Exception:
            log.exception("API %s %s failed", request.method, request.uri)
            return self._error(request, ApiError(500, "internal_error",
                                                 "internal error; see the broker log"),
                               route, call)
        if isinstance(result, defer.Deferred):
            result.addCallbacks(lambda r: self._finish(request, call, route, r),
                                lambda f: self._finish_failure(request, call, route, f))
            return server.NOT_DONE_YET
        return self._respond(request, call, route, result)

    # -- auth ----------------------------------------------------------------------------
    def _authenticate(self, request: server.Request, route: Route) -> User | None:
        header = request.getHeader("authorization")
        if route.needs is None and not header:
            return None
        if not header or not header.lower().startswith("basic "):
            raise ApiError(401, "not_authorized", "Not_Authorized",
                           {"WWW-Authenticate": REALM})
        try:
            username, _, password = base64.b64decode(header[6:].strip(),
                                                     validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ApiError(401, "not_authorized", "Not_Authorized",
                           {"WWW-Authenticate": REALM}) from None
        try:
            user = self.broker.authenticate(username, password,
                                            loopback=is_loopback(_peer_host(request)),
                                            peer=_peer_host(request), protocol="HTTP")
        except AccessRefused:
            raise ApiError(401, "not_authorized", "Login failed",
                           {"WWW-Authenticate": REALM}) from None
        if route.needs is not None and not _has(user, route.needs):
            raise forbidden("Not management user" if route.needs == "management"
                            else f"Not {route.needs} user")
        return user

    def _check_csrf(self, request: server.Request) -> None:
        origin = request.getHeader("origin")
        host = request.getHeader("host")
        if origin and origin != "null":
            netloc = urllib.parse.urlsplit(origin).netloc
            if not host or netloc.lower() != host.lower():
                raise forbidden("cross-origin request refused")
        elif origin == "null":
            raise forbidden("cross-origin request refused")
        if request.method in (b"POST", b"PUT"):
            ctype = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
            if ctype not in ("application/json", "") or (
                    ctype == "" and _content_length(request) > 0):
                if not request.getHeader("x-requested-with"):
                    raise ApiError(415, "unsupported_media_type",
                                   "state-changing requests must send application/json "
                                   "(or an X-Requested-With header)")

    def _body(self, request: server.Request, route: Route) -> Any:
        if _content_length(request) > MAX_BODY:
            raise ApiError(413, "payload_too_large", f"request body over {MAX_BODY} bytes")
        raw = request.content.read() if request.content is not None else b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request(f"payload not valid JSON: {e}") from None

    # -- answers -------------------------------------------------------------------------
    def _finish(self, request, call, route, result) -> None:
        if not request._disconnected:
            request.write(self._respond(request, call, route, result))
            request.finish()

    def _finish_failure(self, request, call, route, failure) -> None:
        e = failure.value
        if isinstance(e, ApiError):
            err = e
        elif isinstance(e, BrokerError):
            err = error_from_broker(e)
        else:
            log.error("API %s %s failed: %s", request.method, request.uri,
                      failure.getTraceback())
            err = ApiError(500, "internal_error", "internal error; see the broker log")
        if not request._disconnected:
            request.write(self._error(request, err, route, call))
            request.finish()

    def _respond(self, request, call: Call, route: Route, result: Any) -> bytes:
        try:
            if route.method == "GET" and isinstance(result, list):
                result = shape_list(call, result)
            elif route.method == "GET" and isinstance(result, dict) and call.query.get("columns"):
                result = pick_columns(result,
                                      [c for c in call.query["columns"].split(",") if c])
        except ApiError as e:
            return self._error(request, e, route, call)
        request.setResponseCode(call.status)
        for k, v in call.headers.items():
            request.setHeader(k, v)
        self._audit(route, call, call.status)
        if call.status == 204 or result is None:
            if call.status == 200:
                request.setResponseCode(204)
            return b""
        if isinstance(result, bytes):
            return result
        request.setHeader("content-type", "application/json")
        request.setHeader("cache-control", "no-cache")
        return json.dumps(result, default=_json_default).encode()

    def _error(self, request, e: ApiError, route: Route | None, call: Call | None) -> bytes:
        request.setResponseCode(e.status)
        for k, v in e.headers.items():
            request.setHeader(k, v)
        request.setHeader("content-type", "application/json")
        request.setHeader("cache-control", "no-cache")
        if route is not None and route.mutates:
            self._audit(route, call, e.status, request=request)
        return json.dumps({"error": e.error, "reason": e.reason}).encode()

    def _audit(self, route: Route, call: Call | None, status: int, request=None) -> None:
        if not route.mutates:
            return
        if call is not None:
            who = call.user.name if call.user else "-"
            audit.info("API %s %s by user '%s' from %s -> %d", call.method, call.path, who,
                       call.peer, status)
        elif request is not None:
            audit.info("API %s %s refused from %s -> %d", request.method.decode(),
                       request.path.decode("ascii", "replace"), _peer_host(request), status)


def _json_default(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, (set, tuple)):
        return list(v)
    return str(v)


def _query(request: server.Request) -> dict[str, str]:
    return {k.decode("utf-8", "replace"): v[-1].decode("utf-8", "replace")
            for k, v in (request.args or {}).items() if v}


def _content_length(request: server.Request) -> int:
    try:
        return int(request.getHeader("content-length") or 0)
    except ValueError:
        return 0


def _peer_host(request: server.Request) -> str:
    return getattr(request.getClientAddress(), "host", "") or ""
