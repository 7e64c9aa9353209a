"""The shared-file locker: an exclusive ``fcntl`` lock on ``DATA_DIR/lock``.

As ActiveMQ's ``SharedFileLocker``: the broker that holds a write lock on the file is master;
the lock lives as long as the process (the kernel, or the NFS server's lock manager, drops it
when the process dies however it dies), so a slave that keeps trying takes over within one
retry of a crash. The holder writes its owner id into the file so a waiting broker can say
whom it waits for.

Which lock call, and why:

- POSIX byte-range locks (``fcntl(F_SETLK)``) are the ones NFS carries to the server (NFSv3
  through lockd/NLM, NFSv4 in the protocol itself), so two hosts really exclude each other.
  BSD ``flock`` is local-only on several systems' NFS clients.
- Classic POSIX locks belong to the *process* and are dropped when *any* descriptor of the file
  is closed; two lockers in one process never conflict. Linux's open-file-description locks
  (``F_OFD_SETLK``, 3.15+) are the same byte-range locks on the wire but belong to the open
  file, so we use them when the platform has them and classic ``lockf`` otherwise.

``renew()`` cannot ask the kernel whether our own lock still holds; it checks what it can: the
lock file at the path is still the file we locked (deleted or replaced means another broker may
lock the new one), and its content is still our id.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from .locker import Locker, LockUnavailable, new_owner_id

LOCK_FILE = "lock"

_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None)
_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", None)
#: struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
_FLOCK = struct.Struct("@hhqqi4x")
_BUSY = (errno.EACCES, errno.EAGAIN)


def _flock(lock_type: int) -> bytes:
    return _FLOCK.pack(lock_type, os.SEEK_SET, 0, 0, 0)  # whole file; l_pid must be 0 for OFD


class SharedFileLocker(Locker):
    """Master lock = exclusive lock on ``<directory>/lock``."""

    def __init__(self, directory: str, owner: str | None = None, *,
                 filename: str = LOCK_FILE) -> None:
        self.path = os.path.join(os.path.abspath(directory), filename)
        self.owner = owner or new_owner_id()
        self.description = f"file lock on {self.path}"
        self._fd: int | None = None      # open (and locked) while we hold the lock

    # -------------------------------------------------------------- Locker
    def acquire(self) -> bool:
        if self._fd is not None:
            return self.renew()
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise LockUnavailable(f"cannot open {self.path}: {error}") from error
        try:
            self._lock(fd, fcntl.F_WRLCK)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as error:
            os.close(fd)
            if error.errno in _BUSY:
                return False
            raise LockUnavailable(f"cannot lock {self.path}: {error}") from error
        self._fd = fd
        try:
            data = (self.owner + "\n").encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        except OSError:
            pass  # the id is informative only; the lock is what counts
        return True

    def renew(self) -> bool:
        fd = self._fd
        if fd is None:
            return False
        try:
            ours = os.fstat(fd)
            at_path = os.stat(self.path)
        except OSError:
            return False  # gone, or a stale NFS handle: treat as lost
        if (ours.st_dev, ours.st_ino) != (at_path.st_dev, at_path.st_ino) or ours.st_nlink == 0:
            return False
        try:
            return os.pread(fd, 4096, 0).decode(errors="replace").strip() == self.owner
        except OSError:
            return False

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            self._lock(fd, fcntl.F_UNLCK)
        except OSError:
            pass
        os.close(fd)  # closing drops the lock in any case

    def holder(self) -> str | None:
        if self._fd is not None:
            return self.owner
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise LockUnavailable(f"cannot open {self.path}: {error}") from error
        try:
            if not self._locked_by_other(fd):
                return None
            text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            return text or "(unknown)"
        finally:
            # Safe with OFD locks; with classic POSIX locks we hold none here (``_fd`` is None).
            os.close(fd)

    def close(self) -> None:
        self.release()

    # -------------------------------------------------------------- fcntl
    @staticmethod
    def _lock(fd: int, lock_type: int) -> None:
        if _OFD_SETLK is not None:
            fcntl.fcntl(fd, _OFD_SETLK, _flock(lock_type))
        elif lock_type == fcntl.F_UNLCK:
            fcntl.lockf(fd, fcntl.LOCK_UN)
        else:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    @staticmethod
    def _locked_by_other(fd: int) -> bool:
        """Ask (without taking it) whether a write lock on the file would conflict."""
        if _OFD_GETLK is not None:
            answer = fcntl.fcntl(fd, _OFD_GETLK, _flock(fcntl.F_RDLCK))
        else:
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, _flock(fcntl.F_RDLCK))
        return _FLOCK.unpack(answer)[0] != fcntl.F_UNLCK
