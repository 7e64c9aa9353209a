"""Validation of queue arguments, with RabbitMQ's error texts (406 naming the argument).

Each checker returns the normalised value or raises PreconditionFailed. The same checkers
validate policy definitions, so an argument and a policy key agree on what is valid.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import PreconditionFailed

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (str, bytes)):
        return "longstr"
    if isinstance(v, float):
        return "double"
    if isinstance(v, dict):
        return "table"
    if isinstance(v, list):
        return "array"
    return type(v).__name__


def _integer(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{{unacceptable_type,{_type_name(v)}}}")
        if v < minimum:
            if minimum == 0:
                raise ValueError(f"{{value_negative,{v}}}")
            raise ValueError(f"{{value_zero,{v}}}" if v == 0 else f"{{value_negative,{v}}}")
        if maximum is not None and v > maximum:
            raise ValueError(f"{{value_too_large,{v},{maximum}}}")
        return v
    return check


def _string(v: Any) -> str:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if not isinstance(v, str):
        raise ValueError(f"{{unacceptable_type,{_type_name(v)}}}")
    return v


def _overflow(v: Any) -> str:
    s = _string(v)
    if s not in OVERFLOW_MODES:
        raise ValueError(f"{{unacceptable_value,{s}}}")
    return s


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{{unacceptable_type,{_type_name(v)}}}")
    return v


def _queue_type(v: Any) -> str:
    s = _string(v)
    if s not in ("classic", "quorum", "stream"):
        raise ValueError(f"{{unacceptable_value,{s}}}")
    return s


def _queue_mode(v: Any) -> str:
    s = _string(v)
    if s not in ("default", "lazy"):
        raise ValueError(f"{{unacceptable_value,{s}}}")
    return s


QUEUE_ARGUMENTS: dict[str, Callable[[Any], Any]] = {
    "x-message-ttl": _integer(0),
    "x-expires": _integer(1),
    "x-max-length": _integer(0),
    "x-max-length-bytes": _integer(0),
    "x-overflow": _overflow,
    "x-dead-letter-exchange": _string,
    "x-dead-letter-routing-key": _string,
    "x-max-priority": _integer(0, 255),
    "x-single-active-consumer": _boolean,
    "x-queue-type": _queue_type,
    "x-queue-mode": _queue_mode,
    "x-delivery-limit": _integer(0),
}


def validate_queue_arguments(vhost: str, queue: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Known x- arguments checked and normalised; unknown ones kept as RabbitMQ does."""
    out: dict[str, Any] = {}
    for key, value in arguments.items():
        check = QUEUE_ARGUMENTS.get(key)
        if check is None:
            out[key] = value
            continue
        try:
            out[key] = check(value)
        except ValueError as e:
            raise PreconditionFailed(
                f"invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': {e}") from None
    if "x-dead-letter-routing-key" in out and "x-dead-letter-exchange" not in out:
        raise PreconditionFailed(
            f"invalid arg 'x-dead-letter-routing-key' for queue '{queue}' in vhost '{vhost}': "
            "{routing_key_but_no_dlx_defined}")
    return out
