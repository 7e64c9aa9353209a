"""The console's HTTP site: /api (management API), /metrics (Prometheus), / (the UI).

``make_site(broker, config, reactor)`` is what ``warren.server`` calls for the HTTP port. The
UI is static files under ``static/`` served as they are (no build step); the API and metrics
run in the broker's reactor thread and read the broker directly.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.web import pages, resource, server, static

from ..broker.stats import MessageStats
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
    overview,
    parameters,
    queues,
    shovels,
)

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")


def all_routes() -> list[Route]:
    routes: list[Route] = []
    for module in (overview, health, cluster, queues, exchanges, bindings, access, definitions,
                   parameters, shovels, federation):
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
        self.putChild(b"api", api_root)
        self.putChild(b"metrics", metrics)
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


#: Headers on every response: no framing by other sites (clickjacking), no content-type
#: sniffing, scripts and styles only from the console itself (its pages use no inline script),
#: no referrer leaking vhost or queue names.
SECURITY_HEADERS = (
    (b"Content-Security-Policy", b"default-src 'self'; script-src 'self'; style-src 'self'; "
                                 b"img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                                 b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"X-Frame-Options", b"DENY"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
)


class ConsoleRequest(server.Request):
    """A request whose response carries the security headers and names no server version."""

    def process(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.setHeader(name, value)
        super().process()

    def setHeader(self, name: Any, value: Any) -> None:
        if (name.lower() if isinstance(name, bytes) else name.lower().encode()) == b"server":
            value = b"warren"  # Twisted would announce "TwistedWeb/<version>"
        super().setHeader(name, value)


def make_site(broker: Any, config: Any, reactor: Any) -> server.Site:
    stats = MessageStats(broker)
    stats.start()
    routes = all_routes()
    api = ApiResource(broker, config, routes, stats=stats)
    openapi = json.dumps(openapi_document(routes)).encode()
    root = ConsoleRoot(ApiRoot(api, openapi), MetricsResource(broker, stats))
    site = server.Site(root, requestFactory=ConsoleRequest)
    site.displayTracebacks = False
    site.message_stats = stats
    return site
