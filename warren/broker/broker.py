"""The broker: vhosts, users, permissions, policies, the store, memory flow control.

One object per process holds what every front end shares. It is driven by one reactor thread
and takes time from the ``clock`` it is given (tests may pass ``task.Clock``). Front ends call
it; it never calls a protocol, only the small interfaces front ends register (consumers,
``Blockable`` connections, event listeners).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
import logging
import itertools
import time
from collections import deque
from typing import Any, Callable, Iterable, Protocol, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from ..exchange.exchange import Exchange
from ..model.errors import AccessRefused, NotAllowed, NotFound
from ..model.message import OVERHEAD, Message, PropertiesCodec, QueueEntry
from ..turn_slices import CHECK_EVERY, turn_deadline
from ..store.interface import (KEY_SEP, MessageStore, RecoveredQueue, RecoveredState,
                               StoreUnavailable, resource_key)
from .compact import CompactRun
from .limits import Limits
from .ready import WINDOW
from .paging import DEFAULT_BUDGET, Pager, paged_location
from .parameters import STORE_KIND as PARAMETER_KIND
from .parameters import RuntimeParameters
from . import possibly_delivered
from .policies import Policy, effective
from .publish import Publisher
from .queue import Queue
from .queue_types import new_queue
from .topic_permissions import TopicPermission, TopicPermissions, require_topic
from .stats import add_counts, new_counts
from .users import (HASHING_ALGORITHM, Permission, User, algorithm_of, hash_password,
                    require)
from .vhost import VirtualHost

log = logging.getLogger("warren.broker")

#: paged-out rows released per reactor turn by ``release_rows`` (arrays: some 1 ms); the
#: messages held as objects go by ``release_many`` until the turn's budget is spent
RELEASE_SLICE = 20_000


class Blockable(Protocol):
    """A publishing connection the broker can pause when memory runs high."""

    def set_blocked(self, blocked: bool, reason: str) -> None: ...


class Broker:
    """Everything the protocols share in one process: vhosts by name, users and permissions,
    policies and runtime parameters, the store, the memory budget and its alarm.

    Front ends, the console and the bridges hold this one object and reach vhosts, publishers
    (:meth:`publisher`) and the store through it, so a rule (a permission, a policy, a memory
    alarm) is decided once for every protocol. It never calls a front end: it knows them only
    as the small interfaces they register (``Blockable`` connections, event listeners,
    consumers)."""

    def __init__(self, *, clock: Any, codec: PropertiesCodec, store: MessageStore | None = None,
                 memory_high_watermark: int = 2 * 1024 ** 3, node_name: str = "warren@localhost",
                 default_user: str = "guest", default_pass: str = "guest",
                 loopback_users: Iterable[str] = ("guest",),
                 paging_budget: int = DEFAULT_BUDGET,
                 password_hashing: str = HASHING_ALGORITHM) -> None:
        self.clock = clock                          # IReactorTime
        self.codec = codec                          # canonical properties codec (AMQP's)
        self.store = store                          # None: nothing is durable
        self.node_name = node_name
        self.password_hashing = password_hashing    # hashing module for new passwords
        self.vhosts: dict[str, VirtualHost] = {}
        self.users: dict[str, User] = {}
        self.permissions: dict[tuple[str, str], Permission] = {}
        self.topic_permissions = TopicPermissions()  # RabbitMQ's topic authorisation
        self.policies: dict[str, dict[str, Policy]] = {}  # vhost -> name -> policy
        # internal durable records (MQTT sessions and retained messages, delayed and
        # scheduled messages) by store key; not RabbitMQ's runtime parameters, which are
        # ``runtime_parameters`` (components register there; /api/parameters shows them)
        self.parameters: dict[str, dict[str, Any]] = {}
        self.runtime_parameters = RuntimeParameters(self)
        self.limits = Limits(self)
        self.loopback_users = set(loopback_users)
        self.connections: dict[int, Any] = {}       # id -> front-end connection (has info())
        # message ids, the store's keys: ``next(broker.message_ids)`` (a C call, once per
        # publish); recovery moves it past the ids already stored
        self.message_ids = itertools.count(1)
        self._known_bindings: set[str] = set()
        # memory flow control: accounted bytes of messages held by queues
        self.memory_used = 0
        self.memory_high = memory_high_watermark
        self.memory_low = int(memory_high_watermark * 0.8)
        self.blocked = False                        # the memory alarm
        # the free-disk alarm, raised and cleared by a DiskMonitor (disk_monitor.py) when the
        # server runs one on its data directory
        self.disk_alarm = False
        self.disk_monitor: Any = None
        # the store alarm: writes fail (disk full, database gone); polled until healthy again
        self.store_alarm = False
        self._store_poll: Any = None
        self._blockables: set[Blockable] = set()
        # bodies resident in memory (paged-out ones not counted), the rows of paged-out
        # entries (``compact.py``; part of memory_used), and the pager bounding the rest
        self.body_bytes = 0
        self.index_bytes = 0
        self.pager = Pager(self, paging_budget)
        # acks and deliveries of stored messages this turn (store key -> ids), told to the
        # store in one call per queue at the end of the turn (see note_delivered)
        self._acked: dict[str, list[int]] = {}
        self._delivered: dict[str, list[int]] = {}
        self._returned: dict[str, dict[int, int]] = {}   # store key -> id -> delivery count
        # messages with a lower id may have been delivered before an unclean stop
        # (``possibly_delivered.py``)
        self.possibly_delivered_below = 0
        self._notes_call: Any = None
        self._listeners: list[Callable[..., None]] = []
        self.started_at = clock.seconds()
        # what deleted vhosts counted (stats.py): the broker's totals never go down
        self._gone_totals = new_counts()
        # "standalone" without --ha; the HA runner sets "master" on the broker it starts
        self.role = "standalone"
        # stream logs (``warren/stream/``): where they live, and the syncer that makes those
        # written to durable with the store's writes (made by the first stream)
        self.stream_dir: str | None = None
        self.log_syncer: Any = None
        self._default_user = (default_user, default_pass)

    @property
    def message_totals(self) -> dict[str, int]:
        """RabbitMQ's message_stats of the whole broker: its vhosts' and the deleted ones'."""
        totals = dict(self._gone_totals)
        for vh in list(self.vhosts.values()):
            add_counts(totals, vh.message_totals)
        return totals

    # ---------------------------------------------------------------- set-up
    def ensure_defaults(self) -> None:
        """A fresh broker gets vhost '/' and the default user, as RabbitMQ's first boot."""
        if not self.vhosts:
            self.add_vhost("/")
        if not self.users:
            user, password = self._default_user
            self.add_user(user, password, ["administrator"])
            self.set_permissions(user, "/", ".*", ".*", ".*")

    # ---------------------------------------------------------------- events
    def subscribe(self, listener: Callable[..., None]) -> None:
        self._listeners.append(listener)

    def emit(self, event: str, **info: Any) -> None:
        for listener in self._listeners:
            try:
                listener(event, **info)
            except Exception:
                log.exception("event listener failed on %s", event)

    # ---------------------------------------------------------------- vhosts and users
    def vhost(self, name: str) -> VirtualHost:
        vh = self.vhosts.get(name)
        if vh is None:
            raise NotFound(f"no vhost '{name}'")
        return vh

    def add_vhost(self, name: str, *, description: str = "", tags: list[str] | None = None,
                  persist: bool = True) -> VirtualHost:
        vh = self.vhosts.get(name)
        created = vh is None
        if vh is None:
            vh = self.vhosts[name] = VirtualHost(self, name)
            self.policies.setdefault(name, {})
        vh.description = description
        vh.tags = list(tags or [])
        if persist:
            self.save_definition("vhost", name, {"name": name, "description": description,
                                                 "tags": vh.tags})
        if created:   # components serving a vhost by name set up there now
            self.emit("vhost.created", vhost=name)
        return vh

    def delete_vhost(self, name: str) -> None:
        vh = self.vhost(name)
        for conn in list(self.connections.values()):
            if getattr(conn, "vhost_name", None) == name:
                conn.force_close(f"vhost '{name}' is deleted")
        # components (shovels) stop before the queues they use go
        self.runtime_parameters.clear_vhost(name)
        for q in list(vh.queues):
            vh.delete_queue(q)
        for ex in list(vh.exchanges):
            if ex and not ex.startswith("amq."):
                vh.delete_exchange(ex)
        del self.vhosts[name]
        add_counts(self._gone_totals, vh.message_totals)
        for key in [k for k in self.permissions if k[1] == name]:
            self.clear_permissions(*key)
        for tp in self.topic_permissions.all(vhost=name):
            self.clear_topic_permissions(tp.user, name)
        for pname in list(self.policies.get(name, {})):
            self.clear_policy(name, pname)
        self.policies.pop(name, None)
        self.save_definition("vhost", name, None)

    def add_user(self, name: str, password: str | None, tags: list[str] | None = None, *,
                 password_hash: str | None = None, hashing_algorithm: str | None = None,
                 limits: dict[str, Any] | None = None, persist: bool = True) -> User:
        """A password is hashed with the configured module; a given hash keeps the module it
        names (or, unnamed, the one its length says). An existing user keeps its limits unless
        ``limits`` are given."""
        if password_hash is None:
            algorithm = self.password_hashing
            password_hash = hash_password(password, algorithm=algorithm) if password else ""
        else:
            algorithm = hashing_algorithm or algorithm_of(password_hash)
        if limits is None:
            old = self.users.get(name)
            limits = old.limits if old is not None else {}
        user = User(name, password_hash, list(tags or []), hashing_algorithm=algorithm,
                    limits=dict(limits))
        self.users[name] = user
        if persist:
            self.save_definition("user", name, user.definition())
        return user

    def user(self, name: str) -> User:
        user = self.users.get(name)
        if user is None:
            raise NotFound(f"no user '{name}'")
        return user

    def set_user_limits(self, name: str, limits: dict[str, Any]) -> None:
        """Store a user's limits (validated by ``limits.Limits.set_user_limits``)."""
        user = self.user(name)
        user.limits = dict(limits)
        self.save_definition("user", name, user.definition())

    def delete_user(self, name: str) -> None:
        if name not in self.users:
            raise NotFound(f"no user '{name}'")
        del self.users[name]
        for key in [k for k in self.permissions if k[0] == name]:
            self.clear_permissions(*key)
        for tp in self.topic_permissions.all(user=name):
            self.clear_topic_permissions(name, tp.vhost)
        self.save_definition("user", name, None)

    def set_permissions(self, user: str, vhost: str, configure: str, write: str, read: str,
                        *, persist: bool = True) -> Permission:
        if user not in self.users:
            raise NotFound(f"no user '{user}'")
        if vhost not in self.vhosts:
            raise NotFound(f"no vhost '{vhost}'")
        perm = Permission(user, vhost, configure, write, read)
        self.permissions[(user, vhost)] = perm
        if persist:
            self.save_definition("permission", resource_key(user, vhost), perm.definition())
        return perm

    def clear_permissions(self, user: str, vhost: str) -> None:
        if self.permissions.pop((user, vhost), None) is not None:
            self.save_definition("permission", resource_key(user, vhost), None)

    def set_topic_permissions(self, user: str, vhost: str, exchange: str, write: str,
                              read: str, *, persist: bool = True) -> TopicPermission:
        """Set the user's topic permission on *exchange* in *vhost* (``topic_permissions.py``);
        NotFound for an unknown user or vhost, PreconditionFailed for a bad pattern."""
        if user not in self.users:
            raise NotFound(f"no user '{user}'")
        if vhost not in self.vhosts:
            raise NotFound(f"no vhost '{vhost}'")
        perm = self.topic_permissions.set(user, vhost, exchange, write, read)
        if persist:
            self.save_definition("topic_permission", resource_key(user, vhost, exchange),
                                 perm.definition())
        return perm

    def clear_topic_permissions(self, user: str, vhost: str,
                                exchange: str | None = None) -> list[TopicPermission]:
        """Remove the user's topic permission on *exchange*, or all of them in *vhost*."""
        removed = self.topic_permissions.clear(user, vhost, exchange)
        for perm in removed:
            self.save_definition("topic_permission",
                                 resource_key(user, vhost, perm.exchange), None)
        return removed

    def check_topic(self, user: User, vhost: str, exchange: Any, kind: str,
                    routing_key: str, client_id: str | None = None) -> None:
        """Raise 403 unless *user* may use *routing_key* on the topic *exchange* (an
        Exchange) for ``kind`` (``read`` to bind, ``write`` to publish; publishes are checked
        by the ``Publisher``). One dict lookup when the user has no topic permissions."""
        granted = self.topic_permissions.granted(user.name, vhost)
        if granted:
            require_topic(granted, exchange, kind, routing_key, user.name, vhost, client_id)

    def authenticate(self, username: str, password: str | None, *, loopback: bool,
                     peer: str = "", protocol: str = "", mechanism: str = "PLAIN") -> User:
        """Check a login; raises AccessRefused with RabbitMQ's wording (which names no reason,
        so a client cannot probe which users exist) and logs the reason for the operator once,
        with the peer address and never the password.

        ``password`` None: the name was established outside the protocol (a verified client
        certificate: SASL EXTERNAL, ``ssl_cert_login``), so, as RabbitMQ's internal backend
        does for a login without credentials, the user must exist and no password is checked.
        """
        user = self.users.get(username)
        if user is None:
            reason = "no such user"
        elif password is not None and not user.check(password):
            reason = "wrong password"
        elif username in self.loopback_users and not loopback:
            reason = "this user may only connect from localhost (loopback_users)"
        else:
            return user
        raise self.refuse_login(username, reason, peer=peer, protocol=protocol,
                                mechanism=mechanism)

    def refuse_login(self, username: str | None, reason: str, *, peer: str = "",
                     protocol: str = "", mechanism: str = "PLAIN") -> AccessRefused:
        """Log a refused login with its reason, and the error the client is told instead.
        Also for logins refused before there is a name to check (no client certificate)."""
        log.warning("login refused for %s from %s%s: %s",
                    "?" if username is None else f"user '{username}'", peer or "?",
                    f" ({protocol})" if protocol else "", reason)
        return AccessRefused(f"Login was refused using authentication mechanism {mechanism}. "
                             "For details see the broker logfile.")

    def open_vhost(self, user: User, vhost: str, *, peer: str = "", protocol: str = "",
                   connection: Any = None) -> VirtualHost:
        """connection.open: the vhost must exist, its and the user's connection limits must
        not be reached (checked first, as RabbitMQ), and the user must have permissions on it.
        ``connection`` is then counted against the limits until ``unregister_connection``."""
        vh = self.vhosts.get(vhost)
        if vh is not None:
            try:
                self.limits.check_connection(user, vhost)
            except NotAllowed as e:
                log.warning("connection of user '%s' from %s%s refused: %s", user.name,
                            peer or "?", f" ({protocol})" if protocol else "", e.text)
                raise
        if vh is None or (user.name, vhost) not in self.permissions:
            log.warning("access to vhost '%s' refused for user '%s' from %s%s: %s", vhost,
                        user.name, peer or "?", f" ({protocol})" if protocol else "",
                        "no such vhost" if vh is None else "no permissions on it")
            raise NotAllowed(f"access to vhost '{vhost}' refused for user '{user.name}'")
        if connection is not None:
            self.limits.admit(connection, user.name, vhost)
        return vh

    def register_connection(self, connection: Any) -> None:
        """A front end's connection (has ``info()``) is listed from its first byte."""
        self.connections[id(connection)] = connection

    def unregister_connection(self, connection: Any) -> None:
        """The connection is gone: unlisted, and no longer counted against any limit."""
        self.connections.pop(id(connection), None)
        self.limits.release(connection)

    def check(self, user: User, vhost: str, kind: str, resource_kind: str, name: str) -> None:
        require(self.permissions.get((user.name, vhost)), user.name, vhost, kind,
                resource_kind, name)

    def publisher(self, vhost: VirtualHost | str, user: User | None,
                  client_id: str | None = None, counts: dict[str, int] | None = None
                  ) -> Publisher:
        """The publish pipeline (``publish.py``) into *vhost* (object or name; NotFound) as
        *user*; None publishes as the broker itself (internal bridges): no permission check.
        *client_id* (MQTT) is ``{client_id}`` in topic permission patterns; *counts*: the
        publishing channel's counters (``stats.new_counts``), if it keeps any."""
        return Publisher(self, vhost if isinstance(vhost, VirtualHost) else self.vhost(vhost),
                         user, client_id, counts)

    # ---------------------------------------------------------------- policies
    def set_policy(self, vhost: str, name: str, pattern: str, definition: dict[str, Any], *,
                   priority: int = 0, apply_to: str = "all", persist: bool = True) -> Policy:
        vh = self.vhost(vhost)
        policy = Policy(vhost, name, pattern, dict(definition), int(priority), apply_to)
        self.policies.setdefault(vhost, {})[name] = policy
        if persist:
            self.save_definition("policy", resource_key(vhost, name), policy.as_json())
        self._reapply_policies(vh)
        self.emit("policy.set", vhost=vhost, name=name)
        return policy

    def clear_policy(self, vhost: str, name: str) -> None:
        if self.policies.get(vhost, {}).pop(name, None) is None:
            raise NotFound(f"no policy '{name}' in vhost '{vhost}'")
        self.save_definition("policy", resource_key(vhost, name), None)
        vh = self.vhosts.get(vhost)
        if vh is not None:
            self._reapply_policies(vh)
        self.emit("policy.cleared", vhost=vhost, name=name)

    def _reapply_policies(self, vh: VirtualHost) -> None:
        for q in list(vh.queues.values()):
            self.policies_apply_queue(vh, q)
        for ex in vh.exchanges.values():
            if ex.name:
                self.policies_apply_exchange(vh, ex)

    def policies_apply_queue(self, vh: VirtualHost, q: Queue) -> None:
        p = effective(list(self.policies.get(vh.name, {}).values()),
                      "stream" if q.own_log else "queue", q.name)
        new = dict(p.definition) if p is not None else None
        if new != q.policy or p is not None:
            q.policy = new
            q.policy_name = p.name if p is not None else None
            q.apply_settings()
            q.dispatch()
            q._expire_due()

    def policies_apply_exchange(self, vh: VirtualHost, ex: Any) -> None:
        p = effective(list(self.policies.get(vh.name, {}).values()), "exchange", ex.name)
        ex.policy = dict(p.definition) if p is not None else None
        ex.policy_name = p.name if p is not None else None
        ae = ex.arguments.get("alternate-exchange")
        if isinstance(ae, bytes):
            ae = ae.decode()
        if not ae and ex.policy:
            ae = ex.policy.get("alternate-exchange")
        ex.alternate = str(ae) if ae else None

    # ---------------------------------------------------------------- messages and memory
    def track(self, message: Message) -> None:
        """A queue holds *message* now: its body and overhead count (``VirtualHost.publish``
        does this in line for its usual case, then calls :meth:`after_growth` only when
        the pager's budget or the memory watermark is passed)."""
        size = len(message.body)
        self.memory_used += size + OVERHEAD
        self.body_bytes += size
        self.after_growth()

    def after_growth(self) -> None:
        """The memory held grew: the pager starts paging past its budget, and publishers
        are blocked past the high watermark."""
        if self.memory_used - self.index_bytes > self.pager.budget:
            self.pager.note_growth()
        if not self.blocked and self.memory_used > self.memory_high:
            self._set_blocked(True)

    def release(self, queue: Queue, message: Message) -> None:
        """One queue is done with ``message``: store ack, and free memory at the last one."""
        message.refs -= 1
        if message.stored and queue.durable and self.store is not None:
            ids = self._acked.get(queue.store_key)
            if ids is not None:   # this turn's flush is already scheduled
                ids.append(message.id)
            else:
                self._note(self._acked, queue.store_key, message.id)
        if message.refs <= 0:
            if message.paged:  # its body was already taken off the accounts
                self.memory_used -= OVERHEAD
                if paged_location(message) >= 0 and queue.page_file is not None:
                    queue.page_file.release()   # never read back from the paging file
            else:
                self.memory_used -= len(message.body) + OVERHEAD
                self.body_bytes -= len(message.body)
            # every way memory is freed ends here (ack, no-ack get/deliver, purge, delete,
            # expiry), so unblocking is decided here, not only after acks
            if self.blocked and self.memory_used < self.memory_low:
                self._set_blocked(False)

    def release_entries(self, queue: Queue, entries: Sequence[QueueEntry]) -> int:
        """``release`` the message of each of *entries* (an ack's batch); answers the bytes
        of their bodies (the queue's ``unacked_bytes`` go down by that much).

        The usual message (in memory, held by this queue alone) is freed in line, its store
        ack noted in line, and the memory accounted once for the batch: a ``release`` call
        per acked message was one Python call in every acknowledged delivery of every
        protocol. A shared or paged-out message goes through ``release``. Unblocking
        publishers is left to the caller's ``after_settle``, as after every ack."""
        release = self.release
        key = queue.store_key
        journaled = queue.durable and self.store is not None
        acked = self._acked.get(key) if journaled else None
        body_bytes = freed = plain = 0
        for e in entries:
            message = e.message
            size = len(message.body)
            body_bytes += size
            if message.refs == 1 and not message.paged:
                if message.stored and journaled:
                    if acked is not None:   # this turn's flush is already scheduled
                        acked.append(message.id)
                    else:
                        self._note(self._acked, key, message.id)
                        acked = self._acked[key]
                message.refs = 0
                freed += size
                plain += 1
            else:
                release(queue, message)
                if journaled and acked is None:
                    acked = self._acked.get(key)
        if plain:
            self.memory_used -= freed + plain * OVERHEAD
            self.body_bytes -= freed
        return body_bytes

    def release_many(self, queue: Queue, entries: deque[Any]) -> None:
        """``release`` the message of each of ``entries`` (a purge, a deleted queue; taken
        from the left) until the turn's budget is spent, in each reactor turn
        (``turn_deadline``): the queue is already empty for its clients; the store acks (lazy
        by contract) and the memory accounting follow over the next turns, so a purge of 1M
        messages does not hold every other client for most of a second."""
        self._release_slice(queue, entries)

    def _release_slice(self, queue: Queue, entries: deque[Any]) -> None:
        end = turn_deadline()
        release, pop = self.release, entries.popleft
        while entries:
            for _ in range(min(CHECK_EVERY, len(entries))):
                release(queue, pop().message)
            if time.monotonic() >= end:
                break
        if entries:
            self.clock.callLater(0, self._release_slice, queue, entries)

    def release_rows(self, queue: Queue, runs: list[CompactRun], store_purged: bool) -> None:
        """Forget the paged-out entries of a purged or deleted queue (the runs of
        ``ready.clear_split``): store acks (none when ``store_purged``: the store dropped the
        queue's messages with one purge) and accounting, ``RELEASE_SLICE`` per reactor turn
        like ``release_many``."""
        for run in runs:
            self._release_rows_slice(queue, run, 0, store_purged)

    def _release_rows_slice(self, queue: Queue, run: CompactRun, start: int,
                            store_purged: bool) -> None:
        end = start + RELEASE_SLICE
        acks = not store_purged and queue.durable and self.store is not None
        ids, in_file, rows = run.paged_ids(start, end, want_ids=acks)
        if ids and acks:
            acked = self._acked.get(queue.store_key)
            if acked is None:
                self._acked[queue.store_key] = ids
            else:
                acked.extend(ids)
            self._flush_notes_soon()
        if in_file and queue.page_file is not None:
            queue.page_file.release(in_file)   # in the queue's paging file, not the store
        self.pager.forget_rows(rows)
        if self.blocked and self.memory_used < self.memory_low:
            self._set_blocked(False)
        if end < len(run):
            self.clock.callLater(0, self._release_rows_slice, queue, run, end, store_purged)

    def after_settle(self, queue: Queue | None) -> None:
        if self.blocked and self.memory_used < self.memory_low:
            self._set_blocked(False)

    def register_blockable(self, conn: Blockable) -> None:
        if conn not in self._blockables:
            self._blockables.add(conn)
            if self.blocked or self.store_alarm or self.disk_alarm:
                conn.set_blocked(True, self._block_reason())

    def unregister_blockable(self, conn: Blockable) -> None:
        self._blockables.discard(conn)

    def _set_blocked(self, blocked: bool) -> None:
        self.blocked = blocked
        if blocked:
            log.warning("memory high watermark passed (%d bytes of messages held): blocking "
                        "publishers", self.memory_used)
        else:
            log.info("memory below low watermark: unblocking publishers")
        self._notify_blockables()

    def set_memory_watermark(self, high: int) -> None:
        """A new memory watermark at run time; the alarm follows it at once."""
        self.memory_high = high
        self.memory_low = int(high * 0.8)
        log.info("memory high watermark set to %d bytes", high)
        if not self.blocked and self.memory_used > self.memory_high:
            self._set_blocked(True)
        elif self.blocked and self.memory_used < self.memory_low:
            self._set_blocked(False)

    def set_disk_alarm(self, on: bool, free: int, limit: int) -> None:
        """Raise or clear the free-disk alarm (from the DiskMonitor's checks)."""
        if on == self.disk_alarm:
            return
        self.disk_alarm = on
        if on:
            log.warning("free disk space %d bytes is below the limit of %d bytes: blocking "
                        "publishers", free, limit)
        else:
            log.info("free disk space %d bytes is at or above the limit of %d bytes: "
                     "unblocking publishers", free, limit)
        self._notify_blockables()

    def _block_reason(self) -> str:
        """connection.blocked's reason as RabbitMQ words it: "low on memory", "low on disk",
        "low on disk & memory" when both alarms are on."""
        if self.store_alarm:
            return "store unavailable"
        on = [name for name, alarm in (("disk", self.disk_alarm), ("memory", self.blocked))
              if alarm]
        return "low on " + " & ".join(on or ["memory"])

    def _notify_blockables(self) -> None:
        """Tell every publishing connection whether some alarm (memory, disk, store) is on."""
        blocked = self.blocked or self.store_alarm or self.disk_alarm
        reason = self._block_reason()
        for conn in list(self._blockables):
            conn.set_blocked(blocked, reason)

    def check_store_health(self) -> None:
        """Raise or clear the store alarm from ``store.healthy``.

        Called when a sync fails (the store turned unhealthy: disk full, database gone) and
        then every ``STORE_POLL`` seconds while the alarm is on; the store retries its writes
        with its own backoff, and once one succeeds publishers are unblocked.
        """
        store = self.store
        healthy = store is None or store.healthy
        if not healthy and not self.store_alarm:
            self.store_alarm = True
            log.warning("store unavailable (writes fail): blocking publishers until it recovers")
            self._notify_blockables()
        elif healthy and self.store_alarm:
            self.store_alarm = False
            log.info("store writes succeed again: unblocking publishers")
            self._notify_blockables()
        if self.store_alarm and self._store_poll is None:
            self._store_poll = self.clock.callLater(self.STORE_POLL, self._poll_store)

    #: Seconds between checks of ``store.healthy`` while the store alarm is on.
    STORE_POLL = 0.2

    def _poll_store(self) -> None:
        self._store_poll = None
        self.check_store_health()

    # ---------------------------------------------------------------- store hooks
    def save_definition(self, kind: str, key: str, value: dict[str, Any] | None,
                        *, only_if_known: bool = False) -> None:
        if self.store is None:
            return
        if kind == "binding":
            if value is None:
                if key not in self._known_bindings:
                    return
                self._known_bindings.discard(key)
            else:
                self._known_bindings.add(key)
        self.store.put_definition(kind, key, value)

    def store_publish(self, message: Message, queue_keys: list[str]) -> None:
        assert self.store is not None   # only a broker with a store journals messages
        self.store.publish(message.id, message.to_record(), queue_keys)
        message.stored = True

    def note_delivered(self, queue: Queue, msg_id: int) -> None:
        """A stored message went to a consumer (its redelivered flag after a restart).

        The store hears of a whole turn's deliveries in one call per queue at the end of the
        turn, not one record per message: the flag is lazy in the durability contract (a
        crash before it is written only loses redelivered=true, never a message).
        """
        ids = self._delivered.get(queue.store_key)
        if ids is not None:   # this turn's flush is already scheduled
            ids.append(msg_id)
        else:
            self._note(self._delivered, queue.store_key, msg_id)

    def note_returned(self, queue: Queue, msg_id: int, delivery_count: int) -> None:
        """A stored message came back to its queue: its delivery count, told to the store at
        the end of the turn like deliveries. Lazy too: a crash before it is written loses
        only returns that the restart counts again (the message was out with a consumer)."""
        counts = self._returned.get(queue.store_key)
        if counts is None:
            self._returned[queue.store_key] = {msg_id: delivery_count}
            self._flush_notes_soon()
        else:
            counts[msg_id] = delivery_count

    def _note(self, pending: dict[str, list[int]], key: str, msg_id: int) -> None:
        ids = pending.get(key)
        if ids is None:
            pending[key] = [msg_id]
        else:
            ids.append(msg_id)
        self._flush_notes_soon()

    def _flush_notes_soon(self) -> None:
        """The notes of this turn go to the store at its end (one call per queue and kind)."""
        if self._notes_call is None:
            self._notes_call = self.clock.callLater(0, self.flush_store_notes)

    def flush_store_notes(self) -> None:
        """Hand this turn's acks and deliveries to the store (acks are lazy by contract, like
        deliveries: a crash before they are durable means a redelivery, never a loss). Runs
        at the end of each turn, and before the store is closed."""
        if self._notes_call is not None and self._notes_call.active():
            self._notes_call.cancel()
        self._notes_call = None
        acked, self._acked = self._acked, {}
        delivered, self._delivered = self._delivered, {}
        returned, self._returned = self._returned, {}
        if self.store is None:
            return
        for key, ids in acked.items():
            self.store.ack(key, ids)
        # returns before deliveries: a message returned and handed out again in one turn is
        # out with a consumer (delivered) on top of its count
        for key, counts in returned.items():
            self.store.set_delivery_counts(key, counts)
        for key, ids in delivered.items():
            self.store.mark_delivered(key, ids)

    def store_purge(self, queue: Queue) -> None:
        if self.store is not None and queue.durable:
            self.store.purge_queue(queue.store_key)

    def sync(self) -> Deferred:
        """Fires once everything written so far is durable."""
        syncer = self.log_syncer
        if syncer is not None and syncer.busy:
            # stream logs (``stream/syncer.py``): fsync'd once at the end of this turn
            d = syncer.sync()
            d.addCallback(lambda _: self._sync_store())
            return d
        return self._sync_store()

    def _sync_store(self) -> Deferred:
        if self.store is None:
            return succeed(None)
        d = self.store.sync()
        if not self.store.healthy and not self.store_alarm:
            self.check_store_health()
        d.addErrback(self._sync_failed)
        return d

    def close_streams(self) -> None:
        """The broker stops: every stream log is synced and closed."""
        if self.log_syncer is not None:
            self.log_syncer.stop()
        for vh in self.vhosts.values():
            for q in vh.queues.values():
                if q.own_log:
                    q.close()

    def abandon_streams(self) -> None:
        """HA fencing: every stream log lets go of its files unwritten (as the store does)."""
        for vh in self.vhosts.values():
            for q in vh.queues.values():
                if q.own_log:
                    q.abandon()

    def _sync_failed(self, failure: Failure) -> Failure:
        assert self.store is not None   # the errback of a store's sync
        if failure.check(StoreUnavailable) or not self.store.healthy:
            self.check_store_health()
        return failure

    # ---------------------------------------------------------------- recovery
    def recover(self) -> None:
        """Rebuild definitions and durable messages from the store (before listeners open)."""
        if self.store is None:
            self.ensure_defaults()
            return
        state = self.store.recover(body_size=Message.record_body_size)
        defs = state.definitions
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for (kind, _key), value in defs.items():
            by_kind.setdefault(kind, []).append(value)
        for v in by_kind.get("vhost", []):
            self.add_vhost(v["name"], description=v.get("description", ""),
                           tags=v.get("tags"), persist=False)
        for u in by_kind.get("user", []):
            self.add_user(u["name"], None, u.get("tags", []),
                          password_hash=u.get("password_hash", ""),
                          hashing_algorithm=u.get("hashing_algorithm"),
                          limits=u.get("limits") or {}, persist=False)
        for p in by_kind.get("permission", []):
            if p["user"] in self.users and p["vhost"] in self.vhosts:
                self.set_permissions(p["user"], p["vhost"], p["configure"], p["write"],
                                     p["read"], persist=False)
        for p in by_kind.get("topic_permission", []):
            if p["user"] in self.users and p["vhost"] in self.vhosts:
                self.set_topic_permissions(p["user"], p["vhost"], p["exchange"], p["write"],
                                           p["read"], persist=False)
        for p in by_kind.get("policy", []):
            if p["vhost"] in self.vhosts:
                self.set_policy(p["vhost"], p["name"], p["pattern"], p["definition"],
                                priority=p.get("priority", 0), apply_to=p.get("apply-to", "all"),
                                persist=False)
        for key, value in ((k[1], v) for k, v in defs.items() if k[0] == "parameter"):
            self.parameters[key] = value
        for e in by_kind.get("exchange", []):
            vh = self.vhosts.get(e["vhost"])
            if vh is not None and e["name"] not in vh.exchanges:
                vh.exchanges[e["name"]] = _restored_exchange(e)
                attach = getattr(vh.exchanges[e["name"]].impl, "attach", None)
                if attach is not None:  # exchange types that need the vhost (delayed)
                    attach(vh, vh.exchanges[e["name"]])
                self.policies_apply_exchange(vh, vh.exchanges[e["name"]])
        for qd in by_kind.get("queue", []):
            vh = self.vhosts.get(qd["vhost"])
            if vh is not None and qd["name"] not in vh.queues:
                q = new_queue(vh, qd["name"], recovered=True, durable=True,
                              auto_delete=qd.get("auto_delete", False),
                              arguments=qd.get("arguments") or {})
                vh.queues[q.name] = q
                self.policies_apply_queue(vh, q)
        for b in by_kind.get("binding", []):
            vh = self.vhosts.get(b["vhost"])
            if vh is None or b["source"] not in vh.exchanges:
                continue
            dest = (vh.queues if b["destination_type"] == "queue" else vh.exchanges).get(
                b["destination"])
            if dest is None:
                continue
            binding = vh.bind(b["source"], dest, b["routing_key"], b.get("arguments") or {})
            self._known_bindings.add(vh._binding_key(binding))
        self.ensure_defaults()
        # messages, queue by queue, in stored order (see ``_recover_queue``)
        messages: dict[int, Message] = {}   # those held by several queues: one object
        recovered = 0
        # per queue, the ids recovery handles one by one (see ``_recover_queue``)
        specials: dict[str, set[int]] = {}
        for qkey, mid in itertools.chain(state.delivered, state.delivery_counts):
            specials.setdefault(qkey, set()).add(mid)
        for qkey, rq in state.queues.items():
            vhost_name, _, qname = qkey.partition(KEY_SEP)
            vh = self.vhosts.get(vhost_name)
            queue = vh.queues.get(qname) if vh is not None else None
            if queue is None:
                self.store.purge_queue(qkey)
                continue
            recovered += self._recover_queue(queue, rq, state, messages,
                                             specials.get(qkey, set()).union(state.records))
        self.message_ids = itertools.count(max(next(self.message_ids), state.max_msg_id + 1))
        self._note_running(defs, state.max_msg_id)
        # last: a component told of a recovered value (a shovel) may start using the queues
        # and exchanges it names, so everything else is in place first
        self.runtime_parameters.recover(by_kind.get(PARAMETER_KIND, []))
        log.info("recovered %d vhosts, %d queues, %d messages", len(self.vhosts),
                 sum(len(v.queues) for v in self.vhosts.values()), recovered)

    def _note_running(self, definitions: dict[Any, dict[str, Any]], max_msg_id: int) -> None:
        """Which recovered messages may have been delivered (``possibly_delivered``): all of
        them after an unclean stop; the store hears that this run has started."""
        assert self.store is not None
        below = possibly_delivered.watermark_at_start(definitions, max_msg_id)
        self.possibly_delivered_below = below
        if below:
            for vh in self.vhosts.values():
                for q in vh.queues.values():
                    if q.journaled:     # not a stream: its log is no store's
                        q.possibly_delivered_below = below
        self.store.put_definition(possibly_delivered.KIND, possibly_delivered.KEY,
                                  possibly_delivered.record(below, running=True))
        try:
            # on disk before any client is served: a delivery's mark comes after it, and a
            # kill that took this record would make the next start count the stop as clean
            self.store.flush()
        except StoreUnavailable as e:
            log.warning("the store could not write that the broker runs (%s): a kill before "
                        "it does may return messages delivered as first deliveries", e)

    def note_clean_stop(self) -> None:
        """The store's last words of a clean stop, after the turn's notes: every delivered
        mark it holds is the truth, so the next start flags no more than it did."""
        if self.store is not None:
            self.store.put_definition(possibly_delivered.KIND, possibly_delivered.KEY,
                                      possibly_delivered.record(self.possibly_delivered_below,
                                                                running=False))

    #: Recovery reads records (the heads of queues, whole queues that decode every message)
    #: this many at a time, and pages out between batches (peak memory within the budget).
    RECOVERY_BATCH = 1000

    def _recover_queue(self, q: Queue, rq: RecoveredQueue, state: RecoveredState,
                       messages: dict[int, Message], special: set[int]) -> int:
        """One durable queue's messages, lazily: the first ``ready.WINDOW`` become objects
        (they go out first), the rest stay in the store as rows (``compact.py``) with the
        sizes the store measured, added in bulk between the few that need a step of their
        own (``special``: delivered before the stop, returned, held by several queues; few,
        whatever the depth). A message several
        queues hold is one object in each; a queue that needs every message decoded
        (priorities, a delivery limit) reads them all, a batch at a time, paging out as it
        goes."""
        store = self.store
        assert store is not None   # recovery reads a store
        eager = q.max_priority is not None or q.delivery_limit is not None
        ids, sizes = rq.msg_ids, rq.sizes
        shared = state.records
        delivered_set, counts = state.delivered, state.delivery_counts
        key = q.store_key
        over_limit: list[QueueEntry] = []
        done = 0

        def one(j: int, mid: int, records: dict[int, bytes]) -> None:
            """The message at position ``j``: a row past the window, else an entry."""
            nonlocal done
            delivered = (key, mid) in delivered_set
            count = counts.get((key, mid), 0)
            if delivered:
                # out with a consumer when the broker stopped: that was a return too, and
                # is stored as one (another crash before the next return counts again)
                count += 1
                self.note_returned(q, mid, count)
            record = shared.get(mid) or records.get(mid)
            if record is None and not eager and j >= WINDOW and sizes is not None:
                q.enqueue_paged(mid, sizes[j], delivered or count > 0, count)
                done += 1
                return
            msg = messages.get(mid)
            if msg is None:
                if record is None:
                    return   # the store lost it (logged there)
                msg = Message.from_record(record, self.codec, mid)
                msg.stored = True
                if mid in shared:
                    messages[mid] = msg
                self.track(msg)
            entry = q.enqueue(msg)
            entry.redelivered = delivered or count > 0
            entry.delivery_count = count
            if q.delivery_limit is not None and count > q.delivery_limit:
                over_limit.append(entry)
            done += 1

        # past the window, rows in bulk (sizes known, nothing to decode)
        bulk_from = len(ids) if eager or sizes is None else min(WINDOW, len(ids))
        for start in range(0, bulk_from, self.RECOVERY_BATCH):
            batch = ids[start:min(start + self.RECOVERY_BATCH, bulk_from)]
            if eager or start < WINDOW or sizes is None:
                wanted = [mid for mid in batch if mid not in shared]
            else:
                wanted = [mid for j, mid in enumerate(batch, start) if j < WINDOW]
            records = store.read_many(wanted) if wanted and sizes is not None else {}
            for j, mid in enumerate(batch, start):
                one(j, mid, records)
            if over_limit:   # before a page-out could turn them into rows
                q.dead_letter_over_limit(over_limit)
                over_limit = []
            if self.pager.resident > self.pager.budget > 0:
                self.pager.run()
        if bulk_from < len(ids) and sizes is not None:   # (bulk_from < len(ids): sizes known)
            if not special:
                q.enqueue_paged_many(ids[bulk_from:], sizes[bulk_from:])
                done += len(ids) - bulk_from
            else:
                # the stretches between the few specials go in bulk
                # (views of the store's arrays: the run copies each stretch once)
                id_view = memoryview(ids) if isinstance(ids, array) else ids
                size_view = memoryview(sizes) if isinstance(sizes, array) else sizes
                at = bulk_from
                for place in _places(ids, special, bulk_from):
                    if place > at:
                        q.enqueue_paged_many(id_view[at:place], size_view[at:place])
                        done += place - at
                    one(place, ids[place], {})
                    at = place + 1
                    if (done & 1023) == 0 and self.pager.resident > self.pager.budget > 0:
                        self.pager.run()   # shared ones are objects: within the budget
                if at < len(ids):
                    q.enqueue_paged_many(id_view[at:], size_view[at:])
                    done += len(ids) - at
                if self.pager.resident > self.pager.budget > 0:
                    self.pager.run()
        q._touch()
        return done


