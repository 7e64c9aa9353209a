"""What a test does when a tool it needs beyond Python is missing: the one place that decides.

Some tests need programs pip does not install: PostgreSQL 15's server binaries (the SQL store
and HA tests, ``tests/store/pg.py``), Chromium (the console's UI tests,
``tests/webconsole/browser.py``) and Debian's ``rabbitmq-server`` (the interop tests and
rabbitmqadmin, ``tests/network/rabbitmq.py``). By default, as on CI, the suite runs them all:
Chromium and rabbitmq-server are installed with apt-get when missing (as root), and a tool that
is still missing fails its tests loudly, so nothing is silently left untested.

A developer without root or without those packages sets ``WARREN_TEST_SKIP_MISSING=1``: then
nothing is installed and a test whose tool is missing is skipped, its reason naming the tool
and how to get it (``pytest -rs`` lists them).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

#: set to 1 (or yes/true) to skip tests whose tools are missing instead of installing or failing
SKIP_MISSING = "WARREN_TEST_SKIP_MISSING"


def skipping_missing() -> bool:
    """True when tests are to be skipped, not installed for, when a tool is missing."""
    return os.environ.get(SKIP_MISSING, "").strip().lower() in ("1", "yes", "true", "on")


def tool_missing(tool: str, remedy: str) -> NoReturn:
    """Skip the current test (``WARREN_TEST_SKIP_MISSING`` set) or fail it, saying which
    *tool* is missing and the *remedy*."""
    import pytest   # here, not at the top: bench/ reuses the tools' modules without pytest

    if skipping_missing():
        pytest.skip(f"{tool} is missing ({SKIP_MISSING} is set): {remedy}")
    pytest.fail(f"{tool} is missing: {remedy} (or set {SKIP_MISSING}=1 to skip the tests "
                "that need it)", pytrace=False)


@contextmanager
def one_installer() -> Iterator[None]:
    """Held while a test installs a Debian package. The suite runs on several pytest-xdist
    workers, and dpkg refuses a second apt-get while one runs: the second worker waits here,
    then finds the package installed."""
    with open(os.path.join(tempfile.gettempdir(), "warren-tests-apt.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
