"""The pytest plugin, as a user's suite meets it: small suites run by ``pytester`` in a
subprocess that finds the plugin through the ``pytest11`` entry point pyproject.toml declares.

The entry point is given to that subprocess by a distribution's metadata in a private
directory on its ``PYTHONPATH`` (what ``pip install`` would write), so the test neither needs
warren installed nor installs it into the environment other suites run in.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]


def entry_point_site(site: Path) -> str:
    """``site`` holding a distribution with pyproject.toml's ``pytest11`` entry points, and
    the checkout: a PYTHONPATH on which pytest finds the plugin as if warren were installed."""
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "entry-points"]["pytest11"]
    dist = site / "warrenmq_plugin_probe-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: warrenmq-plugin-probe\n"
                                   "Version: 0\n")
    (dist / "entry_points.txt").write_text(
        "[pytest11]\n" + "".join(f"{name} = {module}\n" for name, module in entry_points.items()))
    return os.pathsep.join([str(site), str(ROOT)])


@pytest.fixture
def user_suite(pytester, monkeypatch, tmp_path_factory):
    """A pytester whose subprocess runs load the plugin only through the entry point, and
    whose ``tempfile`` directory (``user_suite.tmpdir_of_runs``) is theirs alone."""
    monkeypatch.setenv("PYTHONPATH", entry_point_site(tmp_path_factory.mktemp("site")))
    pytester.tmpdir_of_runs = tmp_path_factory.mktemp("tmpdir")
    monkeypatch.setenv("TMPDIR", str(pytester.tmpdir_of_runs))
    return pytester


def run(pytester, *args):
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=300)


USER_SUITE = '''
import json, queue, uuid
import kombu, paho.mqtt.client as mqtt, pika, pytest, stomp

SEEN = []


@pytest.fixture
def broker():
    """the suite's own fixture of that name: the plugin must not shadow it"""
    return "mine"


