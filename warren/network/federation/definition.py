"""Federation upstreams and upstream sets: RabbitMQ's keys, defaults and validation texts.

An upstream is a runtime parameter of component ``federation-upstream`` (``uri``, a string or
a list, plus the shared keys below); a set is one of ``federation-upstream-set``, a list of
``{"upstream": name, ...}`` whose other keys override the upstream's. The texts are
``rabbit_federation_parameters``' through ``rabbit_parameter_validation`` (shared with the
shovel's validators), so a definitions file written for RabbitMQ imports unchanged and a
script matching on an error text keeps working. warren refuses two things RabbitMQ lets
through because they can only ever fail: ``max-hops`` below 1 (nothing would cross the link)
and an upstream that is this broker itself (the same listener and vhost: a link to itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..shovel.definition import _boolean, _enum, _number, _string, _uri, erlang_term
from ..uri import AmqpURI, LocalBroker, parse_uri

ACK_MODES = ("no-ack", "on-publish", "on-confirm")
#: RabbitMQ's defaults (rabbit_federation_upstream:from_upstream_or_set, ?DEF_PREFETCH)
DEFAULT_PREFETCH = 1000
DEFAULT_RECONNECT_DELAY = 5
DEFAULT_MAX_HOPS = 1


def _max_hops(key: str, value: Any) -> str | None:
    problem = _number(key, value)
    if problem is None and value < 1:
        return f"{key} should be at least 1, actually was {erlang_term(value)}"
    return problem


#: rabbit_federation_parameters:shared_validation/0, in its order
SHARED: dict[str, Any] = {
    "exchange": _string,
    "queue": _string,
    "consumer-tag": _string,
    "prefetch-count": _number,
    "reconnect-delay": _number,
    "max-hops": _max_hops,
    "expires": _number,
    "message-ttl": _number,
    "trust-user-id": _boolean,
    "ack-mode": _enum(ACK_MODES),
    "resource-cleanup-mode": _enum(("default", "never")),
    "ha-policy": _string,
    "bind-nowait": _boolean,
    "channel-use-mode": _enum(("multiple", "single")),
}


def _proplist(name: str, value: Any, checks: dict[str, Any], mandatory: str) -> list[str]:
    """``rabbit_parameter_validation:proplist``: unknown keys, a missing mandatory key, and
    each present key's check."""
    if not isinstance(value, dict):
        return [f"{name} not a list {erlang_term(value)}"]
    errors = []
    unknown = [(k, v) for k, v in value.items() if k not in checks]
    if unknown:
        errors.append(f"Unrecognised terms {erlang_term(unknown)} in {name}")
    for key, check in checks.items():
        if key in value:
            problem = check(key, value[key])
            if problem:
                errors.append(problem)
        elif key == mandatory:
            errors.append(f'Key "{key}" not found in {name}')
    return errors


def validate_upstream(name: str, value: Any) -> list[str]:
    return _proplist(name, value, {"uri": _uri, **SHARED}, "uri")


def validate_set(name: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        return [f"{name} not a list {erlang_term(value)}"]
    errors: list[str] = []
    for element in value:
        errors += _proplist(name, element, {"upstream": _string, **SHARED}, "upstream")
    return errors


def uris_of(value: dict[str, Any]) -> list[AmqpURI | LocalBroker]:
    raw = value["uri"]
    return [parse_uri(u) for u in (raw if isinstance(raw, list) else [raw])]


@dataclass(frozen=True)
class Upstream:
    """One upstream as a link uses it: the parameter with a set element's overrides and
    RabbitMQ's defaults applied, for one federated exchange or queue."""

    name: str
    uris: tuple[AmqpURI, ...]
    exchange: str
    queue: str
    consumer_tag: str
    prefetch: int
    reconnect_delay: float
    max_hops: int
    expires: int | None
    message_ttl: int | None
    trust_user_id: bool
    ack_mode: str

    @classmethod
    def resolve(cls, name: str, upstream: dict[str, Any], overrides: dict[str, Any],
                local_name: str) -> Upstream:
        """``from_upstream_or_set``: a set element's key wins over the upstream's."""
        def get(key: str, default: Any) -> Any:
            if key in overrides:
                return overrides[key]
            return upstream.get(key, default)

        raw = get("uri", [])
        uris = tuple(u for u in (parse_uri(x) for x in (raw if isinstance(raw, list)
                                                          else [raw]))
                     if isinstance(u, AmqpURI))
        expires, ttl = get("expires", None), get("message-ttl", None)
        return cls(
            name=name, uris=uris,
            exchange=get("exchange", local_name), queue=get("queue", local_name),
            consumer_tag=get("consumer-tag", f"federation-link-{name}"),
            prefetch=max(1, int(get("prefetch-count", DEFAULT_PREFETCH))),
            reconnect_delay=float(get("reconnect-delay", DEFAULT_RECONNECT_DELAY)),
            max_hops=int(get("max-hops", DEFAULT_MAX_HOPS)),
            expires=int(expires) if expires is not None else None,
            message_ttl=int(ttl) if ttl is not None else None,
            trust_user_id=bool(get("trust-user-id", False)),
            ack_mode=get("ack-mode", "on-confirm"))
