"""A real warren broker in a subprocess, on free ports: what warren's tests and the embedded
broker (``warren.embedded.Broker``) both start.

A subprocess rather than a thread: Twisted's reactor is global and cannot be restarted, so a
broker in the caller's process would take the reactor from the caller and could run once only.
``python -m warren run`` gets its own data directory; ``start()`` waits for the log line that
says it started (an event, not a sleep). ``kill()`` is SIGKILL for crash tests; ``restart()``
reuses the data directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .ports import free_port

#: the part of ``warren run``'s "warren X started (store: ..., data dir: ...)" line (cli.py)
#: that says every listener is open
READY_MARK = "started (store:"

__all__ = ["READY_MARK", "BrokerProcess", "free_port"]


class BrokerProcess:
    def __init__(self, data_dir: str | Path, *, store: str = "journal", store_url: str = "",
                 extra_args: list[str] | tuple[str, ...] = (), env: dict[str, str] | None = None,
                 ports: dict[str, int] | None = None, cwd: str | Path | None = None,
                 launcher: tuple[str, ...] = ("-m", "warren"), stdin: int | None = None) -> None:
        self.data_dir = str(data_dir)
        self.cwd = cwd
        #: what runs ``run FLAGS...`` after the interpreter, and its standard input
        #: (``warren.embedded.tied`` with a pipe: the broker ends with the program)
        self.launcher = launcher
        self.stdin = stdin
        self.store = store
        self.store_url = store_url
        self.extra_args = list(extra_args)
        self.env = env or {}
        self._fixed_ports = ports or {}
        self._picked_ports = not self._fixed_ports
        self._started_once = False
        self._pick_ports()
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def _pick_ports(self) -> None:
        ports = self._fixed_ports
        taken: set[int] = set(ports.values())

        def pick(kind: str) -> int:
            if ports.get(kind):
                return ports[kind]
            port = free_port()
            while port in taken:     # one broker's listeners each get their own port
                port = free_port()
            taken.add(port)
            return port
        self.amqp_port = pick("amqp")
        self.stomp_port = pick("stomp")
        self.mqtt_port = pick("mqtt")
        self.http_port = pick("http")
        self.stream_port = pick("stream")      # RabbitMQ's Stream protocol
        # STOMP and MQTT over WebSocket; their TLS ports too (open only with --tls-cert), so
        # that no test broker ever reaches for RabbitMQ's fixed default ports
        self.web_stomp_port = pick("web_stomp")
        self.web_mqtt_port = pick("web_mqtt")
        self.web_stomp_tls_port = pick("web_stomp_tls")
        self.web_mqtt_tls_port = pick("web_mqtt_tls")

    def command(self) -> list[str]:
        cmd = [sys.executable, *self.launcher, "run", "--data-dir", self.data_dir,
               "--bind", "127.0.0.1",
               "--amqp-port", str(self.amqp_port), "--stomp-port", str(self.stomp_port),
               "--mqtt-port", str(self.mqtt_port), "--http-port", str(self.http_port),
               "--stream-port", str(self.stream_port),
               "--web-stomp-port", str(self.web_stomp_port),
               "--web-mqtt-port", str(self.web_mqtt_port),
               "--web-stomp-tls-port", str(self.web_stomp_tls_port),
               "--web-mqtt-tls-port", str(self.web_mqtt_tls_port),
               "--store", self.store, "--log-level", "info"]
        if self.store_url:
            cmd += ["--store-url", self.store_url]
        return cmd + self.extra_args

    def start(self, timeout: float = 60.0, wait: bool = True) -> "BrokerProcess":
        self._spawn()
        if wait:
            self.wait_ready(timeout)
        return self

    def _spawn(self) -> None:
        env = dict(os.environ)
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        if self._reader is not None:
            self._reader.join(10)  # the previous process's last lines stay with it
        lines: list[str] = []
        self.lines = lines
        self._ready = ready = threading.Event()
        if self.cwd is not None:
            # an embedded broker's process removes its directory when it ends (tied.py): a
            # start again after a port was taken needs it back
            os.makedirs(self.cwd, exist_ok=True)
        self.proc = subprocess.Popen(self.command(), stdin=self.stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env,
                                     cwd=self.cwd, start_new_session=True)
        self._reader = threading.Thread(target=self._read, args=(self.proc, lines, ready),
                                        daemon=True)
        self._reader.start()

    @staticmethod
    def _read(proc: subprocess.Popen[str], lines: list[str], ready: threading.Event) -> None:
        """Collect one process's output. Its own list and event: a restarted broker's reader
        must never mark the next process ready with the previous one's lines."""
        for line in proc.stdout or ():   # (always a pipe: _spawn asks for one)
            lines.append(line.rstrip("\n"))
            if READY_MARK in line:
                ready.set()
        ready.set()  # process ended: wake waiters so they can report it

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Return once the ready line is out; raise when the process ends without it. Its
        output ending wakes the wait too, and the process may not have exited yet then:
        only the line itself says it started.

        A first start on ports picked here can lose one of them to another process between
        the pick and the bind (tests run side by side): it is started again on new ports, up
        to twice, whoever called ``start(wait=False)`` and waits here."""
        for attempt in range(3):
            if self._ready.wait(timeout) and self.ready:
                self._started_once = True
                return
            if not (self._picked_ports and not self._started_once and attempt < 2
                    and any("address already in use" in line.lower() for line in self.lines)):
                break
            if self.proc is not None:
                self.proc.wait(timeout)   # gone, and whatever it removes at exit removed
            self._pick_ports()
            self._spawn()
        raise RuntimeError("broker did not start:\n" + self.log())

    @property
    def ready(self) -> bool:
        return any(READY_MARK in line for line in self.lines)

    def wait_for_line(self, text: str, timeout: float = 30.0) -> str:
        """Block until a log line containing ``text`` appears (polls the captured lines)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            lines = self.lines
            for line in lines[seen:]:
                if text in line:
                    return line
            seen = len(lines)
            if self.proc is not None and self.proc.poll() is not None and seen == len(self.lines):
                break
            time.sleep(0.02)
        raise AssertionError(f"no log line containing {text!r}:\n" + self.log())

    def log(self) -> str:
        return "\n".join(self.lines[-200:])

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)

    def restart(self, timeout: float = 60.0) -> "BrokerProcess":
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> "BrokerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.proc is not None and self.proc.poll() is None:
            self.kill()

    # ------------------------------------------------------------------ client helpers
    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"
