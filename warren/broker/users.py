"""Users, password hashes and permissions, as RabbitMQ keeps them.

Password hashes use RabbitMQ's formats: base64 of a 4-byte salt followed by
SHA-256(salt + password) (``rabbit_password_hashing_sha256``, the default) or SHA-512
(``rabbit_password_hashing_sha512``, RabbitMQ's ``password_hashing_module`` choice), so
definitions exported from RabbitMQ import here and back whichever it used. The operator picks
the algorithm for new passwords with ``password_hashing_module``.

Permissions are three regular expressions (configure, write, read) per user and vhost; an
empty pattern grants nothing, as in RabbitMQ.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field

from ..model.errors import AccessRefused

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
#: RabbitMQ's hashing modules and their digests (md5 verifies only: hashes of 3.5 and older)
HASHING_ALGORITHMS = {
    "rabbit_password_hashing_sha256": hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
}


def hash_password(password: str, salt: bytes | None = None,
                  algorithm: str = HASHING_ALGORITHM) -> str:
    salt = os.urandom(4) if salt is None else salt
    digest = HASHING_ALGORITHMS[algorithm](salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def algorithm_of(password_hash: str) -> str:
    """The hashing module a stored hash was made with, from its length (RabbitMQ's files
    carry it as ``hashing_algorithm``; older ones did not)."""
    try:
        size = len(base64.b64decode(password_hash))
    except ValueError:
        return HASHING_ALGORITHM
    return "rabbit_password_hashing_sha512" if size == 4 + 64 else HASHING_ALGORITHM


def check_password(password: str, password_hash: str) -> bool:
    try:
        raw = base64.b64decode(password_hash)
    except ValueError:
        return False
    if len(raw) < 5:
        return False
    salt = raw[:4]
    if len(raw) == 4 + 32:
        digest = hashlib.sha256(salt + password.encode()).digest()
    elif len(raw) == 4 + 64:
        digest = hashlib.sha512(salt + password.encode()).digest()
    elif len(raw) == 4 + 16:
        digest = hashlib.md5(salt + password.encode()).digest()
    else:
        return False
    return hmac.compare_digest(raw[4:], digest)


@dataclass
class User:
    name: str
    password_hash: str = ""
    tags: list[str] = field(default_factory=list)
    hashing_algorithm: str = HASHING_ALGORITHM
    #: RabbitMQ's user limits (``max-connections``, ``max-channels``); see ``limits.py``
    limits: dict = field(default_factory=dict)

    def check(self, password: str) -> bool:
        return bool(self.password_hash) and check_password(password, self.password_hash)

    def definition(self) -> dict:
        return {"name": self.name, "password_hash": self.password_hash,
                "hashing_algorithm": self.hashing_algorithm, "tags": list(self.tags),
                "limits": dict(self.limits)}


@dataclass
class Permission:
    user: str
    vhost: str
    configure: str = ".*"
    write: str = ".*"
    read: str = ".*"
    _compiled: dict = field(default_factory=dict, repr=False, compare=False)

    def allows(self, kind: str, resource: str) -> bool:
        pattern = getattr(self, kind)
        if pattern == "":
            return False
        rx = self._compiled.get(kind)
        if rx is None or rx[0] != pattern:
            rx = (pattern, re.compile(pattern))
            self._compiled[kind] = rx
        return rx[1].match(resource) is not None

    def definition(self) -> dict:
        return {"user": self.user, "vhost": self.vhost, "configure": self.configure,
                "write": self.write, "read": self.read}


def require(perm: Permission | None, user: str, vhost: str, kind: str, resource_kind: str,
            name: str) -> None:
    """Raise 403 with RabbitMQ's text unless ``perm`` allows ``kind`` on the resource."""
    if perm is not None and perm.allows(kind, name):
        return
    label = "exchange" if resource_kind == "exchange" else "queue"
    shown = "amq.default" if (resource_kind == "exchange" and name == "") else name
    raise AccessRefused(
        f"access to {label} '{shown}' in vhost '{vhost}' refused for user '{user}'")