def test_own_broker_fixture_and_warren_broker_side_by_side(broker, warren_broker):
    assert broker == "mine"
    assert warren_broker.store == "sqlite"
    with open("session.json", "w") as f:
        json.dump({"pid": warren_broker.pid, "dir": warren_broker.data_dir}, f)


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_has_a_fresh_vhost(warren_vhost, run):
    conn = pika.BlockingConnection(pika.URLParameters(warren_vhost.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    declared = ch.queue_declare("jobs", durable=True)
    assert declared.method.message_count == 0   # the other run's message is not here
    ch.basic_publish("", "jobs", b"job", pika.BasicProperties(delivery_mode=2))
    conn.close()
    SEEN.append(warren_vhost.name)


def test_kombu_in_the_vhost(warren_vhost):
    with kombu.Connection(warren_vhost.amqp_url) as conn:
        q = conn.SimpleQueue("kombu-jobs")
        q.put({"n": 1})
        assert q.get(timeout=30).payload == {"n": 1}
        q.close()
    SEEN.append(warren_vhost.name)


def test_stomp_in_the_vhost(warren_vhost):
    got = queue.Queue()

    class Listener(stomp.ConnectionListener):
        def on_message(self, frame):
            got.put(frame.body)

    conn = stomp.Connection12([("127.0.0.1", warren_vhost.broker.stomp_port)],
                              vhost=warren_vhost.stomp_host)
    conn.set_listener("", Listener())
    conn.connect(warren_vhost.username, warren_vhost.password, wait=True)
    conn.subscribe("/queue/stomp-jobs", id="1")
    conn.send("/queue/stomp-jobs", "hi", receipt="r")
    assert got.get(timeout=30) == "hi"
    conn.disconnect()
    q = pika.BlockingConnection(pika.URLParameters(warren_vhost.amqp_url))
    assert q.channel().queue_declare("stomp-jobs", passive=True)   # it was in this vhost
    q.close()
    SEEN.append(warren_vhost.name)


def test_mqtt_in_the_vhost(warren_vhost):
    got = queue.Queue()
    acked = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uuid.uuid4().hex)
    c.username_pw_set(warren_vhost.mqtt_username, warren_vhost.password)
    c.on_message = lambda _c, _u, m: got.put(m.payload)
    c.on_subscribe = lambda *a: acked.put(True)
    c.connect("127.0.0.1", warren_vhost.broker.mqtt_port)
    c.loop_start()
    c.subscribe("sensors/+", qos=1)
    assert acked.get(timeout=30)
    c.publish("sensors/t1", b"21.5", qos=1).wait_for_publish(30)
    assert got.get(timeout=30) == b"21.5"
    # the subscription's queue is in this vhost (until the clean session ends)
    vhosts = {x["vhost"] for x in warren_vhost.broker.api().call("GET", "/api/queues")}
    assert warren_vhost.name in vhosts
    c.disconnect()
    c.loop_stop()
    SEEN.append(warren_vhost.name)


def test_a_test_may_delete_its_own_vhost(warren_vhost):
    warren_vhost.broker.delete_vhost(warren_vhost.name)
    SEEN.append(warren_vhost.name)


def test_zz_vhosts_of_earlier_tests_are_deleted(warren_broker):
    assert len(set(SEEN)) == 6
    assert set(warren_broker.vhosts()) == {"/"}
'''


def test_a_user_suite_gets_the_broker_and_fresh_vhosts_from_the_entry_point(user_suite):
    user_suite.makeini("[pytest]\nwarren_store = sqlite\n"
                       "warren_args = --max-message-size 100000\n")
    user_suite.makepyfile(test_user=USER_SUITE)
    result = run(user_suite, "-v")
    result.assert_outcomes(passed=8)
    # the session's broker is gone with its files once the session ended
    session = json.loads((user_suite.path / "session.json").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(session["pid"], 0)
    assert session["dir"].startswith(str(user_suite.tmpdir_of_runs))
    assert list(user_suite.tmpdir_of_runs.iterdir()) == []


def test_a_suite_that_asks_for_no_fixture_starts_no_broker(user_suite):
    user_suite.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = run(user_suite, "--setup-show", "--fixtures")
    assert "warren_broker [session scope]" in result.stdout.str()   # the plugin is loaded
    result = run(user_suite, "--setup-show")
    result.assert_outcomes(passed=1)
    assert "warren_broker" not in result.stdout.str()


def test_no_warren_turns_the_plugin_off(user_suite):
    user_suite.makepyfile(test_x="def test_x(warren_broker):\n    pass\n")
    result = run(user_suite, "-p", "no:warren")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'warren_broker' not found*"])


def test_an_unknown_store_is_a_setup_error_naming_the_choices(user_suite):
    user_suite.makeini("[pytest]\nwarren_store = mongodb\n")
    user_suite.makepyfile(test_x="def test_x(warren_vhost):\n    pass\n")
    result = run(user_suite)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*store 'mongodb': give one of journal, sqlite, memory*"])


def test_bad_warren_args_are_a_setup_error_with_the_brokers_reason(user_suite):
    user_suite.makeini("[pytest]\nwarren_args = --no-such-flag\n")
    user_suite.makepyfile(test_x="def test_x(warren_broker):\n    pass\n")
    result = run(user_suite)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unrecognized arguments: --no-such-flag*"])
    assert list(user_suite.tmpdir_of_runs.iterdir()) == []


def test_warren_own_suite_does_not_load_the_installed_plugin(tmp_path):
    env = dict(os.environ, PYTHONPATH=entry_point_site(tmp_path))

    def fixtures(*options):
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *options, "--fixtures",
             "tests/test_lint.py"],
            cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    assert "warren_broker" not in fixtures()                # pyproject's addopts block it
    assert "warren_broker" in fixtures("-o", "addopts=")    # which is all that keeps it out


def test_warren_own_suite_keeps_its_fixtures_with_the_plugin_loaded():
    """warren's own ``broker`` and ``unique`` fixtures win, and the plugin starts nothing."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "warren.pytest_plugin",
         "-n", "0", "--setup-show", "-q", "tests/test_refused_logins.py"],   # in one process:
        # the fixtures' set-up is shown by the process that runs the tests
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SETUP    M broker" in result.stdout
    assert "warren_broker" not in result.stdout


def test_the_readme_celery_example_passes(user_suite):
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"<!-- the README Celery example.*?-->\n```python\n(.*?)```", readme,
                        re.S).group(1)
    user_suite.makepyfile(test_tasks=example)
    result = run(user_suite)
    result.assert_outcomes(passed=1)
    assert list(user_suite.tmpdir_of_runs.iterdir()) == []
