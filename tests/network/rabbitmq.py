"""A private RabbitMQ node (Debian's ``rabbitmq-server``) for the interop tests and the bench.

The scripts are found as bench/ finds them (``bench/rabbitmq_scripts.py``: ``rabbitmq-server``
on PATH or named by ``$WARREN_RABBITMQ_SERVER``, past Debian's user-switching wrapper). When
there is none, Debian's package is installed on first use, the way
``tests/webconsole/browser.py`` installs chromium (the tests run as root on a clean
machine); with WARREN_TEST_SKIP_MISSING set the tests that need it are skipped instead
(``tests/missing_tools.py``). The package's postinst wants to start the system service; a
``policy-rc.d`` that denies it is put in place for the install when the machine has none, so
the install never depends on an init system, and the system service is never used.

A :class:`RabbitNode` is one throw-away node: its own node name, its own epmd (run by us in the
foreground on a free loopback port, so we can stop it), its own distribution, AMQP and
management ports, and everything RabbitMQ would put in /etc or /var (config, enabled plugins,
mnesia, logs, the Erlang cookie in $HOME) under one work directory. Plugins are enabled
offline before the start. Readiness is the AMQP port accepting and then
``rabbitmqctl await_startup`` returning: polled with a deadline, because nothing else tells us.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from bench.rabbitmq_scripts import SERVER_VARIABLE, RabbitScripts, find_rabbitmq
from tests.broker_process import free_port
from tests.missing_tools import one_installer, skipping_missing, tool_missing

HOST = "127.0.0.1"
POLICY_RC = "/usr/sbin/policy-rc.d"


class RabbitMQError(RuntimeError):
    """The node did not start or a rabbitmqctl command failed; the message carries its output."""


def ensure_rabbitmq() -> float:
    """Install Debian's rabbitmq-server if it is missing; returns the seconds spent installing."""
    if find_rabbitmq() is not None:
        return 0.0
    with one_installer():
        return _install_rabbitmq()


def _install_rabbitmq() -> float:
    if find_rabbitmq() is not None:   # another test worker installed it while this one waited
        return 0.0
    if skipping_missing():
        tool_missing(f"RabbitMQ (rabbitmq-server on PATH or ${SERVER_VARIABLE})",
                     "install Debian's rabbitmq-server package "
                     "(apt-get install --no-install-recommends rabbitmq-server)")
    began = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    own_policy = not os.path.exists(POLICY_RC)
    if own_policy:  # keep the postinst from starting the system service (exit 101 = denied)
        Path(POLICY_RC).write_text("#!/bin/sh\nexit 101\n")
        os.chmod(POLICY_RC, 0o755)
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "rabbitmq-server"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    finally:
        if own_policy:
            os.unlink(POLICY_RC)
    if find_rabbitmq() is None:
        raise RabbitMQError("installing Debian's rabbitmq-server failed:\n"
                            + done.stdout[-3000:])
    return time.monotonic() - began


def rabbitmq_scripts() -> RabbitScripts:
    """The scripts of the rabbitmq-server there is, installed first when there is none."""
    ensure_rabbitmq()
    scripts = find_rabbitmq()
    assert scripts is not None   # ensure_rabbitmq installed it, skipped or raised
    return scripts


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


