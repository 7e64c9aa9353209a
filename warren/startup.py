"""Why a broker cannot start, in one line: the setting, its value, and what to do.

``warren run`` checks what it can before it opens anything (the data directory, the store
URL and its driver) and turns what fails later (a port in use, a database that does not
answer) into a :class:`StartupError`. Its message is printed as the one line
``warren cannot start: ...`` and the process exits 1: no traceback, which would bury the
cause, and no listener left open. The setting is named the way the operator wrote it (flag,
``WARREN_*`` variable or key of the config file: :meth:`warren.config.Config.describe`).
"""

from __future__ import annotations

import errno
import os
from typing import Any

from .config import Config


class StartupError(Exception):
    """The broker cannot start; ``str()`` is the one line to print."""


def first_line(error: BaseException | str) -> str:
    """An exception's text on one line (drivers' messages run over several)."""
    text = str(error).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(error).__name__


def _os_reason(error: OSError) -> str:
    return (error.strerror or first_line(error)).lower()


def check_data_dir(config: Config) -> None:
    """The data directory exists (made if need be) and this process can write in it."""
    if config.store == "memory" and config.ha != "shared-file":
        return
    if config.store == "sql" and config.store_url and config.ha != "shared-file":
        return  # the data directory holds nothing then
    _check_writable_dir(config.data_dir, config.describe("data_dir"), config.setting("data_dir"))


def _check_writable_dir(path: str, described: str, setting: str) -> None:
    where = os.path.abspath(path)
    shown = described if os.path.abspath(path) == path else f"{described} ({where})"
    other = f"choose another {setting}" if setting.startswith("--") else \
        f"set {setting.split(' ')[0]} to another directory"
    if os.path.exists(where) and not os.path.isdir(where):
        raise StartupError(f"{shown}: a file, not a directory: remove it or {other}")
    try:
        os.makedirs(where, exist_ok=True)
        probe = os.path.join(where, f".warren-write-test-{os.getpid()}")
        with open(probe, "wb") as f:
            f.write(b"x")
        os.unlink(probe)
    except OSError as error:
        raise StartupError(f"{shown}: {_dir_problem(error, other)}") from None


def _dir_problem(error: OSError, other: str) -> str:
    if error.errno == errno.EROFS:
        return f"on a read-only file system: mount it read-write or {other}"
    if error.errno in (errno.EACCES, errno.EPERM):
        return (f"not writable (permission denied) by uid {os.geteuid()}: give the user running "
                f"warren write access to it, or {other}")
    if error.errno == errno.ENOTDIR:
        return f"a part of the path is a file, not a directory: {other}"
    if error.errno == errno.ENOSPC:
        return f"no space left on the device: free some, or {other}"
    return f"cannot write there ({_os_reason(error)}): {other}"


def check_store_url(config: Config) -> None:
    """For the SQL store: the URL parses, names a known database and its driver is here."""
    if config.store != "sql":
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    shown = config.describe("store_url")
    setting = config.setting("store_url")
    fix = f"correct {setting}" if setting.startswith("--") else f"correct {setting.split()[0]}"
    try:
        url = make_url(config.sql_url)
    except ArgumentError:
        raise StartupError(f"{shown}: not a database URL: write postgresql+psycopg://user:"
                           f"password@host/database or sqlite:///path/to/warren.db") from None
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise StartupError(f"{shown}: unknown database '{url.drivername}': warren's SQL store "
                           f"runs on PostgreSQL (postgresql+psycopg://...) or SQLite "
                           f"(sqlite:///...): {fix}") from None
    if url.get_backend_name() not in ("postgresql", "sqlite"):
        raise StartupError(f"{shown}: warren's SQL store does not run on "
                           f"{url.get_backend_name()}: use PostgreSQL (postgresql+psycopg://...)"
                           f" or SQLite (sqlite:///...)")
    try:
        dialect.import_dbapi()
    except ImportError as error:
        module = getattr(error, "name", None) or url.get_driver_name()
        if url.get_backend_name() == "postgresql" and module.split(".")[0] == "psycopg":
            hint = "pip install 'psycopg[binary]' (a dependency of warren: pip install .)"
        elif url.get_backend_name() == "postgresql":
            hint = "pip install it, or write postgresql+psycopg://, the driver warren installs"
        else:
            hint = f"pip install it, or {fix}"
        database = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}[url.get_backend_name()]
        raise StartupError(f"{shown}: the {database} driver {module} is not "
                           f"installed: {hint}") from None
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            directory = os.path.dirname(os.path.abspath(database))
            _check_writable_dir(directory, f"{shown}: the directory {directory}", setting)


def listen_problem(described: str, setting: str, bind: str, error: Any) -> StartupError:
    """A :class:`~twisted.internet.error.CannotListenError` as one line."""
    socket_error = getattr(error, "socketError", None)
    code = getattr(socket_error, "errno", None)
    other = f"give another port with {setting}" if setting.startswith("--") else \
        f"set {setting.split()[0]} to another port"
    if code == errno.EADDRINUSE:
        return StartupError(f"{described}: address already in use on {bind} (another program "
                            f"listens there): stop it, or {other} (0 turns that listener off)")
    if code in (errno.EACCES, errno.EPERM):
        return StartupError(f"{described}: permission denied on {bind} (ports below 1024 need "
                            f"root or CAP_NET_BIND_SERVICE): {other}")
    if code == errno.EADDRNOTAVAIL or socket_error is not None and code is None:
        return StartupError(f"{described}: cannot listen on --bind {bind} "
                            f"({first_line(socket_error or error)}): give an address of this "
                            "host, or 0.0.0.0 for all")
    return StartupError(f"{described}: cannot listen on {bind} "
                        f"({first_line(socket_error or error)}): {other}")


def unreachable_database(config: Config, error: BaseException) -> StartupError:
    """The store's database refused or did not answer."""
    setting = config.setting("store_url")
    fix = f"correct {setting}" if setting.startswith("--") else f"correct {setting.split()[0]}"
    cause = error.__cause__ or error
    return StartupError(f"{config.describe('store_url')}: cannot connect to the database "
                        f"({first_line(cause)}): start the database or {fix}")
