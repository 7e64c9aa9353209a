"""Fixtures for the management API tests: a requests session logged in as guest, and
helpers to make users with given tags against the module's broker."""

from __future__ import annotations

import uuid

import pytest
import requests


class ApiClient:
    """requests with the base URL and JSON defaults; returns the raw Response."""

    def __init__(self, base: str, auth: tuple[str, str] | None = ("guest", "guest")) -> None:
        self.base = base
        self.session = requests.Session()
        if auth is not None:
            self.session.auth = auth

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.session.request(method, self.base + path, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def put(self, path: str, body=None, **kw) -> requests.Response:
        return self.request("PUT", path, json=body if body is not None else {}, **kw)

    def post(self, path: str, body=None, **kw) -> requests.Response:
        return self.request("POST", path, json=body if body is not None else {}, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.request("DELETE", path, **kw)


@pytest.fixture(scope="module")
def api(broker) -> ApiClient:
    return ApiClient(broker.http_url)


@pytest.fixture
def make_user(api, broker):
    """make_user(tags, vhost_perms=True) -> (name, password): a fresh user."""
    made = []

    def make(tags: str = "", perms: bool = True, vhost: str = "/") -> tuple[str, str]:
        name = f"u-{uuid.uuid4().hex[:8]}"
        password = "pw-" + name
        assert api.put(f"/api/users/{name}", {"password": password, "tags": tags}).status_code == 201
        if perms:
            r = api.put(f"/api/permissions/{requests.utils.quote(vhost, safe='')}/{name}",
                        {"configure": ".*", "write": ".*", "read": ".*"})
            assert r.status_code == 201, r.text
        made.append(name)
        return name, password

    yield make
    for name in made:
        api.delete(f"/api/users/{name}")
