"""A private, throw-away PostgreSQL 15 cluster for tests (no pytest import: a plain module).

Other test packages reuse it (``from tests.store.pg import start_postgres``) and the session
fixture ``pg_url`` in ``tests/store/conftest.py`` wraps it. PostgreSQL refuses to run as root,
and the tests run as root on CI, so every server command runs as the ``postgres`` user (created
if missing) in a temporary directory that user owns. The server listens on 127.0.0.1 on a free
port, keeps its unix socket inside that directory, trusts every local connection, and keeps
``fsync`` on so the durability tests mean something.

Readiness is an event (``pg_ctl start -w`` returns once the server accepts connections, then
``pg_isready`` confirms it), never a fixed sleep.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

PG_BIN = Path(os.environ.get("WARREN_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
DATABASE = "warren"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries or the ``postgres`` user are missing; the message says how to fix it."""


class PortTaken(RuntimeError):
    """The server could not bind its port: another process took it after it was chosen."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ensure_pg_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        if os.geteuid() != 0:
            raise PostgresUnavailable(
                f"user {PG_USER!r} does not exist and we are not root to create it"
            ) from None
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", PG_USER],
            check=True,
        )
        return pwd.getpwnam(PG_USER)


def _traversable_by_others(path: Path) -> bool:
    """True if every directory from / down to ``path`` lets other users pass (mode o+x)."""
    path = path.resolve()
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


def _as_postgres(argv: list[str]) -> list[str]:
    """Prefix a command so it runs as the postgres user when we are root."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", PG_USER, "--", *argv]


class PostgresCluster:
    """One initdb'd data directory plus the server running on it; start/stop may repeat.

    ``stop(mode="fast")`` and ``start()`` again keep the data and the port, which is what the
    database-gone tests need.
    """

    def __init__(self, base_dir: str | os.PathLike[str]) -> None:
        for tool in ("initdb", "pg_ctl", "postgres", "pg_isready", "psql"):
            if not (PG_BIN / tool).exists():
                raise PostgresUnavailable(
                    f"{PG_BIN / tool} not found: install PostgreSQL 15 server binaries "
                    "(Debian: apt-get install postgresql-15) or set WARREN_PG_BIN"
                )
        user = _ensure_pg_user()
        # A private directory the postgres user owns. pytest's tmp dirs are 0700 root, which
        # postgres cannot traverse: then fall back to the system temp dir (world-traversable).
        parent = Path(base_dir) if _traversable_by_others(Path(base_dir)) else None
        self.root = Path(tempfile.mkdtemp(prefix="warren-pg-", dir=parent))
        if os.geteuid() == 0:
            os.chown(self.root, user.pw_uid, user.pw_gid)
        os.chmod(self.root, 0o700)
        self.data_dir = self.root / "data"
        self.socket_dir = self.root
        self.log_file = self.root / "server.log"
        self.port = _free_port()
        self.url = f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{DATABASE}"
        self._running = False
        self._started_once = False
        self._initdb()

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            _as_postgres(argv), capture_output=True, text=True, cwd=self.root, check=False
        )
        if check and result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{log[-4000:]}"
            )
        return result

    def _initdb(self) -> None:
        self._run([
            str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", PG_USER,
            "--auth=trust", "--encoding=UTF8", "--no-locale",
        ])

    def start(self) -> None:
        """Start the server and return once it accepts connections.

        The port was free when it was chosen, but another process (an outgoing connection's
        ephemeral port, another test's server) may have taken it since: a first start that
        finds it taken takes another one, a few times. A restart keeps its port (the
        database-gone tests reconnect to it)."""
        for _ in range(5 if not self._started_once else 1):
            try:
                self._start_on_port()
                break
            except PortTaken:
                if self._started_once:
                    raise
                self.log_file.unlink(missing_ok=True)   # its bind error is told: start anew
                self.port = _free_port()
                self.url = f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{DATABASE}"
        else:
            raise RuntimeError("PostgreSQL found each of 5 free ports taken when it bound it")
        self._started_once = True

    def _start_on_port(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.socket_dir} -c synchronous_commit=on "
            "-c max_connections=50 -c shared_buffers=16MB"
        )
        try:
            self._run([
                str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                "-o", options, "-w", "-t", "60", "start",
            ])
        except RuntimeError as e:
            if "could not bind" in str(e) and "Address already in use" in str(e):
                raise PortTaken(str(e)) from None
            raise
        self._run([
            str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "30",
        ])
        self._running = True

    def create_database(self) -> None:
        self._run([
            str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER,
            "-d", "postgres", "-c", f"CREATE DATABASE {DATABASE}",
        ])

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``fast`` for a clean shutdown, ``immediate`` to just go)."""
        if not self._running:
            return
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
                  check=False)
        self._running = False

    def destroy(self) -> None:
        """Stop the server and delete every file of the cluster."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(tmpdir: str | os.PathLike[str]) -> tuple[str, Callable[[], None]]:
    """Start a fresh cluster under ``tmpdir`` with database ``warren``; return (url, stop).

    ``stop()`` kills the server and removes its files.
    """
    cluster = start_cluster(tmpdir)
    return cluster.url, cluster.destroy


def start_cluster(tmpdir: str | os.PathLike[str]) -> PostgresCluster:
    """Like :func:`start_postgres` but return the cluster, for tests that stop and restart it."""
    cluster = PostgresCluster(tmpdir)
    atexit.register(cluster.destroy)  # even if the caller never stops it (idempotent)
    try:
        cluster.start()
        cluster.create_database()
    except BaseException:
        cluster.destroy()
        raise
    return cluster
