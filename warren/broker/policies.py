"""Policies: named patterns that set queue and exchange settings live, as RabbitMQ's.

For each queue or exchange the matching policy with the highest priority applies (ties: the
later name, as RabbitMQ sorts); its ``definition`` keys are the argument names without ``x-``.
Applying is idempotent and runs on declare and whenever a policy is set or cleared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .erlang_terms import erlang_term
from .arguments import QUEUE_ARGUMENTS
from ..model.errors import PreconditionFailed

APPLY_TO = ("queues", "exchanges", "all", "classic_queues", "quorum_queues", "streams")

EXCHANGE_KEYS = {"alternate-exchange"}
#: federation's policy keys (``rabbit_federation_parameters:validate_policy``): which
#: upstreams federate a matching exchange or queue; the federation component reads them
FEDERATION_KEYS = {"federation-upstream": "federation upstream name",
                   "federation-upstream-set": "federation upstream set name",
                   "federation-upstream-pattern": "federation upstream pattern name"}
#: keys whose invalid values RabbitMQ reports as "<value> is not a valid <name>"
#: (``rabbit_quorum_queue:validate_policy``), and warren's back-off keys in the same words
VALUE_NAMES = {"delivery-limit": "delivery limit",
               "redelivery-initial-delay": "redelivery initial delay",
               "redelivery-multiplier": "redelivery multiplier",
               "redelivery-max-delay": "redelivery max delay"}
QUEUE_KEYS = {k[2:] for k in QUEUE_ARGUMENTS} | {"ha-mode", "ha-params", "ha-sync-mode",
                                                  "queue-mode", "queue-master-locator"}


@dataclass
class Policy:
    vhost: str
    name: str
    pattern: str
    definition: dict[str, Any]
    priority: int = 0
    apply_to: str = "all"
    _rx: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.apply_to not in APPLY_TO:
            raise PreconditionFailed(f"Invalid value for apply-to: '{self.apply_to}'")
        try:
            self._rx = re.compile(self.pattern)
        except re.error as e:
            raise PreconditionFailed(f"Invalid regex '{self.pattern}': {e}") from None
        if not isinstance(self.definition, dict) or not self.definition:
            raise PreconditionFailed("Policy definition must be a non-empty JSON object")
        for key, value in self.definition.items():
            check = QUEUE_ARGUMENTS.get("x-" + key)
            if check is not None:
                try:
                    self.definition[key] = check(value)
                except ValueError as e:
                    if key in VALUE_NAMES:
                        raise PreconditionFailed(
                            f"Validation failed\n\n{erlang_term(value)} is not a valid "
                            f"{VALUE_NAMES[key]}\n") from None
                    raise PreconditionFailed(f"Validation failed\n\n{key}: {e}") from None
            elif key in FEDERATION_KEYS:
                if not isinstance(value, str):
                    raise PreconditionFailed(
                        f"Validation failed\n\n{erlang_term(value)} is not a valid "
                        f"{FEDERATION_KEYS[key]}")
                if key == "federation-upstream-pattern":
                    try:
                        re.compile(value)
                    except re.error as e:
                        raise PreconditionFailed(
                            f"Validation failed\n\ncould not compile pattern {value} to a "
                            f"regular expression. Error: {e}") from None
            elif key not in EXCHANGE_KEYS and key not in QUEUE_KEYS:
                raise PreconditionFailed(
                    f"Validation failed\n\n[{{<<\"{key}\">>,...}}] are not recognised policy "
                    "settings")

        if len(FEDERATION_KEYS.keys() & self.definition.keys()) > 1:
            raise PreconditionFailed(
                "Validation failed\n\ncannot specify federation-upstream, "
                "federation-upstream-set or federation-upstream-pattern together")

    def applies_to(self, kind: str, name: str) -> bool:
        """``kind``: queue, stream (a queue of type stream) or exchange."""
        if kind == "stream" and self.apply_to not in ("queues", "all", "streams"):
            return False
        if kind == "queue" and self.apply_to not in ("queues", "all", "classic_queues"):
            return False
        if kind == "exchange" and self.apply_to not in ("exchanges", "all"):
            return False
        return self._rx.search(name) is not None

    def as_json(self) -> dict[str, Any]:
        return {"vhost": self.vhost, "name": self.name, "pattern": self.pattern,
                "apply-to": self.apply_to, "definition": self.definition,
                "priority": self.priority}


def effective(policies: list[Policy], kind: str, name: str) -> Policy | None:
    best = None
    for p in policies:
        if p.applies_to(kind, name) and (best is None or (p.priority, p.name) >
                                         (best.priority, best.name)):
            best = p
    return best


