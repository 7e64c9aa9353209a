"""How RabbitMQ's ``~tp`` prints a decoded JSON value, for error texts in its words.

RabbitMQ's validation errors (``rabbit_parameter_validation``) show the offending value as
Erlang prints it (``<<"text">>`` for a string, ``[{<<"key">>,1}]`` for unknown keys), and
scripts and operators match on those texts, so validators of runtime parameters (vhost limits
here, shovels and federation in ``network/``) format values with this one function.
"""

from __future__ import annotations

from typing import Any


def erlang_term(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return '<<"' + value.replace("\\", "\\\\").replace('"', '\\"') + '">>'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(erlang_term(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "{" + ",".join(erlang_term(v) for v in value) + "}"
    if isinstance(value, dict):
        return "#{" + ",".join(f"{erlang_term(k)} => {erlang_term(v)}"
                                for k, v in value.items()) + "}"
    return repr(value)
