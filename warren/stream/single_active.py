"""Single active consumer for streams (RabbitMQ 3.11): one reader of a named group at a time.

Subscriptions of one stream that share a consumer name and ask for
``single-active-consumer`` form a group (``rabbit_stream_sac_coordinator``); only its active
member reads. On a plain stream the first member is active and the next in order takes over
when it leaves. On a partition of a super stream the group knows the partition's index, and
the active member is ``members[index % len(members)]``: as consumers of the super stream come
and go, the partitions spread over them. A change of hands is done in two steps, as RabbitMQ
does it: the member stepping down is told first (it may store its offset), and the next one is
made active only once that answer came (:meth:`Group.stepped_down`) or the member left.

Members are the front end's subscriptions; the group calls ``member.notify(active,
stepping_down)`` and reads ``member.active``. This module keeps only the order and the rule.
"""

from __future__ import annotations

from typing import Any


class Group:
    """The members of one (stream, consumer name), in the order they came."""

    def __init__(self, partition_index: int) -> None:
        self.partition_index = partition_index    # -1: not a super stream partition
        self.members: list[Any] = []
        self._stepping_down: Any = None             # told to step down, not answered yet

    def _active(self) -> Any:
        return next((m for m in self.members if m.active), None)

    def _chosen(self) -> Any:
        return self.members[self.partition_index % len(self.members)]

    def _set(self, member: Any, active: bool, stepping_down: bool = False) -> None:
        member.active = active
        if stepping_down:
            self._stepping_down = member
        member.notify(active, stepping_down)

    def register(self, member: Any) -> None:
        """A new member: active when the group had none (told at once), passive otherwise;
        on a partition it may take the place of the active one, which steps down first."""
        member.active = False
        first = not self.members
        self.members.append(member)
        if first:
            self._set(member, True)
            return
        active = self._active()
        if self.partition_index < 0:
            if active is None and self._stepping_down is None:
                self._set(member, True)
            return
        if active is not None and self._chosen() is not active:
            self._set(active, False, stepping_down=True)

    def unregister(self, member: Any) -> None:
        """A member left (unsubscribed, its connection closed or the stream went)."""
        if member not in self.members:
            return
        was_active = member.active
        self.members.remove(member)
        if member is self._stepping_down:
            self._stepping_down = None
            if self.members:
                self._set(self._chosen() if self.partition_index >= 0 else self.members[0],
                          True)
            return
        if not self.members:
            return
        if self.partition_index < 0:
            if was_active:
                self._set(self.members[0], True)
            return
        active = self._active()
        if active is not None:
            if self._chosen() is not active:
                self._set(active, False, stepping_down=True)
        elif was_active:
            self._set(self._chosen(), True)

    def stepped_down(self, member: Any) -> None:
        """The member told to step down answered: the chosen one becomes active."""
        if member is self._stepping_down:
            self._stepping_down = None
            if self.members and self._active() is None:
                self._set(self._chosen(), True)
