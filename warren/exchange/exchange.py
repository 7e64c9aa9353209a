"""An exchange: its declared attributes plus the routing structure of its type."""

from __future__ import annotations

from typing import Any

from ..model.errors import CommandInvalid
from ..model.message import Message
from .interface import Binding, BindingKey, BindingSet, ExchangeType
from .registry import EXCHANGE_TYPES


class Exchange:
    kind = "exchange"

    def __init__(self, vhost: str, name: str, type_name: str, *, durable: bool = False,
                 auto_delete: bool = False, internal: bool = False,
                 arguments: dict[str, Any] | None = None) -> None:
        cls = EXCHANGE_TYPES.get(type_name)
        if cls is None:
            raise _unknown(type_name)
        self.vhost = vhost
        self.name = name
        self.type_name = type_name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = dict(arguments or {})
        self.impl: ExchangeType = cls(self.arguments)
        self.bindings = BindingSet()             # bindings with this exchange as source
        self.inbound = BindingSet()              # exchange-to-exchange bindings into it
        self.alternate: str | None = None        # alternate-exchange name (argument or policy)
        ae = self.arguments.get("alternate-exchange")
        if isinstance(ae, bytes):
            ae = ae.decode()
        if ae:
            self.alternate = str(ae)
        self.policy: dict[str, Any] | None = None
        self.policy_name: str | None = None      # the policy it is under (the API shows it)
        self.published_in = 0
        self.published_out = 0

    def route(self, message: Message) -> list[Any]:
        return self.impl.route(message)

    def find_binding(self, key: BindingKey) -> Binding | None:
        """The binding with this ``Binding.key`` (a dict lookup, whatever the count)."""
        return self.bindings.find(key)

    def add_binding(self, binding: Binding, key: BindingKey | None = None) -> None:
        self.impl.validate_binding(binding)
        self.impl.bind(binding)
        self.bindings.add(binding, key)

    def remove_binding(self, binding: Binding) -> None:
        if self.bindings.discard(binding):
            self.impl.unbind(binding)

    def equivalent(self, type_name: str, durable: bool, auto_delete: bool, internal: bool,
                   arguments: dict[str, Any]) -> bool:
        """As ``rabbit_exchange:assert_equivalence``: of the arguments only
        ``alternate-exchange`` counts; others may differ on a redeclare."""
        return (self.type_name == type_name and self.durable == durable
                and self.auto_delete == auto_delete and self.internal == internal
                and _norm(self.arguments.get("alternate-exchange"))
                == _norm(arguments.get("alternate-exchange")))

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "vhost": self.vhost, "type": self.type_name,
                "durable": self.durable, "auto_delete": self.auto_delete,
                "internal": self.internal, "arguments": self.arguments}


def _unknown(type_name: str) -> Exception:
    # RabbitMQ: connection error 503 "invalid exchange type 'foo'"
    return CommandInvalid(f"unknown exchange type '{type_name}'")


def _norm(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, bool):
        return v
    return v
