"""The master lock of a shared-storage pair, behind one small interface.

Every broker of a master/slave pair points at one store; exactly one of them may write to it
and serve clients. Which one is decided by a :class:`Locker` — a file lock in the shared data
directory (:mod:`warren.ha.file_locker`) or a lease row in the shared database
(:mod:`warren.ha.lease_locker`), as ActiveMQ's ``SharedFileLocker`` and
``LeaseDatabaseLocker``. The :class:`~warren.ha.runner.HaRunner` drives it:
``acquire()`` until it returns True, then ``renew()`` every ``lease_renew`` seconds while
serving; when a renewal fails the runner fences itself.

Every method may block (file system, database round trip) and is called off the reactor
thread, one call at a time. None of them may block for long: a locker that cannot answer
raises :class:`LockUnavailable` (or returns False) so the runner can decide.
"""

from __future__ import annotations

import abc
import os
import socket
import time
import uuid


class LockUnavailable(Exception):
    """The lock's medium (file system, database) could not be asked; the holder is unknown."""


def new_owner_id(node_name: str = "") -> str:
    """A lock owner id unique to this process *and* this attempt.

    The host, pid and start time say who it is in "waiting for the lock held by ..." lines and
    in the refusal of a second broker on a store in use (:func:`describe_owner`); the random
    suffix makes a restarted process (same pid in a fresh container) a different owner, so it
    can never mistake its predecessor's lease for its own.
    """
    who = node_name or "warren"
    started = time.strftime(_STARTED_FORMAT, time.gmtime())
    return f"{who}/{socket.gethostname()}/{os.getpid()}/{started}/{uuid.uuid4().hex[:8]}"


_STARTED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def describe_owner(owner: str) -> str:
    """An owner id as an operator reads it: "pid 812 on host db1, started 2026-12-04 ...".

    Ids written by an older broker (no start time) or by hand are shown as they are.
    """
    parts = owner.rsplit("/", 4)
    if len(parts) == 5 and parts[2].isdigit():
        node, host, pid, started, _suffix = parts
        try:
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.strptime(started, _STARTED_FORMAT))
        except ValueError:
            return owner
        return f"pid {pid} on host {host}, started {when}, node {node}"
    return owner


class Locker(abc.ABC):
    """One contender for the master lock; ``owner`` is the id it writes where others see it."""

    #: the id this locker holds the lock under (see :func:`new_owner_id`)
    owner: str
    #: what the runner tells the operator the lock is ("file /shared/lock", "lease in ...")
    description: str

    @abc.abstractmethod
    def acquire(self) -> bool:
        """Try once, without waiting: True if this locker now holds the lock."""

    @abc.abstractmethod
    def renew(self) -> bool:
        """Confirm (and, for a lease, extend) the lock held: False means it is lost."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lock up so a waiting broker takes over at once; safe if not held."""

    @abc.abstractmethod
    def holder(self) -> str | None:
        """The owner id of whoever holds the lock now, or None if it is free."""

    def probe(self) -> bool:
        """A cheap attempt between full ones; a locker without a fast path never wins by one
        (the runner probes only a locker with a liveness session)."""
        return False

    def close(self) -> None:
        """Release what the locker holds open (file descriptor, connection pool)."""
