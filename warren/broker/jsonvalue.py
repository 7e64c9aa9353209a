"""Field-table values as JSON: what the HTTP API, definitions and the store write out.

AMQP tables hold bytes, byte arrays, decimals and timestamps that JSON has no type for; every
place that shows or saves them (definitions export, binding and consumer arguments, client
properties, message headers in the API) needs the same lossy-but-readable conversion.
"""

from __future__ import annotations

from typing import Any


def jsonable(value: Any) -> Any:
    """``value`` with bytes decoded as UTF-8, datetimes in ISO 8601, the rest as strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(x) for x in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
