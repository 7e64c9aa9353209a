"""The brokers bench/ measures, each started as a subprocess on free loopback ports.

Every broker lives in its own work directory (data, config, log) and its own process group, so
that `kill()` (SIGKILL, for the recovery scenario) and `stop()` reach every process it spawned
and nothing else. A broker is ready when every one of its ports accepts a TCP connection: that
connect is the event we wait for, polled because there is no other signal from outside.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, ClassVar

from bench.rabbitmq_scripts import SERVER_VARIABLE, find_rabbitmq

HOST = "127.0.0.1"


class BrokerStartError(RuntimeError):
    """The broker exited, or its ports did not open in time; the message ends with its log."""


def locate(program: str, given: str | None, flag: str, package: str) -> str:
    """The executable `given` by the flag, else `program` on PATH; a BrokerStartError saying
    what to do when neither is there."""
    found = shutil.which(given or program)
    if found is None:
        where = f"{given!r} (--{flag})" if given else f"{program} on PATH"
        raise BrokerStartError(f"{where} not found: install {package} or pass --{flag} PATH")
    return found


def free_port() -> int:
    """A port the kernel just handed out on loopback (free unless someone races us for it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def wait_until_accepting(ports: list[int], alive: Callable[[], bool], timeout: float) -> None:
    """Return once every port accepts; raise if `alive()` turns false or `timeout` passes."""
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        pending = [port for port in pending if not port_accepts(port)]
        if not pending:
            return
        if not alive():
            raise BrokerStartError("exited before its ports opened")
        if time.monotonic() > deadline:
            raise BrokerStartError(f"ports {pending} not accepting after {timeout:.0f} s")
        time.sleep(0.05)


def wait_until_closed(ports: list[int], timeout: float = 30.0) -> None:
    """Return once no port accepts: a killed process's sockets close a little after its death."""
    deadline = time.monotonic() + timeout
    while any(port_accepts(port) for port in ports):
        if time.monotonic() > deadline:
            raise BrokerStartError(f"ports {ports} still accepting {timeout:.0f} s after kill")
        time.sleep(0.01)


class Broker:
    """One broker instance: `start()`, `stop()`; `kill()` then `start()` restarts on its data."""

    name: ClassVar[str]
    protocols: ClassVar[frozenset[str]]  # of "amqp", "stomp", "mqtt"
    start_timeout: ClassVar[float] = 60.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = {protocol: free_port() for protocol in sorted(self.protocols)}
        self.process: subprocess.Popen | None = None

    # -- what a subclass says -------------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self) -> None:
        """Write config files; called before every start (must be idempotent)."""

    # -- life cycle -----------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    def start(self) -> float:
        """Spawn the broker; return the seconds until all its ports accepted connections."""
        self.prepare()
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), env=self.environment(), cwd=self.workdir,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            wait_until_accepting(list(self.ports.values()), lambda: self.process.poll() is None,
                                 self.start_timeout)
        except BrokerStartError as error:
            self.stop()
            raise BrokerStartError(f"{self.name}: {error}\n{self.log_tail()}") from None
        return time.monotonic() - began

    def kill(self) -> None:
        """SIGKILL the broker's whole process group, as a crash would."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        self.process = None
        wait_until_closed(list(self.ports.values()))

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL what is left of the group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)  # the group start_new_session made for us
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Warren(Broker):
    """warren itself (`warren run`), on the journal store or an SQL store."""

    name = "warren"
    protocols = frozenset({"amqp", "stomp", "mqtt"})

    def __init__(self, workdir: Path, *, command: list[str], store: str = "journal",
                 store_url: str | None = None) -> None:
        super().__init__(workdir)
        self.base_command = command
        self.store = store
        self.store_url = store_url

    def command(self) -> list[str]:
        data_dir = self.workdir / "data"
        argv = [*self.base_command, "run",
                "--amqp-port", str(self.ports["amqp"]),
                "--stomp-port", str(self.ports["stomp"]),
                "--mqtt-port", str(self.ports["mqtt"]),
                "--http-port", "0", "--web-stomp-port", "0", "--web-mqtt-port", "0",
                "--stream-port", "0",
                "--data-dir", str(data_dir), "--store", self.store]
        if self.store == "sql":
            argv += ["--store-url", self.store_url or f"sqlite:///{data_dir / 'warren.sqlite'}"]
        return argv

    @staticmethod
    def default_command() -> list[str]:
        """The installed `warren` script, else warren.cli:main run from this checkout."""
        script = shutil.which("warren")
        return [script] if script else [
            sys.executable, "-c", "import sys; from warren.cli import main; sys.exit(main())"]

    def environment(self) -> dict[str, str]:
        # Run from the work directory but import warren from this checkout.
        env = dict(os.environ)
        repo = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
        return env


class RabbitMQ(Broker):
    """rabbitmq-server with the STOMP and MQTT plugins, as a private node.

    Everything RabbitMQ would put in /var or /etc goes to the work directory, and it gets its
    own epmd on a free loopback port (run by us in the foreground, so we can stop it too).
    The server is `--rabbitmq-server`, `$WARREN_RABBITMQ_SERVER` or `rabbitmq-server` on PATH;
    rabbitmq-plugins is taken from beside it (bench.rabbitmq_scripts).
    """

    name = "rabbitmq"
    protocols = frozenset({"amqp", "stomp", "mqtt"})
    start_timeout = 120.0

    def __init__(self, workdir: Path, *, program: str | None = None) -> None:
        super().__init__(workdir)
        self.given = program
        self.server: str | None = None
        self.epmd_port = free_port()
        self.dist_port = free_port()
        self.nodename = f"bench{os.getpid()}x{self.ports['amqp']}@localhost"
        self.epmd: subprocess.Popen | None = None

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HOME=str(self.workdir),  # the Erlang cookie goes here, not in /root
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS=HOST,
            RABBITMQ_NODE_PORT=str(self.ports["amqp"]),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(self.workdir / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.workdir / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(self.workdir / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.workdir / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.workdir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.workdir / "log"),
            RABBITMQ_PID_FILE=str(self.workdir / "rabbitmq.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS=HOST,
        )
        return env

    def locate_server(self) -> str:
        """The real server script (bench.rabbitmq_scripts: past Debian's user-switching
        wrapper); a BrokerStartError saying what to do when there is none."""
        scripts = find_rabbitmq(self.given)
        if scripts is None:
            where = (f"{self.given!r} (--rabbitmq-server)" if self.given else
                     f"${SERVER_VARIABLE} or rabbitmq-server on PATH")
            raise BrokerStartError(f"{where} not found: install rabbitmq-server or pass "
                                   "--rabbitmq-server PATH")
        return scripts.server

    def prepare(self) -> None:
        if self.server is None:
            self.server = self.locate_server()
        plugins = str(Path(self.server).with_name("rabbitmq-plugins"))
        conf = self.workdir / "rabbitmq.conf"
        if conf.exists():
            return
        conf.write_text(
            f"listeners.tcp.default = {HOST}:{self.ports['amqp']}\n"
            f"stomp.listeners.tcp.1 = {HOST}:{self.ports['stomp']}\n"
            f"mqtt.listeners.tcp.default = {HOST}:{self.ports['mqtt']}\n")
        (self.workdir / "advanced.config").write_text("[].\n")
        (self.workdir / "rabbitmq-env.conf").write_text("")
        subprocess.run([plugins, "enable", "--offline", "rabbitmq_stomp", "rabbitmq_mqtt"],
                       env=self.environment(), cwd=self.workdir, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=120)

    def command(self) -> list[str]:
        return [self.server]

    def start(self) -> float:
        if self.epmd is None:
            with open(self.log_path, "ab") as log:
                self.epmd = subprocess.Popen(
                    ["epmd", "-port", str(self.epmd_port), "-address", HOST],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            wait_until_accepting([self.epmd_port], lambda: self.epmd.poll() is None, 10)
        return super().start()

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        if self.epmd is not None:
            self.epmd.terminate()
            self.epmd.wait()
            self.epmd = None


class Mosquitto(Broker):
    """mosquitto (`--mosquitto` or on PATH), anonymous, one loopback listener, foreground."""

    name = "mosquitto"
    protocols = frozenset({"mqtt"})

    def __init__(self, workdir: Path, *, program: str | None = None) -> None:
        super().__init__(workdir)
        self.given = program

    def prepare(self) -> None:
        (self.workdir / "mosquitto.conf").write_text(
            f"listener {self.ports['mqtt']} {HOST}\nallow_anonymous true\n")

    def command(self) -> list[str]:
        program = locate("mosquitto", self.given, "mosquitto", "mosquitto")
        return [program, "-c", str(self.workdir / "mosquitto.conf")]


class ActiveMQ(Broker):
    """ActiveMQ Classic (`--activemq` or `activemq` on PATH) with STOMP and MQTT connectors,
    run in the foreground (`activemq console`) on a broker XML written to its work directory.

    Its configuration, data and temp directories are the work directory's (the launcher's
    ACTIVEMQ_CONF / ACTIVEMQ_DATA / ACTIVEMQ_TMP), it runs as the current user (ACTIVEMQ_USER,
    else Debian's launcher switches to the `activemq` user), without JMX or authentication, and
    with the KahaDB store it has by default. It does not speak AMQP 0-9-1 (only AMQP 1.0).
    """

    name = "activemq"
    protocols = frozenset({"stomp", "mqtt"})
    start_timeout = 120.0

    def __init__(self, workdir: Path, *, program: str | None = None) -> None:
        super().__init__(workdir)
        self.given = program

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ACTIVEMQ_BASE=str(self.workdir),
            ACTIVEMQ_CONF=str(self.workdir / "conf"),
            ACTIVEMQ_DATA=str(self.workdir / "data"),
            ACTIVEMQ_TMP=str(self.workdir / "tmp"),
            ACTIVEMQ_PIDFILE=str(self.workdir / "activemq.pid"),
            ACTIVEMQ_USER=pwd.getpwuid(os.getuid()).pw_name,
        )
        return env

    def prepare(self) -> None:
        for directory in ("conf", "data", "tmp"):
            (self.workdir / directory).mkdir(exist_ok=True)
        data = self.workdir / "data"
        # Its log to stdout (our broker.log), warnings and errors only.
        (self.workdir / "conf" / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, out\n"
            "log4j.appender.out=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.out.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.out.layout.ConversionPattern=%d %-5p %c - %m%n\n")
        (self.workdir / "conf" / "activemq.xml").write_text(f"""\
<beans xmlns="http://www.springframework.org/schema/beans"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="http://www.springframework.org/schema/beans
         http://www.springframework.org/schema/beans/spring-beans.xsd
         http://activemq.apache.org/schema/core
         http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="bench" useJmx="false"
          dataDirectory="{data}">
    <persistenceAdapter><kahaDB directory="{data / 'kahadb'}"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://{HOST}:{self.ports['stomp']}"/>
      <transportConnector name="mqtt" uri="mqtt://{HOST}:{self.ports['mqtt']}"/>
    </transportConnectors>
  </broker>
</beans>
""")

    def command(self) -> list[str]:
        program = locate("activemq", self.given, "activemq", "activemq")
        return [program, "console", f"xbean:file:{self.workdir / 'conf' / 'activemq.xml'}"]


BROKERS: dict[str, type[Broker]] = {cls.name: cls for cls in (Warren, RabbitMQ, Mosquitto,
                                                                 ActiveMQ)}