class RabbitNode:
    """One private RabbitMQ node: ``start()``, ``ctl(...)``, ``kill()``, ``stop()``."""

    def __init__(self, workdir: str | Path | None = None,
                 plugins: tuple[str, ...] = ("rabbitmq_shovel", "rabbitmq_management")) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="warren-rabbitmq-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.plugins = plugins
        self.amqp_port = free_port()
        self.http_port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.stream_port = free_port()   # used when the rabbitmq_stream plugin is enabled
        self.nodename = f"warren{os.getpid()}x{self.amqp_port}@localhost"
        self.proc: subprocess.Popen | None = None
        self.epmd: subprocess.Popen | None = None
        self.install_seconds = 0.0
        self.start_seconds = 0.0
        self.scripts: RabbitScripts | None = None

    # ------------------------------------------------------------------ addresses
    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{HOST}:{self.amqp_port}/%2F"

    @property
    def http(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "node.log"

    def environment(self) -> dict[str, str]:
        w = self.workdir
        env = dict(os.environ)
        env.update(
            HOME=str(w),  # the Erlang cookie goes here, shared by the node and rabbitmqctl
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS=HOST,
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(w / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(w / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(w / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(w / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(w / "mnesia"),
            RABBITMQ_LOG_BASE=str(w / "log"),
            RABBITMQ_PID_FILE=str(w / "rabbitmq.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS=HOST,
        )
        return env

    # ------------------------------------------------------------------ life cycle
    def _prepare(self) -> None:
        w = self.workdir
        if not (w / "rabbitmq.conf").exists():
            management = (f"management.tcp.ip = {HOST}\n"
                          f"management.tcp.port = {self.http_port}\n"
                          if "rabbitmq_management" in self.plugins else "")
            (w / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = {HOST}:{self.amqp_port}\n{management}"
                "loopback_users = none\n"
                + (f"stream.listeners.tcp.default = {HOST}:{self.stream_port}\n"
                   f"stream.advertised_host = {HOST}\n"
                   f"stream.advertised_port = {self.stream_port}\n"
                   if "rabbitmq_stream" in self.plugins else ""))
            (w / "advanced.config").write_text("[].\n")
            (w / "rabbitmq-env.conf").write_text("")
            (w / "enabled_plugins").write_text("[].\n")
            if self.plugins:
                self._run([self.scripts.plugins, "enable", "--offline", *self.plugins])

    def _run(self, argv: list[str], timeout: float = 120.0) -> str:
        done = subprocess.run(argv, env=self.environment(), cwd=self.workdir,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              check=False)
        if done.returncode != 0:
            raise RabbitMQError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}")
        return done.stdout

    def ctl(self, *args: str, timeout: float = 120.0) -> str:
        """``rabbitmqctl -n NODE args...``; raises with its output when it fails."""
        return self._run([self.scripts.ctl, "-n", self.nodename, *args], timeout)

    def start(self, timeout: float = 120.0) -> Self:
        self.install_seconds = ensure_rabbitmq()
        self.scripts = find_rabbitmq()
        began = time.monotonic()
        self._prepare()
        with open(self.log_path, "ab") as log:
            if self.epmd is None or self.epmd.poll() is not None:
                self.epmd = subprocess.Popen(
                    ["epmd", "-port", str(self.epmd_port), "-address", HOST],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            self.proc = subprocess.Popen(
                [self.scripts.server], env=self.environment(), cwd=self.workdir,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = began + timeout
        try:
            while not _accepts(self.amqp_port):
                if self.proc.poll() is not None:
                    raise RabbitMQError("rabbitmq-server exited before its AMQP port opened")
                if time.monotonic() > deadline:
                    raise RabbitMQError(f"AMQP port not open after {timeout:.0f} s")
                time.sleep(0.1)
            self.ctl("await_startup", "--timeout", str(max(1, int(deadline - time.monotonic()))))
        except (RabbitMQError, subprocess.TimeoutExpired) as error:
            tail = self.log_tail()
            self.stop()
            raise RabbitMQError(f"{error}\n{tail}") from None
        self.start_seconds = time.monotonic() - began
        return self

    def kill(self) -> None:
        """SIGKILL the node (its epmd stays up), as a crash would; ``start()`` restarts it on
        the same data and ports."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None
        deadline = time.monotonic() + 30
        while _accepts(self.amqp_port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self, timeout: float = 60.0) -> None:
        """``rabbitmqctl stop`` (a clean shutdown), then SIGKILL what is left, then our epmd."""
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.ctl("stop", timeout=timeout)
                    self.proc.wait(timeout)
                except (RabbitMQError, subprocess.TimeoutExpired):
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None
        if self.epmd is not None:
            try:
                os.killpg(self.epmd.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.epmd.wait()
            self.epmd = None

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for path in [self.log_path, *sorted((self.workdir / "log").glob("*.log"))]:
            try:
                out += path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                pass
        return "\n".join(out[-2 * lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
