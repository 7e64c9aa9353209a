"""Validation of queue arguments, with RabbitMQ's error texts (406 naming the argument).

Each checker returns the normalised value or raises PreconditionFailed. The same checkers
validate policy definitions, so an argument and a policy key agree on what is valid.
"""

from __future__ import annotations

from typing import Any, Callable

from ..model.errors import PreconditionFailed

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")


#: rabbit_misc:check_expiry's ceiling for TTLs and x-expires (ms)
MAX_EXPIRY = 4294967295

#: RabbitMQ's highest supported x-max-priority
MAX_PRIORITY = 255


def field_type_name(v: Any) -> str:
    """The AMQP field-table type name RabbitMQ prints for a value (pika/pamqp encodings)."""
    import datetime
    import decimal
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (str, bytes)):
        return "longstr"
    if isinstance(v, float):
        return "double"
    if isinstance(v, decimal.Decimal):
        return "decimal"
    if isinstance(v, datetime.datetime):
        return "timestamp"
    if isinstance(v, dict):
        return "table"
    if isinstance(v, (list, tuple)):
        return "array"
    if v is None:
        return "void"
    if isinstance(v, int):
        return "long"
    return type(v).__name__


def _erl_string(text: str) -> str:
    """An Erlang string as ``~p`` prints it (the error reasons that are formatted strings)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(_erl_string(f"expected integer, got {field_type_name(v)}"))
    return v


def _non_negative(v: Any) -> int:
    """check_non_neg_int_arg."""
    v = _int(v)
    if v < 0:
        raise ValueError(f"{{value_negative,{v}}}")
    return v


def _expiry(v: int) -> int:
    """rabbit_misc:check_expiry."""
    if v > MAX_EXPIRY:
        raise ValueError(f"{{value_too_big,{v}}}")
    if v < 0:
        raise ValueError(f"{{value_negative,{v}}}")
    return v


def _message_ttl(v: Any) -> int:
    """check_message_ttl_arg."""
    return _expiry(_int(v))


def _expires(v: Any) -> int:
    """check_expires_arg: a queue cannot expire after 0 ms."""
    v = _int(v)
    if v == 0:
        raise ValueError("{value_zero,0}")
    return _expiry(v)


def _max_priority(v: Any) -> int:
    """check_max_priority_arg."""
    v = _non_negative(v)
    if v > MAX_PRIORITY:
        raise ValueError(f"{{max_value_exceeded,{v}}}")
    return v


def _number(v: Any) -> int | float:
    """A non-negative number (the back-off multiplier): an integer, a double, or a decimal
    (what pika sends for ``Decimal``, having no double), kept as a float."""
    import decimal
    if isinstance(v, decimal.Decimal) and v.is_finite():
        v = int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise ValueError(_erl_string(f"expected number, got {field_type_name(v)}"))
    if v < 0:
        raise ValueError(f"{{value_negative,{v}}}")
    return v


def _string(v: Any) -> str:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if not isinstance(v, str):
        raise ValueError(f"{{unacceptable_type,{field_type_name(v)}}}")
    return v


def _overflow(v: Any) -> str:
    s = _string(v)
    if s not in OVERFLOW_MODES:
        raise ValueError("invalid_overflow")
    return s


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{{unacceptable_type,{field_type_name(v)}}}")
    return v


def _queue_type(v: Any) -> str:
    s = _string(v)
    if s not in ("classic", "quorum", "stream"):
        raise ValueError(_erl_string(f"unsupported queue type '{s}'"))
    return s


#: ``rabbit_amqqueue:check_max_age`` units: a year is 365 days, a month 30
AGE_UNITS_MS = {"Y": 365 * 86400_000, "M": 30 * 86400_000, "D": 86400_000, "h": 3600_000,
                "m": 60_000, "s": 1000}


def max_age_ms(text: str) -> int:
    """A stream age as RabbitMQ writes it (``7D``, ``1h``, ``30m``, ``10s``, ``1Y``, ``1M``:
    a positive integer and one unit) in milliseconds; ValueError ``invalid_max_age``."""
    digits = text[:-1]
    unit_ms = AGE_UNITS_MS.get(text[-1:])
    if unit_ms is None or not digits.isascii() or not digits.isdigit() or int(digits) <= 0:
        raise ValueError("invalid_max_age")
    return int(digits) * unit_ms


def _max_age(v: Any) -> str:
    """check_max_age_arg: a longstr naming an age; kept as written."""
    if not isinstance(v, (str, bytes)):
        raise ValueError(f"{{unacceptable_type,{field_type_name(v)}}}")
    s = _string(v)
    max_age_ms(s)
    return s


def _queue_mode(v: Any) -> str:
    s = _string(v)
    if s not in ("default", "lazy"):
        raise ValueError(_erl_string(f"unsupported queue mode '{s}'"))
    return s


#: rabbit_amqqueue:declare_args(), in its order (the first failing argument is reported)
QUEUE_ARGUMENTS: dict[str, Callable[[Any], Any]] = {
    "x-expires": _expires,
    "x-message-ttl": _message_ttl,
    "x-dead-letter-exchange": _string,
    "x-dead-letter-routing-key": _string,
    "x-max-length": _non_negative,
    "x-max-length-bytes": _non_negative,
    "x-max-priority": _max_priority,
    "x-overflow": _overflow,
    "x-queue-mode": _queue_mode,
    "x-single-active-consumer": _boolean,
    "x-queue-type": _queue_type,
    "x-delivery-limit": _non_negative,
    # streams (``warren/stream/``): retention by age and the size of a segment file
    "x-max-age": _max_age,
    "x-stream-max-segment-size-bytes": _non_negative,
    # warren's: ActiveMQ's redelivery policy as arguments (``redelivery.py``)
    "x-redelivery-initial-delay": _message_ttl,
    "x-redelivery-multiplier": _number,
    "x-redelivery-max-delay": _message_ttl,
}

#: rabbit_amqqueue:consume_args() that warren understands
CONSUMER_ARGUMENTS: dict[str, Callable[[Any], Any]] = {
    "x-priority": _int,
}


def validate_consumer_arguments(vhost: str, queue: str, arguments: dict[str, Any]) -> None:
    """basic.consume arguments; RabbitMQ names the queue in the 406 text."""
    for key, check in CONSUMER_ARGUMENTS.items():
        if key in arguments:
            try:
                check(arguments[key])
            except ValueError as e:
                raise PreconditionFailed(
                    f"invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': {e}") from None


def validate_queue_arguments(vhost: str, queue: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Known x- arguments checked and normalised; unknown ones kept as RabbitMQ does."""
    out: dict[str, Any] = dict(arguments)
    for key, check in QUEUE_ARGUMENTS.items():
        if key not in arguments:
            continue
        try:
            out[key] = check(arguments[key])
            if key == "x-dead-letter-routing-key" and "x-dead-letter-exchange" not in arguments:
                raise ValueError("routing_key_but_no_dlx_defined")
        except ValueError as e:
            raise PreconditionFailed(
                f"invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': {e}") from None
    return out
