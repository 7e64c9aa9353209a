"""ActiveMQ message groups: every message with the same ``JMSXGroupID`` goes to one consumer.

ActiveMQ's rule ("Message Groups"): the first message of a group picks a consumer the usual
way; from then on the group sticks to it until that consumer goes away (then the next message
of the group picks again), or until a message with ``JMSXGroupSeq`` = -1 closes the group.
Ordering within a group is kept because only the owner may take the group's messages.

The core queue knows nothing of groups: selective consumers (``accepts``, see
``consumers.py``) consult the :class:`MessageGroups` of the queue through :func:`groups_of`
before accepting an entry and claim the group when it is delivered to them. Consumers that are
not selective (plain AMQP ``basic.consume``) ignore groups.

While no group of the queue is owned, a consumer whose ``accepts`` only keeps groups apart
(a STOMP subscription without a selector) would accept every entry, so the queue's consumer
set is told whether some group is owned (``ConsumerSet.set_groups_owned``) and asks such
consumers only then: competing subscriptions without selectors cost what AMQP consumers do
until a message of a group is delivered.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

__all__ = ["GROUP_ID_HEADER", "GROUP_SEQ_HEADER", "MessageGroups", "groups_of"]

GROUP_ID_HEADER = "JMSXGroupID"
GROUP_SEQ_HEADER = "JMSXGroupSeq"


class MessageGroups:
    """Which consumer owns which group, for one queue."""

    __slots__ = ("_owner_by_group", "_groups_by_owner", "watcher")

    def __init__(self, watcher: Callable[[bool], None] | None = None) -> None:
        self._owner_by_group: dict[str, Any] = {}       # group id -> consumer
        self._groups_by_owner: dict[int, set[str]] = {}  # id(consumer) -> its group ids
        # told True when a first group becomes owned, False when none is any more
        self.watcher = watcher

    def owner(self, group: str) -> Any | None:
        return self._owner_by_group.get(group)

    def may_take(self, group: str, consumer: Any) -> bool:
        """True when *consumer* owns *group* or nobody does yet."""
        owner = self._owner_by_group.get(group)
        return owner is None or owner is consumer

    def claim(self, group: str, consumer: Any) -> None:
        owners = self._owner_by_group
        if group not in owners:
            owners[group] = consumer
            self._groups_by_owner.setdefault(id(consumer), set()).add(group)
            if len(owners) == 1 and self.watcher is not None:
                self.watcher(True)

    def close(self, group: str) -> None:
        """``JMSXGroupSeq: -1``: the group ends; its next message picks a consumer afresh."""
        owner = self._owner_by_group.pop(group, None)
        if owner is not None:
            self._groups_by_owner.get(id(owner), set()).discard(group)
            self._tell_if_none_owned()

    def release(self, consumer: Any) -> list[str]:
        """The consumer went away: its groups are free for whoever takes the next message."""
        groups = self._groups_by_owner.pop(id(consumer), set())
        for group in groups:
            self._owner_by_group.pop(group, None)
        if groups:
            self._tell_if_none_owned()
        return sorted(groups)

    def _tell_if_none_owned(self) -> None:
        if not self._owner_by_group and self.watcher is not None:
            self.watcher(False)

    def __len__(self) -> int:
        return len(self._owner_by_group)


_GROUPS: "weakref.WeakKeyDictionary[Any, MessageGroups]" = weakref.WeakKeyDictionary()


def groups_of(queue: Any) -> MessageGroups:
    """The group table of *queue*, made on first use and dropped with the queue."""
    groups = _GROUPS.get(queue)
    if groups is None:
        groups = _GROUPS[queue] = MessageGroups(queue.consumers.set_groups_owned)
    return groups
