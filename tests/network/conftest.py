"""The link under test runs in ``tests.network.link_driver``, a subprocess with its own reactor.

:class:`LinkDriverProcess` starts it, writes commands and waits for the JSON lines it prints:
``wait_for`` blocks on a condition variable fed by a reader thread, so tests await events
rather than sleep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class LinkDriverProcess:
    def __init__(self, *uris: str, reconnect_delay: float = 0.1) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.network.link_driver",
             "--reconnect-delay", str(reconnect_delay), *uris],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env)
        self.lines: list[dict] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(json.loads(line))
                self._cond.notify_all()
        with self._cond:
            self.lines.append({"event": "exit"})
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def wait_for(self, pred: Callable[[dict], bool], timeout: float = 30.0,
                 start: int = 0) -> dict:
        """The first line at or after index ``start`` that satisfies ``pred``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    i += 1
                    if pred(line):
                        return line
                    if line.get("event") == "exit":
                        raise AssertionError("driver exited:\n" + self.log())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out; driver said:\n" + self.log())
                self._cond.wait(left)

    def event(self, name: str, timeout: float = 30.0, start: int = 0, **match) -> dict:
        return self.wait_for(lambda line: line.get("event") == name and all(
            match_value(line.get(k), v) for k, v in match.items()), timeout, start)

    def call(self, cmd: str, timeout: float = 60.0, **args) -> dict:
        start = self.send(cmd, **args)
        return self.wait_for(lambda line: line.get("reply") == cmd, timeout, start)

    def send(self, cmd: str, **args) -> int:
        """Send a command without waiting; returns the index to wait for its reply from."""
        start = self.mark()
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        return start

    def mark(self) -> int:
        """Index to start the next wait from (only lines printed after now)."""
        with self._cond:
            return len(self.lines)

    def log(self) -> str:
        return "\n".join([json.dumps(x) for x in self.lines[-40:]] + self.stderr[-40:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for reader in self._readers:
            reader.join(5)


def match_value(actual, expected) -> bool:
    if callable(expected):
        return bool(expected(actual))
    return actual == expected


@pytest.fixture
def link_driver():
    """``link_driver(*uris, reconnect_delay=…)`` starts a driver; all are stopped after."""
    started: list[LinkDriverProcess] = []

    def start(*uris: str, **kw) -> LinkDriverProcess:
        driver = LinkDriverProcess(*uris, **kw)
        started.append(driver)
        return driver

    yield start
    for driver in started:
        driver.stop()
    for driver in started:   # failures are state and reason, never a traceback in the log
        tracebacks = [line for line in driver.stderr
                      if "Traceback" in line or "Unhandled error" in line]
        assert not tracebacks, "\n".join(driver.stderr[-60:])


# the TLS tests' throw-away CA and localhost certificate, for the amqps link tests
from tests.tls.test_tls_listeners import pki  # noqa: F401


def pytest_terminal_summary(terminalreporter):
    """The fault tests' lost/duplicated counts (shovels by ack mode; federation and network
    connectors), one line per fault."""
    import sys
    shovels = sys.modules.get("tests.network.shovels")
    if shovels is not None and shovels.RESULTS:
        terminalreporter.section("network fault lost/duplicated counts")
        for line in shovels.RESULTS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def rabbitmq_node(tmp_path_factory):
    """A private RabbitMQ node (installed first when missing), shared by the session's tests."""
    from tests.network.rabbitmq import RabbitNode
    node = RabbitNode(tmp_path_factory.mktemp("rabbitmq"))
    node.start()
    yield node
    node.stop()
