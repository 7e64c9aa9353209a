"""``Broker``: a whole warren for one program or test session, started and stopped from Python.

ActiveMQ gives Java suites an embedded ``vm://`` broker; this is warren's equivalent for Python
suites that test pika, kombu, Celery, stomp.py or paho code against a real broker. It runs
``warren run`` in a subprocess (``process.BrokerProcess``, the one warren's own tests use):
Twisted's reactor is global and cannot be restarted, so a broker on a thread of the caller
would take the caller's reactor and could start only once per process. Every listener is on a
free port of 127.0.0.1, the store is in a temporary directory that ``stop()`` removes, and
``start()`` returns when the broker has said it is ready (its log line, not a sleep). The
broker is tied to the program (``tied.py``): if the program dies without ``stop()``, the broker
stops and removes its directory itself.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

import warren

from ..ctl import Api, ApiError, q
from .process import BrokerProcess

#: ``store=`` choice -> ``--store``: the SQL store without a URL is an SQLite file in the data
#: directory, so it is removed with it
STORES = {"journal": "journal", "sqlite": "sql", "memory": "memory"}

#: ``warren run`` flags the embedded broker sets itself, and why ``extra_args`` may not: given
#: twice, the caller's would win and the properties would name ports, a directory or a store
#: the broker does not use, or the ready line would never be logged
OWN_FLAGS = {
    "--data-dir": "its data directory is a temporary one that stop() removes",
    "--bind": "it listens on 127.0.0.1",
    "--amqp-port": "it picks free ports and tells them as amqp_port, stomp_port, ...",
    "--stomp-port": "it picks free ports and tells them as amqp_port, stomp_port, ...",
    "--mqtt-port": "it picks free ports and tells them as amqp_port, stomp_port, ...",
    "--http-port": "it picks free ports and tells them as amqp_port, stomp_port, ...",
    "--stream-port": "it picks free ports and tells them as amqp_port, stomp_port, ...",
    "--web-stomp-port": "it picks free ports and tells them as amqp_port, stomp_port, ...",
    "--web-mqtt-port": "it picks free ports and tells them as amqp_port, stomp_port, ...",
    "--web-stomp-tls-port": "it picks free ports and tells them as amqp_port, stomp_port, ...",
    "--web-mqtt-tls-port": "it picks free ports and tells them as amqp_port, stomp_port, ...",
    "--store": "choose it with Broker(store=...)",
    "--store-url": "choose the store with Broker(store=...)",
    "--log-level": "it waits for the INFO line that says the broker started",
}

#: where the ``warren`` package the caller imported lives: the broker runs that same code, not
#: whatever ``warren`` the caller's working directory or path would find first
_PACKAGE_ROOT = str(Path(warren.__file__).resolve().parent.parent)


class Broker:
    """A warren broker in a subprocess: ``with Broker() as b: pika.URLParameters(b.amqp_url)``.

    ``store`` is ``"journal"`` (the default), ``"sqlite"`` or ``"memory"``; ``extra_args`` are
    more ``warren run`` flags (``["--max-message-size", "1024"]``); ``username``/``password``
    are the default user's, with every permission on vhost ``/`` and the administrator tag.
    """

    host = "127.0.0.1"

    def __init__(self, *, store: str = "journal", extra_args: list[str] | tuple[str, ...] = (),
                 username: str = "guest", password: str = "guest",
                 start_timeout: float = 60.0) -> None:
        if store not in STORES:
            raise ValueError(f"store {store!r}: give one of {', '.join(STORES)}")
        for arg in extra_args:
            flag = arg.split("=", 1)[0]
            if flag in OWN_FLAGS:
                raise ValueError(f"extra_args: {flag} is the embedded broker's own: "
                                 f"{OWN_FLAGS[flag]}")
        self.store = store
        self.extra_args = list(extra_args)
        self.username = username
        self.password = password
        self.start_timeout = start_timeout
        self._dir: str | None = None
        self._process: BrokerProcess | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Broker":
        """Start the broker and return once every listener is open; raise ``RuntimeError``
        with the broker's log when it cannot start (nothing is left behind then either)."""
        if self.running:
            raise RuntimeError("this embedded broker is already running")
        self._dir = tempfile.mkdtemp(prefix="warren-embedded-")
        env = {"WARREN_DEFAULT_USER": self.username, "WARREN_DEFAULT_PASS": self.password,
               "PYTHONPATH": os.pathsep.join(
                   p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)}
        self._process = BrokerProcess(
            Path(self._dir) / "data", store=STORES[self.store], extra_args=self.extra_args,
            env=env, cwd=self._dir, stdin=subprocess.PIPE,
            launcher=("-m", "warren.embedded.tied", "--remove-dir", self._dir))
        atexit.register(self.stop)
        try:
            self._process.start(self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker as SIGTERM does (SIGKILL after ``timeout`` seconds) and remove its
        data directory. Stopping a stopped broker does nothing."""
        atexit.unregister(self.stop)
        if self._process is not None:
            self._process.stop(timeout)
            self._process.kill()  # no-op once it exited; also joins the log reader
            if self._process.proc is not None and self._process.proc.stdin is not None:
                self._process.proc.stdin.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return (self._process is not None and self._process.proc is not None
                and self._process.proc.poll() is None)

    @property
    def returncode(self) -> int | None:
        """The broker's exit status once it ended (0: it stopped cleanly), else None."""
        if self._process is None or self._process.proc is None:
            return None
        return self._process.proc.poll()

    @property
    def pid(self) -> int | None:
        proc = self._process.proc if self._process is not None else None
        return proc.pid if proc is not None and self.running else None

    @property
    def data_dir(self) -> str | None:
        """The temporary directory of this run (removed by ``stop()``)."""
        return self._dir

    def log(self) -> str:
        """The broker's last log lines, to explain a failure."""
        return self._process.log() if self._process is not None else ""

    # ------------------------------------------------------------------ where it listens
    def _port(self, name: str) -> int:
        if self._process is None:
            raise RuntimeError("the embedded broker is not started: use start() or `with`")
        return getattr(self._process, f"{name}_port")

    @property
    def amqp_port(self) -> int:
        return self._port("amqp")

    @property
    def stomp_port(self) -> int:
        return self._port("stomp")

    @property
    def mqtt_port(self) -> int:
        return self._port("mqtt")

    @property
    def http_port(self) -> int:
        return self._port("http")

    @property
    def stream_port(self) -> int:
        """RabbitMQ's Stream protocol (rstream and other stream clients)."""
        return self._port("stream")

    @property
    def web_stomp_port(self) -> int:
        return self._port("web_stomp")

    @property
    def web_mqtt_port(self) -> int:
        return self._port("web_mqtt")

    @property
    def web_stomp_url(self) -> str:
        """STOMP over WebSocket (Web-STOMP's path), for stompjs and other WebSocket clients."""
        return f"ws://{self.host}:{self.web_stomp_port}/ws"

    @property
    def web_mqtt_url(self) -> str:
        """MQTT over WebSocket (Web-MQTT's path), for mqtt.js and paho's websockets transport."""
        return f"ws://{self.host}:{self.web_mqtt_port}/ws"

    @property
    def amqp_url(self) -> str:
        """The AMQP URI of vhost ``/`` with the default user, for pika, kombu and Celery."""
        return self.amqp_url_for("/")

    def amqp_url_for(self, vhost: str) -> str:
        """The AMQP URI of ``vhost`` (RabbitMQ's URI rules: the vhost %-encoded, ``/`` as %2F)."""
        user = urllib.parse.quote(self.username, safe="")
        password = urllib.parse.quote(self.password, safe="")
        return f"amqp://{user}:{password}@{self.host}:{self.amqp_port}/{q(vhost)}"

    @property
    def http_url(self) -> str:
        """The console and HTTP API (RabbitMQ's management API) base URL."""
        return f"http://{self.host}:{self.http_port}"

    # ------------------------------------------------------------------ vhosts
    def api(self) -> Api:
        """A client of the broker's HTTP API as the default user (``warren ctl``'s)."""
        return Api(self.http_url, self.username, self.password)

    def add_vhost(self, name: str) -> str:
        """Create vhost ``name`` and give the default user every permission on it, as
        ``rabbitmqctl add_vhost`` + ``set_permissions`` do; return its AMQP URI."""
        api = self.api()
        api.call("PUT", f"/api/vhosts/{q(name)}", {})
        api.call("PUT", f"/api/permissions/{q(name)}/{q(self.username)}",
                 {"configure": ".*", "write": ".*", "read": ".*"})
        return self.amqp_url_for(name)

    def delete_vhost(self, name: str, *, missing_ok: bool = False) -> None:
        """Delete vhost ``name`` with everything in it (its connections are closed).
        ``missing_ok``: a vhost already gone is no error (a test may delete its own)."""
        try:
            self.api().call("DELETE", f"/api/vhosts/{q(name)}")
        except ApiError:
            if missing_ok and name not in self.vhosts():
                return
            raise

    def vhosts(self) -> list[str]:
        """The names of the broker's vhosts."""
        return [v["name"] for v in self.api().call("GET", "/api/vhosts")]
