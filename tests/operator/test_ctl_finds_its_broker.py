"""``warren ctl`` talks to the broker it is pointed at, and names what it did not find.

Two brokers run on different HTTP ports; each way of pointing ctl at one (``--config``,
``WARREN_HTTP_PORT``, ``WARREN_URL``, ``--url``) must list that broker's queues and report
its node name, never the other broker's.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from tests.broker_process import BrokerProcess

from .test_startup_errors import ROOT


@pytest.fixture(scope="module")
def two_brokers(tmp_path_factory):
    brokers = []
    for name in ("one", "two"):
        b = BrokerProcess(tmp_path_factory.mktemp(name), extra_args=["--node-name",
                                                                     f"warren-{name}@localhost"])
        b.start()
        brokers.append(b)
        requests.put(f"{b.http_url}/api/queues/%2F/only-on-{name}", json={"durable": True},
                     auth=("guest", "guest"), timeout=30).raise_for_status()
    yield brokers
    for b in brokers:
        b.stop()
        b.kill()


def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WARREN_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "warren", "ctl", *args], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, timeout=60)


def assert_talks_to(result: subprocess.CompletedProcess, name: str, other: str) -> None:
    assert result.returncode == 0, result.stderr
    assert f"only-on-{name}" in result.stdout, result.stdout
    assert f"only-on-{other}" not in result.stdout, result.stdout


def test_config_file_names_the_broker(two_brokers, tmp_path):
    _one, two = two_brokers
    config = tmp_path / "warren.toml"
    config.write_text(f'[warren]\nbind = "127.0.0.1"\nhttp_port = {two.http_port}\n'
                      f'amqp_port = {two.amqp_port}\n')
    assert_talks_to(ctl("--config", str(config), "list_queues"), "two", "one")
    status = ctl("--config", str(config), "status")
    assert "node\twarren-two@localhost" in status.stdout, status.stdout
    assert f"url\thttp://127.0.0.1:{two.http_port}" in status.stdout


def test_config_file_wins_over_warren_url(two_brokers, tmp_path):
    one, two = two_brokers
    config = tmp_path / "warren.toml"
    config.write_text(f"http_port = {two.http_port}\n")
    result = ctl("--config", str(config), "list_queues", env={"WARREN_URL": one.http_url})
    assert_talks_to(result, "two", "one")


def test_warren_http_port(two_brokers):
    one, _two = two_brokers
    result = ctl("list_queues", env={"WARREN_HTTP_PORT": str(one.http_port)})
    assert_talks_to(result, "one", "two")


def test_warren_url_and_url_flag(two_brokers):
    one, two = two_brokers
    assert_talks_to(ctl("list_queues", env={"WARREN_URL": two.http_url}), "two", "one")
    assert_talks_to(ctl("--url", one.http_url, "list_queues",
                        env={"WARREN_URL": two.http_url}), "one", "two")


def test_not_found_names_the_object(two_brokers):
    one, _two = two_brokers
    url = ["--url", one.http_url]
    cases = [
        (["delete_queue", "orders"], "queue 'orders' not found in vhost '/'"),
        (["-V", "/", "purge_queue", "orders"], "queue 'orders' not found in vhost '/'"),
        (["delete_user", "alice"], "user 'alice' not found"),
        (["delete_vhost", "nowhere"], "vhost 'nowhere' not found"),
        (["-V", "nowhere", "list_queues"], "vhost 'nowhere' not found"),
        (["clear_policy", "dlx"], "policy 'dlx' not found in vhost '/'"),
    ]
    for args, expected in cases:
        result = ctl(*url, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.strip() == f"Error: {expected}", (args, result.stderr)


def test_no_broker_there_says_how_to_point_ctl(tmp_path):
    from tests.broker_process import free_port
    port = free_port()
    result = ctl("list_queues", env={"WARREN_HTTP_PORT": str(port)})
    assert result.returncode == 2
    assert f"cannot reach a broker at http://localhost:{port}" in result.stderr
    assert "--config" in result.stderr and "WARREN_URL" in result.stderr


def test_bad_config_file_is_one_line(tmp_path):
    config = tmp_path / "warren.toml"
    config.write_text("http_port = 'x'\n")
    result = ctl("--config", str(config), "list_queues")
    assert result.returncode == 2
    assert result.stderr.strip() == (f'Error: http_port = "x" in {config}: not a whole number: '
                                     f"give a whole number (default 15672)")
