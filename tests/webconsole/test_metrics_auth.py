"""Optional authentication of /metrics (RabbitMQ's ``prometheus.authentication.enabled``):
with ``metrics_require_auth`` every /metrics endpoint wants HTTP Basic of a broker user."""

from __future__ import annotations

import pytest
import requests

from tests.broker_process import BrokerProcess

PATHS = ["/metrics", "/metrics/per-object",
         "/metrics/detailed?family=queue_coarse_metrics"]


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    proc = BrokerProcess(tmp_path_factory.mktemp("metrics-auth"),
                         env={"WARREN_METRICS_REQUIRE_AUTH": "true"})
    proc.start()
    yield proc
    proc.stop()


@pytest.mark.parametrize("path", PATHS)
def test_metrics_want_a_login_when_configured(locked, path):
    r = requests.get(locked.http_url + path, timeout=30)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(locked.http_url + path, auth=("guest", "nope"),
                        timeout=30).status_code == 401
    r = requests.get(locked.http_url + path, auth=("guest", "guest"), timeout=30)
    assert r.status_code == 200 and "rabbitmq_identity_info" in r.text


def test_metrics_are_open_by_default(broker):
    assert requests.get(broker.http_url + "/metrics", timeout=30).status_code == 200
