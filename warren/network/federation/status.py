"""What ``/api/federation-links`` shows of one link (``rabbit_federation_status``'s fields).

A link is ``starting`` until its upstream objects are declared and it consumes, then
``running``; when the connection fails or drops it is ``error`` with the reason (and retries
after ``reconnect-delay``). The entry carries RabbitMQ's keys so tools written for the
federation management plugin read it unchanged: ``node``, ``vhost``, ``exchange`` and
``upstream_exchange`` (or ``queue``, ``upstream_queue`` and ``consumer_tag``), ``type``,
``upstream``, ``id``, ``status``, ``local_connection``, ``uri`` (no credentials),
``timestamp`` and ``error``.
"""

from __future__ import annotations

import time
import zlib
from typing import Any


class LinkStatus:
    """A link's state and the time it last changed."""

    def __init__(self, node: str, vhost: str, kind: str, local_name: str, upstream_name: str,
                 upstream_object: str, uri: str) -> None:
        self.node = node
        self.vhost = vhost
        self.kind = kind                  # exchange | queue
        self.local_name = local_name
        self.upstream_name = upstream_name
        self.upstream_object = upstream_object
        self.uri = uri
        self.state = "starting"
        self.error = ""
        self.local_connection = ""
        self.timestamp = time.localtime()
        # RabbitMQ's id: 8 hex digits of a 32-bit hash of the link's key, stable across
        # restarts of the link
        key = f"{vhost}\0{kind}\0{local_name}\0{upstream_name}\0{upstream_object}".encode()
        self.id = f"{zlib.crc32(key):08x}"

    def set(self, state: str, error: str = "") -> None:
        if (state, error) != (self.state, self.error):
            self.timestamp = time.localtime()
        self.state, self.error = state, error

    def as_json(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "node": self.node, "vhost": self.vhost, "id": self.id,
            self.kind: self.local_name, f"upstream_{self.kind}": self.upstream_object,
            "type": self.kind, "upstream": self.upstream_name, "uri": self.uri,
            "status": self.state,
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%S", self.timestamp),
        }
        if self.state == "running":       # split_status({running, ConnName})
            out["local_connection"] = self.local_connection
        elif self.state == "error":
            out["error"] = self.error
        out.update(extra or {})
        return out
