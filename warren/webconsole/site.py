"""The console's HTTP site: /api (management API), /metrics (Prometheus), / (the UI).

``make_site(broker, config, reactor)`` is what ``warren.server`` calls for the HTTP port. The
UI is static files under ``static/`` served as they are (no build step); the API and metrics
run in the broker's reactor thread and read the broker directly.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, cast

from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http, pages, resource, server, static
from twisted.web.resource import IResource

from ..broker.broker import Broker
from ..broker.stats import MessageStats
from ..config import Config
from .api import ApiResource, Route
from .metrics import MetricsResource
from .openapi import openapi_document
from .resources import (
    access,
    bindings,
    cluster,
    definitions,
    exchanges,
    federation,
    health,
    limits,
    overview,
    parameters,
    queues,
    shovels,
    subscriptions,
    super_streams,
    topic_permissions,
    watermarks,
)

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")


def all_routes() -> list[Route]:
    routes: list[Route] = []
    for module in (overview, health, cluster, queues, exchanges, bindings, access,
                   topic_permissions, limits, definitions, parameters, shovels, federation,
                   subscriptions, super_streams, watermarks):
        routes.extend(module.ROUTES)
    return routes


class ApiRoot(resource.Resource):
    """``/api`` itself and ``/api/openapi.json``; everything else goes to the route table."""

    def __init__(self, api: ApiResource, openapi: bytes) -> None:
        super().__init__()
        self.api = api
        self.openapi = openapi

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        if path == b"openapi.json" and not request.postpath:
            return _JsonDocument(self.openapi)
        return self.api

    def render(self, request: Any) -> bytes:
        return self.api.render(request)


class _JsonDocument(resource.Resource):
    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def render_GET(self, request: Any) -> bytes:
        request.setHeader("content-type", "application/json")
        return self.body


class ConsoleRoot(resource.Resource):
    """/ serves the UI's index.html and its files; unknown names fall through to them."""

    def __init__(self, api_root: resource.Resource, metrics: resource.Resource) -> None:
        super().__init__()
        # the casts: mypy does not read zope's @implementer (a Resource is an IResource)
        self.putChild(b"api", cast(IResource, api_root))
        self.putChild(b"metrics", cast(IResource, metrics))
        self.files = static.File(STATIC_DIR) if os.path.isdir(STATIC_DIR) else None

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        if self.files is None:
            return pages.notFound("No Such Resource", "the console UI is not installed")
        if path == b"":
            # "/" itself: the UI's page (rendering the directory resource would redirect to "//")
            return self.files.getChild(b"index.html", request)
        return self.files.getChild(path, request)

    def render_GET(self, request: Any) -> Any:
        if self.files is None:
            request.setHeader("content-type", "text/plain")
            return b"warren management API: see /api/overview and /api/openapi.json\n"
        return self.files.render(request)


#: The Content-Security-Policy, with ``{connect}`` for where scripts may connect: the console
#: itself, and Web-STOMP's ports on the same host (the watch panel's WebSocket; ``'self'``
#: covers only the console's own port).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src {connect}; object-src 'none'; "
                           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

#: A Host header's name part as it may go into the policy: a DNS name, IPv4 or [IPv6] address
#: (anything else, e.g. a header trying to add sources, gets no WebSocket source at all).
_HOST_NAME = re.compile(rb"([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]+)?")


def content_security_policy(host_header: bytes | None,
                            websockets: tuple[tuple[str, int], ...]) -> bytes:
    """The policy for a request that came in with *host_header*; *websockets* are the
    (scheme, port) of the Web-STOMP listeners, e.g. ``(("ws", 15674),)``."""
    sources = ["'self'"]
    match = _HOST_NAME.fullmatch(host_header or b"")
    if match is not None:
        name = match.group(1).decode("ascii")
        sources.extend(f"{scheme}://{name}:{port}" for scheme, port in websockets)
    return CONTENT_SECURITY_POLICY.format(connect=" ".join(sources)).encode("ascii")


def web_stomp_sources(config: Config) -> tuple[tuple[str, int], ...]:
    """(scheme, port) of the Web-STOMP listeners this node runs (the TLS one only with a
    certificate, as server.py starts it)."""
    sources = []
    if getattr(config, "web_stomp_port", 0):
        sources.append(("ws", config.web_stomp_port))
    if (getattr(config, "web_stomp_tls_port", 0) and getattr(config, "tls_cert", "")
            and getattr(config, "tls_key", "")):
        sources.append(("wss", config.web_stomp_tls_port))
    return tuple(sources)