def _places(ids: Sequence[int], wanted: set[int], lo: int) -> list[int]:
    """Where the ids of ``wanted`` are in ``ids`` from ``lo`` on, in order. A queue's ids are
    in publish order, ascending but for what came back to it, so each is looked for by
    bisection first (C-level, and right whenever it lands on the id: a queue holds an id
    once); only those it misses (not in this queue, or the ids out of order there) cost a
    pass over the ids (a set lookup a row: 0.6 s at 10M, where the bisections take
    microseconds for the thousand messages a consumer had when the broker was killed)."""
    found: list[int] = []
    missed: set[int] = set()
    n = len(ids)
    for mid in wanted:
        j = bisect_left(ids, mid)
        if j < n and ids[j] == mid:
            if j >= lo:
                found.append(j)
        else:
            missed.add(mid)
    if missed:
        marks = bytes(map(missed.__contains__, ids[lo:]))
        at = marks.find(1)
        while at >= 0:
            found.append(lo + at)
            at = marks.find(1, at + 1)
    found.sort()
    return found


def _restored_exchange(e: dict[str, Any]) -> Exchange:
    return Exchange(e["vhost"], e["name"], e["type"], durable=True,
                    auto_delete=e.get("auto_delete", False), internal=e.get("internal", False),
                    arguments=e.get("arguments") or {})
