"""guest may use the API only from loopback, as RabbitMQ's loopback_users."""

from __future__ import annotations

import socket

import pytest
import requests

from tests.broker_process import BrokerProcess


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (the UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_guest_only_from_loopback(tmp_path):
    addr = non_loopback_address()
    if addr is None:
        pytest.skip("no non-loopback address on this machine")
    proc = BrokerProcess(tmp_path, store="memory", extra_args=["--bind", "0.0.0.0"])
    with proc:
        local = requests.get(proc.http_url + "/api/whoami", auth=("guest", "guest"), timeout=30)
        assert local.status_code == 200
        remote_url = f"http://{addr}:{proc.http_port}"
        r = requests.get(remote_url + "/api/whoami", auth=("guest", "guest"), timeout=30)
        assert r.status_code == 401 and r.json()["error"] == "not_authorized"
        requests.put(proc.http_url + "/api/users/ops", auth=("guest", "guest"), timeout=30,
                     json={"password": "pw", "tags": "administrator"})
        r = requests.get(remote_url + "/api/whoami", auth=("ops", "pw"), timeout=30)
        assert r.json() == {"name": "ops", "tags": ["administrator"]}
