"""The filters a receiver puts on its source: ActiveMQ's JMS selector and no-local.

Qpid JMS and ActiveMQ's other 1.0 clients send a selector as a filter whose value is described
by ``apache.org:selector-filter:string`` (code ``0x0000468C00000004``), under any key (they use
``jms-selector``). As ActiveMQ: the selector is parsed when the link attaches (the core's
``broker/selector.py``, the one STOMP uses), an invalid one refuses the link with
``amqp:invalid-field`` and the selector as the description, and the attach answered carries
only the filters applied, so the client can tell one it sent was ignored. JMSType is the
subject of a message an AMQP 1.0 sender published (``broker/jms.py``'s reader).

A JMS topic subscriber created with ``noLocal`` sends a filter described by
``apache.org:no-local-filter:list`` (code ``0x0000468C00000003``; Qpid JMS puts it under
``no-local``, with an empty list): the receiver gets no message published on its own
connection. ActiveMQ reads only the descriptor, not the value, and answers with the filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..broker.jms import read_amqp1_subject_with
from ..broker.selector import Selector, SelectorError
from ..amqp1_message.codec import Described
from ..amqp1_message.mapping import subject_of
from .errors import LinkError

# JMSType of a message an AMQP 1.0 sender published is its subject, as ActiveMQ maps it; the
# subject is no 0-9-1 property, so the core's selectors read it through this front end
read_amqp1_subject_with(subject_of)

#: the selector filter's descriptor, by name and by code
SELECTOR_DESCRIPTORS = ("apache.org:selector-filter:string", 0x0000468C00000004)
#: the no-local filter's descriptor, by name and by code
NO_LOCAL_DESCRIPTORS = ("apache.org:no-local-filter:list", 0x0000468C00000003)


@dataclass
class ReceiverFilters:
    """What a receiver's source asks for, and the filter map to answer with (None: none)."""

    selector: Selector | None = None
    no_local: bool = False
    applied: dict[Any, Any] | None = None


def receiver_filters(source: Any) -> ReceiverFilters:
    """The selector and no-local filters of a receiver's source; others are not applied."""
    found = ReceiverFilters()
    filters = getattr(source, "filter", None)
    if not isinstance(filters, dict):
        return found
    for key, value in filters.items():
        if not isinstance(value, Described):
            continue
        if value.descriptor in NO_LOCAL_DESCRIPTORS:
            found.no_local = True
        elif value.descriptor in SELECTOR_DESCRIPTORS and found.selector is None:
            found.selector = _selector(value.value)
            if found.selector is None:
                continue                   # an empty selector: none, not applied
        else:
            continue
        found.applied = {**(found.applied or {}), key: value}
    return found


def _selector(text: Any) -> Selector | None:
    if not isinstance(text, str):
        raise LinkError("amqp:invalid-field", "the selector filter's value is not a string")
    if not text.strip():
        return None
    try:
        # typed properties: no reading of strings as numbers (that is for STOMP's headers)
        return Selector.parse(text, convert_strings=False)
    except SelectorError:
        raise LinkError("amqp:invalid-field", text) from None
