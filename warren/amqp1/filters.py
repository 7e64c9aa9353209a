"""The filters a receiver puts on its source: ActiveMQ's JMS selector.

Qpid JMS and ActiveMQ's other 1.0 clients send a selector as a filter whose value is described
by ``apache.org:selector-filter:string`` (code ``0x0000468C00000004``), under any key (they use
``jms-selector``). As ActiveMQ: the selector is parsed when the link attaches (the core's
``broker/selector.py``, the one STOMP uses), an invalid one refuses the link with
``amqp:invalid-field`` and the selector as the description, and the attach answered carries
only the filters applied, so the client can tell one it sent was ignored.
"""

from __future__ import annotations

from typing import Any

from ..broker.selector import Selector, SelectorError
from .codec import Described
from .errors import LinkError

#: the selector filter's descriptor, by name and by code
SELECTOR_DESCRIPTORS = ("apache.org:selector-filter:string", 0x0000468C00000004)


def selector_filter(source: Any) -> tuple[Selector | None, dict[Any, Any] | None]:
    """The selector of a receiver's source, and the filter map to answer with (None: none)."""
    filters = getattr(source, "filter", None)
    if not isinstance(filters, dict):
        return None, None
    for key, value in filters.items():
        if not isinstance(value, Described) or value.descriptor not in SELECTOR_DESCRIPTORS:
            continue
        text = value.value
        if not isinstance(text, str):
            raise LinkError("amqp:invalid-field", "the selector filter's value is not a string")
        if not text.strip():
            return None, None
        try:
            # typed properties: no reading of strings as numbers (that is for STOMP's headers)
            return Selector.parse(text, convert_strings=False), {key: value}
        except SelectorError:
            raise LinkError("amqp:invalid-field", text) from None
    return None, None
