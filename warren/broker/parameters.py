"""Runtime parameters: per-vhost settings owned by *components*, as RabbitMQ's.

RabbitMQ keeps plugin configuration that changes at run time (dynamic shovels, federation
upstreams) as runtime parameters (``rabbit_runtime_parameters``): a value under
(vhost, component, name), set through ``/api/parameters``, ``rabbitmqctl set_parameter`` or a
definitions import. The broker core knows nothing of what a value means; the component that
registered the name validates a value before it is stored and is told when one is set or
cleared, and starts or stops whatever the value describes (a shovel, a federation link).

Why a registry instead of a free-form dict: a value of a component nobody registered could
never take effect, so it is refused with RabbitMQ's words (``component shovel not found``),
and a value a component rejects is never half stored: validation runs before anything is
written.

A component implements :class:`ParameterComponent` (RabbitMQ's ``rabbit_runtime_parameter``
behaviour) and is registered with :meth:`RuntimeParameters.register`. Values are stored
durably (store definition kind ``runtime_parameter``) and recovered by ``Broker.recover``;
each recovered value is handed to its component's ``notify`` whether the component was
registered before recovery or after it, so registration order at start-up does not matter.
Values of a component that is not registered (its feature not loaded) stay stored and listed,
as RabbitMQ keeps them in its table, and take effect when the component registers.

Policies are not runtime parameters here (RabbitMQ stores them as component ``policy``): they
have their own API, so setting component ``policy`` is refused with RabbitMQ's wording.
``Broker.parameters`` is unrelated: the internal durable records of MQTT sessions, retained,
delayed and scheduled messages.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, runtime_checkable

from ..store.interface import resource_key
from ..model.errors import NotFound, PreconditionFailed

log = logging.getLogger("warren.broker.parameters")

#: the store definition kind of runtime parameters
STORE_KIND = "runtime_parameter"


class ParameterComponent(Protocol):
    """What a component registers (RabbitMQ's ``rabbit_runtime_parameter`` behaviour).

    ``name`` is the component name in paths and documents (``shovel``,
    ``federation-upstream``). ``value`` is the decoded JSON as sent (any JSON type; an object
    is a dict). ``validate`` gets the acting user (a ``warren.broker.users.User``; ``None`` for
    definitions imports and internal calls, as RabbitMQ passes ``none``) because a component
    may refuse a value the user may not act on (a shovel into a vhost the user has no access
    to); it returns error texts, empty when the value is good, and must not change anything
    (an import validates every item first and again as it sets it). ``notify`` is called
    after a new or changed value is stored (and for every recovered value) with a copy the
    component may keep; ``notify_clear`` after one is removed. A component's failure in
    ``notify`` is logged and does not undo the stored value.
    """

    name: str

    def validate(self, vhost: str, name: str, value: Any, user: Any | None) -> list[str]: ...

    def notify(self, vhost: str, name: str, value: Any) -> None: ...

    def notify_clear(self, vhost: str, name: str) -> None: ...


@runtime_checkable
class RunningComponent(ParameterComponent, Protocol):
    """A component that runs what its values describe (shovels, federation links, network
    connectors) and reports on each: ``status`` for the management API (in one vhost, or
    all), ``counters`` for /metrics. The console finds it by name with
    :meth:`RuntimeParameters.running`, so it imports no network code."""

    def status(self, vhost: str | None = None) -> list[dict[str, Any]]: ...

    def counters(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Parameter:
    vhost: str
    component: str
    name: str
    value: Any

    def as_json(self) -> dict[str, Any]:
        """RabbitMQ's shape (``rabbit_mgmt_format:parameter``, definitions ``parameters``)."""
        return {"value": self.value, "vhost": self.vhost, "component": self.component,
                "name": self.name}


def validation_failed(errors: list[str]) -> PreconditionFailed:
    """RabbitMQ's ``format_error``: a ``Validation failed`` line, a blank line, one line each."""
    return PreconditionFailed("Validation failed\n\n" + "".join(e + "\n" for e in errors))


class RuntimeParameters:
    """The registered components and the stored values of one broker."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self._components: dict[str, ParameterComponent] = {}
        self._values: dict[tuple[str, str, str], Parameter] = {}  # (vhost, component, name)

    # ---------------------------------------------------------------- components
    def register(self, component: ParameterComponent) -> None:
        """Make ``component`` own its name; values already stored for it are notified now."""
        if component.name in self._components:
            raise ValueError(f"runtime parameter component '{component.name}' is already "
                             "registered")
        if component.name == "policy":
            raise ValueError("component 'policy' is reserved for policies")
        self._components[component.name] = component
        for p in self.list(component=component.name):
            self._notify(p)

    def unregister(self, name: str) -> None:
        """Forget a component (its values stay stored), as ``rabbit_registry:unregister``."""
        self._components.pop(name, None)

    def component(self, name: str) -> ParameterComponent | None:
        return self._components.get(name)

    def running(self, name: str) -> RunningComponent | None:
        """The component ``name`` if it is registered and runs things, else None."""
        component = self._components.get(name)
        return component if isinstance(component, RunningComponent) else None

    # ---------------------------------------------------------------- values
    def check(self, vhost: str, component: str, name: str, value: Any,
              user: Any | None = None) -> None:
        """Raise what ``set`` would refuse, changing nothing (imports check every item first)."""
        if component == "policy":
            raise PreconditionFailed("policies may not be set using this method")
        if not isinstance(name, str) or not name:
            raise PreconditionFailed("parameter name must be a non-empty string")
        comp = self._components.get(component)
        if comp is None:
            raise validation_failed([f"component {component} not found"])
        errors = comp.validate(vhost, name, value, user)
        if errors:
            raise validation_failed([str(e) for e in errors])

    def set(self, vhost: str, component: str, name: str, value: Any, *,
            user: Any | None = None) -> bool:
        """Validate, store durably and notify; True when the parameter is new.

        Raises NotFound for a missing vhost and PreconditionFailed (with RabbitMQ's text) for
        an unknown component or a value its component refuses; then nothing changed. Setting
        the value a parameter already has stores and notifies nothing, as RabbitMQ.
        """
        if vhost not in self.broker.vhosts:
            raise NotFound(f"no vhost '{vhost}'")
        self.check(vhost, component, name, value, user)
        key = (vhost, component, name)
        old = self._values.get(key)
        if old is not None and _same(old.value, value):
            return False
        p = Parameter(vhost, component, name, copy.deepcopy(value))
        self._values[key] = p
        self.broker.save_definition(STORE_KIND, resource_key(*key), p.as_json())
        self._notify(p)
        return old is None

    def clear(self, vhost: str, component: str, name: str) -> None:
        """Remove a parameter and tell its component; NotFound when there is none."""
        if component == "policy":
            raise PreconditionFailed("policies may not be cleared using this method")
        key = (vhost, component, name)
        if self._values.pop(key, None) is None:
            raise NotFound("Parameter does not exist")
        self.broker.save_definition(STORE_KIND, resource_key(*key), None)
        comp = self._components.get(component)
        if comp is not None:
            try:
                comp.notify_clear(vhost, name)
            except Exception:
                log.exception("runtime parameter component '%s' failed clearing %r in "
                              "vhost '%s'", component, name, vhost)

    def clear_vhost(self, vhost: str) -> None:
        """A vhost is deleted: its parameters go with it (as RabbitMQ's vhost deletion)."""
        for p in self.list(vhost=vhost):
            self.clear(p.vhost, p.component, p.name)

    def lookup(self, vhost: str, component: str, name: str) -> Parameter | None:
        return self._values.get((vhost, component, name))

    def value(self, vhost: str, component: str, name: str, default: Any = None) -> Any:
        p = self._values.get((vhost, component, name))
        return default if p is None else p.value

    def list(self, vhost: str | None = None, component: str | None = None) -> list[Parameter]:
        """Stored parameters, optionally of one vhost and/or component, in a stable order."""
        return [p for key, p in sorted(self._values.items())
                if (vhost is None or key[0] == vhost)
                and (component is None or key[1] == component)]

    # ---------------------------------------------------------------- recovery
    def recover(self, records: Iterable[dict[str, Any]]) -> None:
        """Take stored values back (no re-validation, no write); notify registered owners.

        Records of vhosts that no longer exist are skipped, like policies'.
        """
        for r in records:
            try:
                p = Parameter(r["vhost"], r["component"], r["name"], r["value"])
            except (KeyError, TypeError):
                log.warning("ignoring unreadable runtime parameter record %r", r)
                continue
            if p.vhost not in self.broker.vhosts:
                continue
            self._values[(p.vhost, p.component, p.name)] = p
            if p.component in self._components:
                self._notify(p)

    def _notify(self, p: Parameter) -> None:
        try:
            self._components[p.component].notify(p.vhost, p.name, copy.deepcopy(p.value))
        except Exception:
            log.exception("runtime parameter component '%s' failed on %r in vhost '%s'",
                          p.component, p.name, p.vhost)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON documents: ``1``, ``1.0`` and ``true`` differ (Python's ``==`` says not)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
