"""A dynamic shovel's definition: RabbitMQ's JSON keys, validated with RabbitMQ's words.

A shovel is a runtime parameter of component ``shovel`` (``PUT /api/parameters/shovel/{vhost}/
{name}``, ``rabbitmqctl set_parameter shovel ...``, a definitions file). The keys and their
meaning are those of RabbitMQ's shovel plugin (``rabbit_shovel_parameters``), including the
pre-3.7 spellings it still accepts (``delete-after``, ``prefetch-count``,
``add-forward-headers``, ``add-timestamp-header``, ``publish-properties``), so a definitions
file exported from RabbitMQ imports unchanged. Error texts are RabbitMQ's
(``rabbit_parameter_validation``), with values shown the way Erlang prints the decoded JSON
(``<<"text">>``), because scripts and operators match on them.

Only AMQP 0-9-1 endpoints exist here: ``src-protocol``/``dest-protocol`` ``amqp10`` are
refused with a line that says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...broker.erlang_terms import erlang_term
from ..uri import AmqpURI, InvalidURI, LocalBroker, parse_uri

ACK_MODES = ("no-ack", "on-publish", "on-confirm")
PROTOCOLS = ("amqp10", "amqp091")
#: RabbitMQ's defaults (rabbit_shovel_parameters, rabbit_shovel.hrl)
DEFAULT_PREFETCH = 1000
DEFAULT_RECONNECT_DELAY = 5
#: basic properties a shovel may set on what it publishes (``dest-publish-properties``)
PUBLISH_PROPERTIES = {
    "content_type": str, "content_encoding": str, "delivery_mode": int, "priority": int,
    "correlation_id": str, "reply_to": str, "expiration": str, "message_id": str,
    "timestamp": int, "type": str, "user_id": str, "app_id": str, "cluster_id": str,
}


# ------------------------------------------------------------------------------ validators
def _string(key: str, value: Any) -> str | None:
    return None if isinstance(value, str) else \
        f"{key} should be binary, actually was {erlang_term(value)}"


def _number(key: str, value: Any) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return None if ok else f"{key} should be a number, actually was {erlang_term(value)}"


def _boolean(key: str, value: Any) -> str | None:
    return None if isinstance(value, bool) else \
        f"{key} should be boolean, actually was {erlang_term(value)}"


def _queue_name(key: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return _string(key, value)
    size = len(value.encode())
    return None if size <= 255 else \
        f"{key} should be less than 255 bytes, actually was {size}"


def _enum(options: tuple[str, ...]):
    def check(key: str, value: Any) -> str | None:
        if not isinstance(value, str):
            return _string(key, value)
        if value in options:
            return None
        shown = "[" + ",".join(erlang_term(o) for o in options) + "]"
        return f"{key} should be one of {shown}, actually was {erlang_term(value)}"
    return check


def _delete_after(key: str, value: Any) -> str | None:
    if value in ("never", "queue-length") or (isinstance(value, int)
                                              and not isinstance(value, bool)):
        return None
    return (f'{key} should be number, "never" or "queue-length", actually was '
            f"{erlang_term(value)}")


def _table(key: str, value: Any) -> str | None:
    return None if isinstance(value, dict) else f"{key} not a list {erlang_term(value)}"


def _publish_properties(key: str, value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"{key} not a list {erlang_term(value)}"
    unknown = [(k, v) for k, v in value.items() if k not in PUBLISH_PROPERTIES]
    if unknown:
        return f"Unrecognised terms {erlang_term(unknown)} in {key}"
    for k, v in value.items():
        problem = (_number if PUBLISH_PROPERTIES[k] is int else _string)(k, v)
        if problem:
            return problem
    return None


def _uri(key: str, value: Any) -> str | None:
    uris = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        return f"{key} should be list, actually was []"
    for one in uris:
        if not isinstance(one, str):
            return _string(key, one)
        try:
            parse_uri(one)
        except InvalidURI as error:
            return str(error)
    return None


#: key -> (check, mandatory), in RabbitMQ's order (amqp091 source, then destination)
KEYS: dict[str, tuple[Any, bool]] = {
    "reconnect-delay": (_number, False),
    "ack-mode": (_enum(ACK_MODES), False),
    "src-protocol": (_enum(PROTOCOLS), False),
    "dest-protocol": (_enum(PROTOCOLS), False),
    "src-uri": (_uri, True),
    "src-exchange": (_string, False),
    "src-exchange-key": (_string, False),
    "src-queue": (_string, False),
    "src-queue-args": (_table, False),
    "prefetch-count": (_number, False),
    "src-prefetch-count": (_number, False),
    "delete-after": (_delete_after, False),
    "src-delete-after": (_delete_after, False),
    "dest-uri": (_uri, True),
    "dest-exchange": (_string, False),
    "dest-exchange-key": (_string, False),
    "dest-queue": (_queue_name, False),
    "dest-queue-args": (_table, False),
    "add-forward-headers": (_boolean, False),
    "add-timestamp-header": (_boolean, False),
    "dest-add-forward-headers": (_boolean, False),
    "dest-add-timestamp-header": (_boolean, False),
    "publish-properties": (_publish_properties, False),
    "dest-publish-properties": (_publish_properties, False),
}


def validate(name: str, value: Any) -> list[str]:
    """Every problem of a shovel definition, as RabbitMQ words it; empty when it is good."""
    if not isinstance(value, dict):
        return [f"{name} not a list {erlang_term(value)}"]
    errors: list[str] = []
    for side in ("src", "dest"):
        if value.get(f"{side}-protocol") == "amqp10":
            errors.append(f"{side}-protocol amqp10 is not supported by warren: use amqp091")
    if "src-exchange" in value and "src-queue" in value:
        errors.append("Cannot specify 'src-exchange' and 'src-queue'")
    elif "src-exchange" not in value and "src-queue" not in value:
        errors.append("Must specify 'src-exchange' or 'src-queue'")
    after = value.get("src-delete-after", value.get("delete-after"))
    if isinstance(after, int) and not isinstance(after, bool) \
            and value.get("ack-mode") == "no-ack":
        errors.append("Cannot specify 'no-ack' and numerical 'delete-after'")
    if "dest-exchange" in value and "dest-queue" in value:
        errors.append("Cannot specify 'dest-exchange' and 'dest-queue'")
    unknown = [(k, v) for k, v in value.items() if k not in KEYS]
    if unknown:
        errors.append(f"Unrecognised terms {erlang_term(unknown)} in {name}")
    for key, (check, mandatory) in KEYS.items():
        if key in value:
            problem = check(key, value[key])
            if problem:
                errors.append(problem)
        elif mandatory:
            errors.append(f'Key "{key}" not found in {name}')
    return errors


@dataclass(frozen=True)
class ShovelDefinition:
    """A validated shovel, with RabbitMQ's defaults and legacy spellings resolved."""

    vhost: str
    name: str
    src_uris: list[AmqpURI | LocalBroker]
    dest_uris: list[AmqpURI | LocalBroker]
    src_queue: str | None
    src_exchange: str | None
    src_exchange_key: str
    src_queue_args: dict[str, Any]
    dest_queue: str | None
    dest_exchange: str | None
    dest_exchange_key: str | None
    dest_queue_args: dict[str, Any]
    prefetch: int
    ack_mode: str
    delete_after: str | int
    reconnect_delay: float
    add_forward_headers: bool
    add_timestamp_header: bool
    publish_properties: dict[str, Any] = field(default_factory=dict)
    value: dict[str, Any] = field(default_factory=dict)   # the parameter as stored

    @classmethod
    def parse(cls, vhost: str, name: str, value: dict[str, Any]) -> "ShovelDefinition":
        """Build from a value :func:`validate` accepted (raises ``ValueError`` otherwise)."""
        errors = validate(name, value)
        if errors:
            raise ValueError("; ".join(errors))

        def uris(key: str) -> list[AmqpURI | LocalBroker]:
            raw = value[key]
            return [parse_uri(u) for u in (raw if isinstance(raw, list) else [raw])]

        def pick(new: str, old: str, default: Any) -> Any:
            return value.get(new, value.get(old, default))

        return cls(
            vhost=vhost, name=name, src_uris=uris("src-uri"), dest_uris=uris("dest-uri"),
            src_queue=value.get("src-queue"), src_exchange=value.get("src-exchange"),
            src_exchange_key=value.get("src-exchange-key", ""),
            src_queue_args=dict(value.get("src-queue-args") or {}),
            dest_queue=value.get("dest-queue"), dest_exchange=value.get("dest-exchange"),
            dest_exchange_key=value.get("dest-exchange-key"),
            dest_queue_args=dict(value.get("dest-queue-args") or {}),
            prefetch=max(1, int(pick("src-prefetch-count", "prefetch-count",
                                     DEFAULT_PREFETCH))),
            ack_mode=value.get("ack-mode", "on-confirm"),
            delete_after=pick("src-delete-after", "delete-after", "never"),
            reconnect_delay=float(value.get("reconnect-delay", DEFAULT_RECONNECT_DELAY)),
            add_forward_headers=bool(pick("dest-add-forward-headers", "add-forward-headers",
                                          False)),
            add_timestamp_header=bool(pick("dest-add-timestamp-header", "add-timestamp-header",
                                           False)),
            publish_properties=dict(pick("dest-publish-properties", "publish-properties", {})),
            value=dict(value),
        )

    # ------------------------------------------------------------------ for status and headers
    def source_details(self) -> dict[str, str]:
        """``src-queue`` or ``src-exchange`` + ``src-exchange-key``, as RabbitMQ reports them."""
        if self.src_queue is not None:
            return {"src-queue": self.src_queue}
        return {"src-exchange": self.src_exchange or "",
                "src-exchange-key": self.src_exchange_key}

    def dest_details(self) -> dict[str, str]:
        out = {}
        for key, v in (("dest-exchange", self.dest_exchange),
                       ("dest-exchange-key", self.dest_exchange_key),
                       ("dest-queue", self.dest_queue)):
            if v is not None:
                out[key] = v
        return out

    def dest_address(self, exchange: str, routing_key: str) -> tuple[str, str]:
        """Where a message consumed with (exchange, routing_key) is published."""
        if self.dest_queue is not None:
            return "", self.dest_queue
        return (self.dest_exchange if self.dest_exchange is not None else exchange,
                self.dest_exchange_key if self.dest_exchange_key is not None else routing_key)
