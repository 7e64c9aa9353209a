"""A persistent session's record is written in parts over several reactor turns, and made
current by its head (``session_records.py``): whatever point a crash cuts the writes at, the
session read back is the set after some answered packet, never part of one; what the last
head names is the whole set, in order; parts nobody names are gone.

In process, on a fake clock (as ``test_session_unit``), with a store that keeps every
definition write in order: a journal replay after a kill -9 gives a prefix of them, so every
prefix is read back by a new registry. The turn budget is 0 here, so that every slice of a
SUBSCRIBE and every part of a save is a turn of its own and they interleave."""

from __future__ import annotations

import json

import pytest
from twisted.internet.task import Clock

import warren.turn_slices
from tests.memory_store import MemoryStore
from tests.mqtt.test_session_unit import Harness
from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.config import Config
from warren.mqtt.codec import SubAck, Subscribe, Subscription, UnsubAck, Unsubscribe
from warren.mqtt.registry import SessionRegistry
from warren.mqtt.session_records import HEAD_PREFIX, PART_PREFIX
from warren.store.interface import StoreError


class DefinitionLog(MemoryStore):
    """The store's definition writes, in order, as the store would read them back (JSON)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str, dict | None]] = []

    def put_definition(self, kind, key, value) -> None:
        self.writes.append((kind, key, None if value is None else json.loads(json.dumps(value))))


def _replayed(writes: list) -> dict:
    params: dict = {}
    for kind, key, value in writes:
        if kind != "parameter":
            continue
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return params


def _restored(params: dict) -> list | None:
    """The subscriptions a broker started on ``params`` gives client c1, in order."""
    broker = Broker(clock=Clock(), codec=CODEC, store=MemoryStore())
    broker.ensure_defaults()
    broker.parameters.update(params)
    state = SessionRegistry(broker, Config(), broker.clock).sessions.get(("/", "c1"))
    return None if state is None else list(state.subs.items())


def _answer(c, packet) -> list:
    """Hand a packet over and run the reactor's turns (the record's writer's among them)
    until the session answered it, as the listener does: its slices, then the turns of the
    record's save that the answer of a persistent session waits for."""
    out = c.send(packet)
    session = c.session
    while session.pending_work is not None:
        c.h.clock.advance(0)
        if session.pending_work():
            session.pending_work = None
        session.after_read()
        out += c.conn.take()
    while not out and not c.conn.closed:
        assert c.h.clock.getDelayedCalls(), "no answer and nothing left to run"
        c.h.clock.advance(0)
        out += c.conn.take()
    return out


def _turns_until_idle(clock: Clock) -> None:
    while any(call.getTime() <= clock.seconds() for call in clock.getDelayedCalls()):
        clock.advance(0)


@pytest.fixture
def every_slice_a_turn(monkeypatch):
    monkeypatch.setattr(warren.turn_slices, "TURN_BUDGET", 0.0)


def test_a_crash_at_any_write_gives_the_set_after_an_answered_packet(every_slice_a_turn):
    store = DefinitionLog()
    h = Harness(store)
    c = h.client(4)
    c.connect(clean_start=False)
    state = h.registry.sessions[("/", "c1")]
    acked = [[]]
    packets = [
        Subscribe(1, tuple(Subscription(f"a/{i}", i % 3) for i in range(2500))),
        Unsubscribe(2, tuple(f"a/{i}" for i in range(1000))),
        # other QoS for some (replaced in place), some again (at the end now), one new
        Subscribe(3, tuple(Subscription(f"a/{i}", (i + 1) % 3)
                           for i in [*range(1000, 2000), *range(300)]) + (Subscription("b", 1),)),
        Unsubscribe(4, tuple(f"a/{i}" for i in range(1000, 2500))),
        Subscribe(5, tuple(Subscription(f"c/{i}", 2) for i in range(1500))),
    ]
    for packet in packets:
        answers = _answer(c, packet)
        assert [type(p) for p in answers] == [SubAck if type(packet) is Subscribe else UnsubAck]
        acked.append(list(state.subs.items()))
        # the answer came once the record held the packet's changes: a crash now gives them
        assert _restored(_replayed(store.writes)) == acked[-1]
    _turns_until_idle(h.clock)
    writes = [w for w in store.writes if w[1].startswith("mqtt-session")]
    for cut in range(len(writes) + 1):
        restored = _restored(_replayed(writes[:cut]))
        assert (restored or []) in acked, f"a crash after write {cut} of {len(writes)}"
    final = _replayed(writes)
    assert _restored(final) == acked[-1]
    (head,) = [v for k, v in final.items() if k.startswith(HEAD_PREFIX)]
    assert sorted(k for k in final if k.startswith(PART_PREFIX)) == sorted(
        f"{PART_PREFIX}/\x1fc1\x1f{n}" for n in head["parts"])
    assert head["count"] == len(acked[-1])


