"""Start-up and configuration errors: one ERROR line that names the setting, no traceback.

Each test starts ``python -m warren run`` as an operator would, with one thing wrong, and
checks what the operator sees: a non-zero exit, exactly one ERROR line (``warren cannot
start: ...``) that names the setting and its value, no Python traceback, and no port left
listening. The process is expected to exit by itself; ``subprocess.run``'s timeout only stops
a broker that wrongly started.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from tests.broker_process import BrokerProcess, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Ports:
    def __init__(self) -> None:
        self.amqp, self.stomp, self.mqtt, self.http = (free_port() for _ in range(4))

    def args(self) -> list[str]:
        return ["--bind", "127.0.0.1", "--amqp-port", str(self.amqp),
                "--stomp-port", str(self.stomp), "--mqtt-port", str(self.mqtt),
                "--http-port", str(self.http)]

    def all(self) -> list[int]:
        return [self.amqp, self.stomp, self.mqtt, self.http]


def run_warren(args: list[str], *, env: dict[str, str] | None = None,
               prefix: list[str] = ()) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WARREN_")}
    full_env.update(env or {})
    full_env["PYTHONUNBUFFERED"] = "1"
    return subprocess.run([*prefix, sys.executable, "-m", "warren", "run", *args],
                          cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def assert_refused(result: subprocess.CompletedProcess, ports: list[int], *words: str) -> str:
    """The broker exited non-zero with one ERROR line containing ``words``; returns it."""
    out = result.stdout
    assert result.returncode != 0, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if " ERROR " in line]
    assert len(errors) == 1, out
    line = errors[0]
    assert "warren cannot start: " in line, out
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    for port in ports:
        assert not listening(port), f"port {port} is still listening:\n{out}"
    return line


def test_port_in_use_names_the_flag_and_port(tmp_path):
    ports = Ports()
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", ports.stomp))
        busy.listen()
        # AMQP opens before STOMP: it must be closed again when STOMP fails
        result = run_warren(["--data-dir", str(tmp_path / "data"), *ports.args()])
    assert_refused(result, [ports.amqp, ports.stomp, ports.mqtt, ports.http],
                   f"--stomp-port {ports.stomp}: address already in use", "--stomp-port")


def test_port_in_use_from_the_config_file_names_the_key_and_file(tmp_path):
    ports = Ports()
    config = tmp_path / "warren.toml"
    config.write_text(f"[warren]\namqp_port = {ports.amqp}\n")
    args = [a for a in ports.args()]
    del args[2:4]  # no --amqp-port: the file's value
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports.amqp))
        busy.listen()
        result = run_warren(["--config", str(config), "--data-dir", str(tmp_path / "d"),
                             *args])
    assert_refused(result, [ports.stomp, ports.mqtt, ports.http],
                   f"amqp_port = {ports.amqp} in {config}", "address already in use")


def test_toml_syntax_error_names_the_file_and_line(tmp_path):
    config = tmp_path / "warren.toml"
    config.write_text("[warren]\namqp_port = 5673\nstomp_port 61613\n")
    ports = Ports()
    result = run_warren(["--config", str(config), "--data-dir", str(tmp_path / "d"),
                         *ports.args()])
    assert_refused(result, ports.all(), f"--config {config}", "not valid TOML", "line 3")


def test_wrong_type_in_the_config_file_names_key_value_and_file(tmp_path):
    config = tmp_path / "warren.toml"
    config.write_text('heartbeat = "soon"\n')
    ports = Ports()
    result = run_warren(["--config", str(config), "--data-dir", str(tmp_path / "d"),
                         *ports.args()])
    assert_refused(result, ports.all(), f'heartbeat = "soon" in {config}', "whole number",
                   "default 60")


def test_wrong_type_in_a_variable_names_it_and_the_value(tmp_path):
    ports = Ports()
    result = run_warren(["--data-dir", str(tmp_path / "d"), *ports.args()],
                        env={"WARREN_MEMORY_HIGH_WATERMARK": "2GB"})
    assert_refused(result, ports.all(), "WARREN_MEMORY_HIGH_WATERMARK=2GB", "whole number")


@pytest.mark.parametrize("setting", [["--disk-free-limit", "-1"],
                                     ["--memory-high-watermark-relative", "-0.4"]])
def test_negative_resource_limit(tmp_path, setting):
    ports = Ports()
    result = run_warren(["--data-dir", str(tmp_path / "d"), *ports.args(), *setting])
    assert_refused(result, ports.all(), " ".join(setting), "below 0")


def test_resource_limit_of_the_wrong_type_in_the_config_file(tmp_path):
    config = tmp_path / "warren.toml"
    config.write_text('disk_free_limit = "50MB"\n')
    ports = Ports()
    result = run_warren(["--config", str(config), "--data-dir", str(tmp_path / "d"),
                         *ports.args()])
    assert_refused(result, ports.all(), 'disk_free_limit = "50MB"', "whole number",
                   "default 50000000")


def test_wrong_choice_in_a_variable(tmp_path):
    ports = Ports()
    result = run_warren(["--data-dir", str(tmp_path / "d"), *ports.args()],
                        env={"WARREN_STORE": "postgres"})
    assert_refused(result, ports.all(), "WARREN_STORE=postgres", "journal, sql, memory")


def test_port_out_of_range(tmp_path):
    ports = Ports()
    result = run_warren(["--data-dir", str(tmp_path / "d"), *ports.args(),
                         "--mqtt-port", "70000"])
    assert_refused(result, ports.all(), "--mqtt-port 70000", "not a port")


def test_missing_config_file(tmp_path):
    ports = Ports()
    missing = tmp_path / "nowhere.toml"
    result = run_warren(["--config", str(missing), "--data-dir", str(tmp_path / "d"),
                         *ports.args()])
    assert_refused(result, ports.all(), f"--config {missing}", "no such file")


def test_data_dir_that_is_a_file(tmp_path):
    ports = Ports()
    a_file = tmp_path / "data"
    a_file.write_text("not a directory")
    result = run_warren(["--data-dir", str(a_file), *ports.args()])
    assert_refused(result, ports.all(), f"--data-dir {a_file}", "a file, not a directory")


def _unprivileged_prefix() -> list[str]:
    """Run as a user that directory permissions apply to. Root passes every permission check
    (CAP_DAC_OVERRIDE) but not in a user namespace where uid 0 is not mapped."""
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-U", "true"]).returncode != 0:
        pytest.skip("running as root and unshare -U is not available")
    return [unshare, "-U"]


def test_unwritable_data_dir(tmp_path):
    prefix = _unprivileged_prefix()
    parent = tmp_path / "locked"
    parent.mkdir()
    data = parent / "data"
    data.mkdir()
    data.chmod(0o555)
    ports = Ports()
    try:
        result = run_warren(["--data-dir", str(data), *ports.args()], prefix=prefix)
    finally:
        data.chmod(0o755)
    assert_refused(result, ports.all(), f"--data-dir {data}", "permission denied")


def test_read_only_data_dir(tmp_path):
    """A tmpfs mounted read-only in a private mount namespace: a real EROFS."""
    unshare = shutil.which("unshare")
    data = tmp_path / "ro"
    data.mkdir()
    prefix = [unshare or "unshare", "-rm", "sh", "-c",
              'mount -t tmpfs -o ro,size=1m none "$0" && exec "$@"', str(data)]
    if unshare is None or subprocess.run(prefix + ["true"]).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (unshare -rm)")
    ports = Ports()
    result = run_warren(["--data-dir", str(data), *ports.args()], prefix=prefix)
    assert_refused(result, ports.all(), f"--data-dir {data}", "read-only file system")


def test_unreachable_database(tmp_path):
    ports = Ports()
    nobody = free_port()   # nothing listens there
    url = f"postgresql+psycopg://warren:s3cret@127.0.0.1:{nobody}/warren"
    result = run_warren(["--data-dir", str(tmp_path / "d"), *ports.args(), "--store", "sql",
                         "--store-url", url])
    line = assert_refused(result, ports.all(),
                          f"--store-url postgresql+psycopg://warren:***@127.0.0.1:{nobody}",
                          "cannot connect to the database", "start the database")
    assert "s3cret" not in result.stdout, line


def test_unparsable_store_url(tmp_path):
    ports = Ports()
    result = run_warren(["--data-dir", str(tmp_path / "d"), *ports.args(), "--store", "sql",
                         "--store-url", "db.example:5432/warren"])
    assert_refused(result, ports.all(), "--store-url db.example:5432/warren",
                   "not a database URL")


def test_unknown_database_kind(tmp_path):
    ports = Ports()
    result = run_warren(["--data-dir", str(tmp_path / "d"), *ports.args(), "--store", "sql",
                         "--store-url", "oracel://db/warren"])
    assert_refused(result, ports.all(), "--store-url oracel://db/warren",
                   "unknown database 'oracel'")


def test_postgresql_url_without_psycopg(tmp_path):
    """psycopg hidden by a package of the same name that cannot be imported."""
    shim = tmp_path / "shim" / "psycopg"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    ports = Ports()
    result = run_warren(["--data-dir", str(tmp_path / "d"), *ports.args(), "--store", "sql",
                         "--store-url", "postgresql+psycopg://warren@db.example/warren"],
                        env={"PYTHONPATH": str(shim.parent)})
    assert_refused(result, ports.all(), "--store-url postgresql+psycopg://warren@db.example",
                   "the PostgreSQL driver psycopg is not installed", "pip install")


@pytest.mark.parametrize("where", ["file", "variable"])
def test_unknown_key_is_a_warning_that_names_it(tmp_path, where):
    env: dict[str, str] = {}
    extra: list[str] = []
    if where == "file":
        config = tmp_path / "warren.toml"
        config.write_text("[warren]\nheartbeet = 30\n")
        extra = ["--config", str(config)]
        expected = f"unknown configuration key heartbeet in {config}"
        suggestion = "did you mean heartbeat?"
    else:
        env = {"WARREN_HEARTBEET": "30"}
        expected = "unknown variable WARREN_HEARTBEET"
        suggestion = "did you mean WARREN_HEARTBEAT?"
    broker = BrokerProcess(tmp_path / "data", extra_args=extra, env=env)
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("WARREN_HEART")}
    try:
        with broker:
            line = broker.wait_for_line(expected)
            assert " WARNING " in line and suggestion in line, line
            assert listening(broker.amqp_port)
    finally:
        os.environ.update(saved)
    assert not any(" ERROR " in line for line in broker.lines), broker.log()


def test_ctl_variables_are_not_unknown_settings(tmp_path):
    broker = BrokerProcess(tmp_path / "data", env={"WARREN_URL": "http://127.0.0.1:1",
                                                   "WARREN_USER": "guest"})
    with broker:
        pass
    assert not any("WARREN_URL" in line or "WARREN_USER" in line for line in broker.lines), \
        broker.log()


def test_run_help_shows_each_flags_default_and_meaning():
    result = run_warren(["--help"])
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert text.startswith("usage: warren run")
    for expected in ("--amqp-port AMQP_PORT AMQP 0-9-1 port (0: off) (default: 5672)",
                     "--http-port HTTP_PORT HTTP API, console and /metrics port (0: off) "
                     "(default: 15672)",
                     "(default: ./warren-data)", "(default: journal)", "(default: 10.0)",
                     "WARREN_AMQP_PORT=5673"):
        assert expected in text, result.stdout
    from warren.cli import RUN_FLAGS
    for flag, _spec in RUN_FLAGS:
        assert flag in text


def test_unknown_flag_prints_warren_runs_usage():
    result = run_warren(["--amqp-prot", "5673"])
    assert result.returncode == 2
    assert "usage: warren run" in result.stdout, result.stdout
    assert "--amqp-port" in result.stdout   # run's flags, not warren's subcommands
    assert "warren run: error: unrecognized arguments: --amqp-prot 5673" in result.stdout


@pytest.mark.parametrize("busy_port", ["http", "amqp"])
def test_port_in_use_with_ha_shared_file(tmp_path, busy_port):
    """--ha: the standby HTTP port at start, or a client port when becoming master."""
    ports = Ports()
    port = getattr(ports, busy_port)
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = run_warren(["--data-dir", str(tmp_path / "data"), *ports.args(),
                             "--ha", "shared-file"])
    assert_refused(result, ports.all(),
                   f"--{busy_port}-port {port}: address already in use")


def test_db_upgrade_with_an_unparsable_url_is_one_line():
    result = subprocess.run([sys.executable, "-m", "warren", "db", "upgrade", "--store-url",
                             "not a url"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: --store-url 'not a url': not a database URL")
    assert "Traceback" not in result.stderr
