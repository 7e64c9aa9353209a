"""The link against a real RabbitMQ, when one is at hand; skipped otherwise.

``WARREN_RABBITMQ_URL`` (an ``amqp://`` URI) names a running RabbitMQ. Without it, a locally
installed ``rabbitmq-server`` is started as a throw-away node on free ports and waited for by
its "Starting broker... completed" line. Neither is installed by the suite: the tests pass
without RabbitMQ and only say more when it is there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import threading

import pytest

from tests.broker_process import free_port
from tests.network.link_driver import body_for

SERVER = shutil.which("rabbitmq-server") or (
    "/usr/sbin/rabbitmq-server" if os.path.exists("/usr/sbin/rabbitmq-server") else None)


@pytest.fixture(scope="module")
def rabbitmq_url(tmp_path_factory):
    url = os.environ.get("WARREN_RABBITMQ_URL")
    if url:
        yield url
        return
    if SERVER is None:
        pytest.skip("no RabbitMQ: set WARREN_RABBITMQ_URL or install rabbitmq-server")
    base = tmp_path_factory.mktemp("rabbitmq")
    port, dist = free_port(), free_port()
    (base / "enabled_plugins").write_text("[].\n")
    env = dict(os.environ, RABBITMQ_NODE_PORT=str(port), RABBITMQ_DIST_PORT=str(dist),
               RABBITMQ_NODENAME=f"warren-test-{port}@localhost",
               RABBITMQ_MNESIA_BASE=str(base / "mnesia"), RABBITMQ_LOG_BASE=str(base / "log"),
               RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
               RABBITMQ_NODE_IP_ADDRESS="127.0.0.1")
    proc = subprocess.Popen([SERVER], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    started = threading.Event()
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "completed with" in line:
                started.set()
        started.set()

    threading.Thread(target=read, daemon=True).start()
    if not started.wait(120) or proc.poll() is not None:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.skip("rabbitmq-server did not start:\n" + "".join(lines[-30:]))
    yield f"amqp://guest:guest@127.0.0.1:{port}/%2F"
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_link_round_trip_with_rabbitmq(rabbitmq_url, unique, link_driver):
    link = link_driver(rabbitmq_url + "?frame_max=4096")
    link.event("ready")
    link.call("declare_queue", queue=unique)
    props = {"delivery_mode": 2, "headers": {"x-shovelled": {"src": "warren"}}}
    assert link.call("publish", routing_key=unique, count=20, size=10_000,
                     properties=props)["confirmed"] == 20
    got = link.call("consume", queue=unique, count=20)
    assert got["bodies"] == [hashlib.sha256(body_for(i, 10_000)).hexdigest()
                             for i in range(20)]
    assert got["properties"][0]["headers"] == props["headers"]
    link.call("close")


def test_wrong_password_with_rabbitmq(rabbitmq_url, link_driver):
    bad = rabbitmq_url.replace("guest:guest@", "guest:wrong@")
    link = link_driver(bad)
    line = link.event("state", reason=lambda r: "ACCESS_REFUSED" in (r or ""))
    assert "wrong" not in line["reason"]