def test_a_save_writes_what_changed_not_the_whole_set():
    """One more subscription of a session of 5,000 costs one small part and a head."""
    store = DefinitionLog()
    h = Harness(store)
    c = h.client(4)
    c.connect(clean_start=False)
    _answer(c, Subscribe(1, tuple(Subscription(f"a/{i}", 1) for i in range(5000))))
    _turns_until_idle(h.clock)
    before = len(store.writes)
    _answer(c, Subscribe(2, (Subscription("one/more", 1),)))
    _turns_until_idle(h.clock)
    new = [w for w in store.writes[before:] if w[0] == "parameter"]
    parts = [v for _kind, k, v in new if k.startswith(PART_PREFIX)]
    assert [len(p["subs"]) for p in parts] == [1]
    assert len(new) == 2
    assert len(_restored(_replayed(store.writes))) == 5001


def test_an_ended_session_leaves_no_record(every_slice_a_turn):
    """A clean start ends the session, a save under way included: no head, no part."""
    store = DefinitionLog()
    h = Harness(store)
    c = h.client(4)
    c.connect(clean_start=False)
    _answer(c, Subscribe(1, tuple(Subscription(f"a/{i}", 1) for i in range(3000))))
    h.clock.advance(0)     # the save has begun: a part written, not its head
    c.session.close()
    again = h.client(4)
    again.connect(clean_start=True)
    _turns_until_idle(h.clock)
    left = _replayed(store.writes)
    assert not [k for k in left if k.startswith((HEAD_PREFIX, PART_PREFIX))]


def test_a_record_of_the_layout_before_is_read_and_rewritten_whole():
    """A head holding every subscription itself (as written before the parts) comes back,
    and the session's first save writes its whole set in parts, the old ones included."""
    old = {"vhost": "/", "client_id": "c1", "expiry": 0xFFFFFFFF, "subscriptions": [
        {"filter": f"old/{i}", "qos": i % 3, "nl": False, "rap": False, "id": None}
        for i in range(10)]}
    store = DefinitionLog()
    h = Harness.__new__(Harness)
    h.clock = Clock()
    h.broker = Broker(clock=h.clock, codec=CODEC, store=store)
    h.broker.ensure_defaults()
    h.broker.parameters[f"{HEAD_PREFIX}/\x1fc1"] = old
    h.config = Config()
    h.registry = SessionRegistry(h.broker, h.config, h.clock)
    c = h.client(4)
    c.connect(clean_start=False)
    _answer(c, Subscribe(1, (Subscription("new/one", 1),)))
    _turns_until_idle(h.clock)
    params = {f"{HEAD_PREFIX}/\x1fc1": old, **_replayed(store.writes)}
    restored = _restored(params)
    assert [full for full, _sub in restored] == [*(f"old/{i}" for i in range(10)), "new/one"]
    assert [sub.qos for _full, sub in restored] == [*(i % 3 for i in range(10)), 1]


class FailingOnce(DefinitionLog):
    """A store that refuses the first write of a session part (a full disk, say)."""

    failed = False

    def put_definition(self, kind, key, value) -> None:
        if not self.failed and key.startswith(PART_PREFIX) and value is not None:
            self.failed = True
            self.failed_at = len(self.writes)
            raise StoreError("disk full")
        super().put_definition(kind, key, value)


def test_a_save_the_store_refused_is_made_good_by_the_next(every_slice_a_turn, caplog):
    """The head of before stands, the SUBACK waiting for the save is never sent (the
    connection closes, as when a PUBACK's sync fails), and the next save writes the whole
    set: the changes the refused save had taken are not lost from the record."""
    store = FailingOnce()
    h = Harness(store)
    c = h.client(4)
    c.connect(clean_start=False)
    with caplog.at_level("ERROR", logger="warren.mqtt"):
        answers = _answer(c, Subscribe(1, tuple(Subscription(f"a/{i}", 1)
                                                for i in range(1500))))
        _turns_until_idle(h.clock)
    assert store.failed and "saving MQTT session 'c1' of vhost '/' failed" in caplog.text
    assert not [p for p in answers if type(p) is SubAck] and c.conn.closed
    assert _restored(_replayed(store.writes[:store.failed_at])) == []
    # the save at the close wrote the whole set
    assert len(_restored(_replayed(store.writes))) == 1500
    c = h.client(4)
    assert c.connect(clean_start=False).session_present
    _answer(c, Subscribe(2, (Subscription("b", 2),)))
    _turns_until_idle(h.clock)
    state = h.registry.sessions[("/", "c1")]
    assert _restored(_replayed(store.writes)) == list(state.subs.items())
    assert len(state.subs) == 1501