#: Headers on every response besides the CSP: no framing by other sites (clickjacking), no
#: content-type sniffing, no referrer leaking vhost or queue names. The CSP allows scripts and
#: styles only from the console itself (its pages use no inline script).
SECURITY_HEADERS = (
    (b"X-Frame-Options", b"DENY"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
)


class ConsoleRequest(server.Request):
    """A request whose response carries the security headers and names no server version."""

    def process(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.setHeader(name, value)
        site = getattr(self.channel, "site", None)
        self.setHeader(b"Content-Security-Policy", content_security_policy(
            self.getHeader(b"host"), getattr(site, "web_stomp_sources", ())))
        super().process()

    def setHeader(self, name: Any, value: Any) -> None:
        if (name.lower() if isinstance(name, bytes) else name.lower().encode()) == b"server":
            value = b"warren"  # Twisted would announce "TwistedWeb/<version>"
        super().setHeader(name, value)


class GuardedChannel(http.HTTPChannel):
    """An HTTP connection with a deadline for each request's line and headers.

    Twisted's ``timeOut`` is an idle timeout: a client that sends one byte every few seconds
    (slowloris) keeps its connection for ever. Here the clock starts when the connection opens
    and again when a response is done, and stops when a request's headers are complete; at the
    deadline the connection is closed. While waiting for a request the connection counts as
    idle in its site, which closes the oldest idle one past ``max_idle``.
    """

    _deadline = None
    #: set by the site that builds the channel (Site.buildProtocol)
    site: ConsoleSite
    #: a TCP or TLS transport: Twisted's zope interfaces carry no types mypy reads
    transport: Any

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.guard_idle(self)
        self._arm()

    _in_request = False

    def allHeadersReceived(self) -> None:
        self._disarm()
        self._in_request = True
        self.site.guard_busy(self)
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        self._in_request = False
        super().requestDone(request)   # may parse a pipelined request's headers at once
        if (not self._in_request and self.transport is not None
                and not self.transport.disconnecting):
            self.site.guard_idle(self)
            self._arm()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        self.site.guard_busy(self)
        super().connectionLost(reason)

    def _arm(self) -> None:
        self._disarm()
        timeout = self.site.request_timeout
        if timeout and timeout > 0:
            self._deadline = self.callLater(timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport is not None:
            # part of a request, not all of it in time: 408, then close. A connection that
            # sent nothing since its last response is closed without a word: a 408 there could
            # cross a request the client is just sending and be taken as its answer.
            if self.requests or getattr(self, "_buffer", None):   # a request line begun
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n"
                                     b"content-length: 0\r\n\r\n")
            self.transport.loseConnection()


class ConsoleSite(server.Site):
    """The console's Site: request deadlines and a bound on idle connections."""

    # Twisted types this slot as its HTTP/1.1-or-2 chooser; the console speaks HTTP/1.1 only
    protocol = GuardedChannel  # type: ignore[assignment]

    def __init__(self, root: resource.Resource, *, request_timeout: float = 30.0,
                 idle_timeout: float = 60.0, max_idle: int = 1000,
                 web_stomp_sources: tuple[tuple[str, int], ...] = (),
                 message_stats: MessageStats | None = None, **kw: Any) -> None:
        super().__init__(root, timeout=idle_timeout if idle_timeout > 0 else None, **kw)
        #: (scheme, port) of Web-STOMP's listeners, for the CSP's connect-src
        self.web_stomp_sources = web_stomp_sources
        #: the API's rate sampler, which the HA runner stops with the site
        self.message_stats = message_stats
        self.request_timeout = request_timeout
        self.max_idle = max_idle
        self._idle: dict[GuardedChannel, None] = {}   # insertion order: oldest first

    def guard_idle(self, channel: GuardedChannel) -> None:
        self._idle.pop(channel, None)
        self._idle[channel] = None
        while self.max_idle > 0 and len(self._idle) > self.max_idle:
            oldest = next(iter(self._idle))
            del self._idle[oldest]
            if oldest.transport is not None:
                oldest.transport.abortConnection()

    def guard_busy(self, channel: GuardedChannel) -> None:
        self._idle.pop(channel, None)

    @property
    def idle_connections(self) -> int:
        return len(self._idle)


def make_site(broker: Broker, config: Config, reactor: Any) -> server.Site:
    stats = MessageStats(broker)
    stats.start()
    routes = all_routes()
    api = ApiResource(broker, config, routes, stats=stats)
    openapi = json.dumps(openapi_document(routes)).encode()
    root = ConsoleRoot(ApiRoot(api, openapi), MetricsResource(
        broker, require_auth=bool(getattr(config, "metrics_require_auth", False))))
    site = ConsoleSite(root, requestFactory=ConsoleRequest,
                       request_timeout=getattr(config, "http_request_timeout", 30.0),
                       idle_timeout=getattr(config, "http_idle_timeout", 60.0),
                       max_idle=getattr(config, "http_max_idle_connections", 1000),
                       web_stomp_sources=web_stomp_sources(config), message_stats=stats)
    site.displayTracebacks = False
    return site
