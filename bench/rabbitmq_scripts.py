"""Where RabbitMQ's scripts are: rabbitmq-server, and rabbitmqctl / rabbitmq-plugins beside it.

One place for bench/ and the interop tests, so neither writes out one distribution's paths.
The server is the one given (bench's ``--rabbitmq-server``), else ``$WARREN_RABBITMQ_SERVER``,
else ``rabbitmq-server`` on PATH. Debian's PATH entry is a wrapper that switches to the rabbitmq
user and its /var directories (``su rabbitmq ... DIR/${SCRIPT}``), which a private node cannot
use: the directory it delegates to is read from the wrapper and used instead. The other scripts
are taken from the same directory as the server, so all three belong to one installation.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import NamedTuple

#: names the rabbitmq-server to use when it is not on PATH (or another one than PATH's)
SERVER_VARIABLE = "WARREN_RABBITMQ_SERVER"


class RabbitScripts(NamedTuple):
    server: str
    ctl: str
    plugins: str


def real_server(server: str) -> str:
    """``server`` itself, or the script a Debian-style wrapper hands over to."""
    text = Path(server).read_bytes()[:20000].decode(errors="replace")
    delegate = re.search(r'(/\S+)/\$\{SCRIPT\}', text)
    if "su rabbitmq" in text and delegate:
        return str(Path(delegate.group(1)) / "rabbitmq-server")
    return server


def find_rabbitmq(given: str | None = None) -> RabbitScripts | None:
    """The scripts of the rabbitmq-server ``given``, named by the variable or on PATH; None
    when there is none (the caller says what to do: install it, skip, or fail)."""
    found = shutil.which(given or os.environ.get(SERVER_VARIABLE) or "rabbitmq-server")
    if found is None:
        return None
    server = Path(real_server(found))
    return RabbitScripts(str(server), str(server.with_name("rabbitmqctl")),
                         str(server.with_name("rabbitmq-plugins")))
