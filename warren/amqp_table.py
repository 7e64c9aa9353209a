"""Header values as pamqp's AMQP 0-9-1 table encoder takes them.

The AMQP listener (``amqp/properties.py``) and the bridges' client (``network/properties.py``)
both encode header tables with pamqp, and neither may import the other, so the one conversion
they share sits below both. It imports nothing, pamqp included: it only shapes values.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any


def encodable(value: Any) -> Any:
    """``value`` with every ``bytes`` as ``bytearray`` (pamqp writes a byte array only from a
    bytearray, and decodes one as bytes), keys as strings and anything pamqp has no field type
    for as its ``str``."""
    if isinstance(value, dict):
        return {str(k): encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encodable(v) for v in value]
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, (str, int, float, bool, Decimal, datetime, bytearray)) or value is None:
        return value
    return str(value)
