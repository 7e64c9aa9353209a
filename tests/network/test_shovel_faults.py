"""Dynamic shovels under faults, between real subprocess warren brokers (issue 11, "Faults").

Each test publishes messages with unique bodies (confirmed), lets shovels move them, injects a
fault, waits (polling the API with deadlines) for the shovels to come back, deletes them (so
what they held unacked goes back to the source) and reads everything at both ends. Lost =
published and found at neither end; duplicated = extra copies at the destination. With
``on-confirm`` nothing may be lost and only messages in flight (at most the prefetch) may
arrive twice; ``on-publish`` and ``no-ack`` lose what was in flight, as in RabbitMQ, so for
them the counts are only recorded (``SHOVEL-COUNTS`` lines, and the session summary).

In every test broker A runs the shovels; the other brokers are their remote ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.broker_process import BrokerProcess
from tests.network.shovels import (
    ACK_MODES,
    GarbageServer,
    Producer,
    TcpProxy,
    add_user,
    bodies,
    connect,
    delete_shovel,
    drain,
    publish_confirmed,
    put_shovel,
    queue_messages,
    record,
    remote_uri,
    shovel_status,
    tally,
    wait_state,
    wait_until,
)

PREFETCH = 50
RECONNECT = 0.2
COUNT = 1500


@pytest.fixture
def brokers(tmp_path) -> Iterator:
    """``brokers(name, *extra_args)`` starts a broker; all stop after, and none may have
    logged a traceback."""
    started: list[BrokerProcess] = []

    def start(name: str, *extra: str, wait: bool = True, data: str = "") -> BrokerProcess:
        b = BrokerProcess(tmp_path / (data or name), extra_args=list(extra))
        started.append(b)
        return b.start(wait=wait)

    yield start
    for b in started:
        b.stop(timeout=10)
        b.kill()
    for b in started:
        tracebacks = [line for line in b.lines if "Traceback" in line]
        assert not tracebacks, b.log()


def shovel_value(src: str, dest: str, ack_mode: str, *, src_queue: str | None = None,
                 dest_queue: str | None = None, **more) -> dict:
    value = {"src-uri": src, "dest-uri": dest, "ack-mode": ack_mode,
             "src-prefetch-count": PREFETCH, "reconnect-delay": RECONNECT}
    if src_queue is not None:
        value["src-queue"] = src_queue
    if dest_queue is not None:
        value["dest-queue"] = dest_queue
    value.update(more)
    return value


def start_shovels(runner: BrokerProcess, name: str, src: str, dest: str,
                  modes=ACK_MODES) -> dict[str, tuple[str, str, str]]:
    """One shovel per ack mode, ``{mode: (shovel, src queue, dest queue)}``."""
    out = {}
    for mode in modes:
        shovel, sq, dq = f"{name}-{mode}", f"{name}-{mode}-src", f"{name}-{mode}-dest"
        put_shovel(runner, shovel, shovel_value(src, dest, mode, src_queue=sq, dest_queue=dq))
        out[mode] = (shovel, sq, dq)
    return out


def settle_and_count(fault: str, runner: BrokerProcess, src_broker: BrokerProcess,
                     dest_broker: BrokerProcess, shovels: dict, published: dict) -> dict:
    """Wait until every shovel moved what it could, delete them, read both ends, count."""
    for mode, (shovel, sq, dq) in shovels.items():
        want = len(published[mode])
        if mode == "on-confirm":   # everything must arrive
            wait_until(lambda dq=dq, want=want: (queue_messages(dest_broker, dq) or 0) >= want,
                       60, f"{dq} to hold {want}")
        # the source is empty (nothing ready, nothing unacked) and nothing is pending
        wait_until(lambda sq=sq, shovel=shovel: queue_messages(src_broker, sq) == 0
                   and (shovel_status(runner, shovel) or {}).get("pending") == 0, 60,
                   f"{shovel} to finish")
        delete_shovel(runner, shovel)
    out = {}
    for mode, (shovel, sq, dq) in shovels.items():
        t = tally(published[mode], drain(dest_broker, dq), drain(src_broker, sq))
        record(fault, mode, t)
        out[mode] = t
    return out


def check(counts: dict, *, dups_allowed: int) -> None:
    confirm = counts["on-confirm"]
    assert confirm.lost == 0, confirm
    assert confirm.duplicated <= dups_allowed, confirm
    # on-publish and no-ack: RabbitMQ promises nothing about loss; the counts are recorded


# ------------------------------------------------------------------------------ 1. no fault
def test_every_ack_mode_moves_everything_exactly_once(brokers):
    a, b = brokers("a"), brokers("b")
    published = {}
    for mode in ACK_MODES:
        published[mode] = bodies(mode, COUNT)
        publish_confirmed(a, f"plain-{mode}-src", published[mode], window=True)
    shovels = start_shovels(a, "plain", "amqp://", remote_uri(b))
    for shovel, _sq, _dq in shovels.values():
        wait_state(a, shovel, "running")
    counts = settle_and_count("none", a, a, b, shovels, published)
    for mode, t in counts.items():
        assert (t.lost, t.duplicated, t.delivered, t.left) == (0, 0, COUNT, 0), (mode, t)


# ------------------------------------------------------------------------------ helpers
def start_producers(broker: BrokerProcess, shovels: dict) -> dict[str, Producer]:
    producers = {mode: Producer(broker, sq, mode) for mode, (_s, sq, _d) in shovels.items()}
    for p in producers.values():
        p.start()
    return producers


def wait_moving(broker: BrokerProcess, shovels: dict, count: int) -> None:
    """Each destination queue (on ``broker``) holds at least ``count``: mid-stream now."""
    for _shovel, _sq, dq in shovels.values():
        wait_until(lambda dq=dq: (queue_messages(broker, dq) or 0) >= count, 30,
                   f"{dq} >= {count}")


def wait_all(runner: BrokerProcess, shovels: dict, state: str, reason: str | None = None
             ) -> list[dict]:
    return [wait_state(runner, shovel, state, reason=reason) for shovel, _, _ in shovels.values()]


# ------------------------------------------------------------------------------ 2. remote killed
def test_destination_killed_and_restarted(brokers):
    a, b = brokers("a"), brokers("b")
    shovels = start_shovels(a, "dk", "amqp://", remote_uri(b))
    wait_all(a, shovels, "running")
    producers = start_producers(a, shovels)
    wait_moving(b, shovels, 200)
    b.kill()
    # terminated, with why, for as long as it cannot connect (not "starting")
    wait_all(a, shovels, "terminated", reason=f"connection refused to 127.0.0.1:{b.amqp_port}")
    b.start()
    wait_all(a, shovels, "running")
    for p in producers.values():   # and it keeps moving what comes after
        p.wait_confirmed(len(p.confirmed) + 100)
    published = {mode: p.finish() for mode, p in producers.items()}
    counts = settle_and_count("destination kill -9", a, a, b, shovels, published)
    check(counts, dups_allowed=PREFETCH)


def test_source_killed_and_restarted(brokers):
    a, b = brokers("a"), brokers("b")
    shovels = start_shovels(a, "sk", remote_uri(b), "amqp://")
    wait_all(a, shovels, "running")
    producers = start_producers(b, shovels)
    wait_moving(a, shovels, 200)
    b.kill()
    published = {mode: p.finish() for mode, p in producers.items()}  # they died with it
    wait_all(a, shovels, "terminated", reason=f"connection refused to 127.0.0.1:{b.amqp_port}")
    b.start()
    wait_all(a, shovels, "running")
    counts = settle_and_count("source kill -9", a, b, a, shovels, published)
    check(counts, dups_allowed=PREFETCH)


def test_a_remote_end_retries_every_reconnect_delay_without_backoff():
    """RabbitMQ's shovel tries again every reconnect-delay: a remote down for a long time is
    picked up within that delay once back, not after a backoff grown to a minute."""
    from twisted.internet.task import Clock

    from warren.network.shovel.definition import ShovelDefinition
    from warren.network.shovel.remote import RemoteDestination, RemoteSource

    d = ShovelDefinition.parse("/", "s", shovel_value(
        "amqp://h1", "amqp://h2", "on-confirm", src_queue="q", dest_queue="q",
        **{"reconnect-delay": 3}))
    for end in (RemoteSource(d.src_uris, d, Clock(), lambda *_: None),
                RemoteDestination(d.dest_uris, d, Clock(), lambda *_: None)):
        assert end.link.reconnect_delay == end.link.max_reconnect_delay == 3


# ------------------------------------------------------------------------------ 3. TCP cut
def test_link_connections_cut_by_a_proxy(brokers):
    """Both ends on broker B through a proxy the test controls; it drops every connection."""
    a, b = brokers("a"), brokers("b")
    proxy = TcpProxy(b.amqp_port)
    try:
        through = remote_uri(b, port=proxy.port)
        shovels = start_shovels(a, "cut", through, through)
        wait_all(a, shovels, "running")
        producers = start_producers(b, shovels)
        wait_moving(b, shovels, 200)
        accepted = proxy.accepted
        assert proxy.cut() >= 2 * len(shovels)   # a source and a destination link each
        a.wait_for_line("terminated: connection to 127.0.0.1:")
        wait_until(lambda: proxy.accepted >= accepted + 2 * len(shovels), 30, "reconnects")
        wait_all(a, shovels, "running")
        for p in producers.values():
            p.wait_confirmed(len(p.confirmed) + 100)
        published = {mode: p.finish() for mode, p in producers.items()}
        counts = settle_and_count("proxy cuts TCP", a, b, b, shovels, published)
        check(counts, dups_allowed=PREFETCH)
    finally:
        proxy.close()


# ------------------------------------------------------------------------------ 4. refusals
def test_refused_credentials_show_why_and_it_moves_once_fixed(brokers):
    a, b = brokers("a"), brokers("b")
    published = bodies("cred", 300)
    publish_confirmed(a, "cred-src", published, window=True)
    put_shovel(a, "cred", shovel_value("amqp://", remote_uri(b, user="mover", password="s3"),
                                       "on-confirm", src_queue="cred-src",
                                       dest_queue="cred-dest"))
    status = wait_state(a, "cred", "terminated", reason="ACCESS_REFUSED")
    print("refused login:", status["reason"])
    line = a.wait_for_line("ACCESS_REFUSED")           # and it keeps trying
    retries = len([x for x in a.lines if "ACCESS_REFUSED" in x])
    assert "mover" not in line or "s3" not in line     # no password in the log
    add_user(b, "mover", "s3")
    wait_state(a, "cred", "running")
    wait_until(lambda: queue_messages(b, "cred-dest") == 300, 30, "all moved")
    delete_shovel(a, "cred")
    t = tally(published, drain(b, "cred-dest"), drain(a, "cred-src"))
    record("refused login, then fixed", "on-confirm", t)
    assert (t.lost, t.duplicated) == (0, 0), t
    assert retries >= 1


def test_missing_source_queue_is_declared_and_missing_exchange_shows_not_found(brokers):
    a, b = brokers("a"), brokers("b")
    # the source queue does not exist on B: the shovel declares it (RabbitMQ does too)
    put_shovel(a, "nf", shovel_value(remote_uri(b), "amqp://", "on-confirm",
                                     src_queue="nf-src", **{"dest-exchange": "nf-x",
                                                            "dest-exchange-key": "k"}))
    # ... and the destination exchange does not exist on A: publishes are refused NOT_FOUND
    wait_until(lambda: queue_messages(b, "nf-src") == 0, 30, "source queue declared")
    a.wait_for_line("NOT_FOUND - no queue 'nf-src'")   # the passive look said why first
    published = bodies("nf", 200)
    publish_confirmed(b, "nf-src", published, window=True, declare=False)
    status = wait_state(a, "nf", "terminated", reason="NOT_FOUND")
    print("missing exchange:", status["reason"])
    assert "nf-x" in status["reason"]
    a.wait_for_line("restarting every")                # it retries (logged once)
    # fix it: the exchange, bound to a queue
    with connect(a) as conn:
        ch = conn.channel()
        ch.exchange_declare("nf-x", "direct", durable=True)
        ch.queue_declare("nf-dest", durable=True)
        ch.queue_bind("nf-dest", "nf-x", "k")
    wait_state(a, "nf", "running", timeout=30)
    wait_until(lambda: queue_messages(a, "nf-dest") == 200, 30, "all moved")
    delete_shovel(a, "nf")
    t = tally(published, drain(a, "nf-dest"), drain(b, "nf-src"))
    record("dest exchange missing, fixed", "on-confirm", t)
    assert (t.lost, t.duplicated) == (0, 0), t


def test_missing_source_exchange_shows_not_found_until_declared(brokers):
    a, b = brokers("a"), brokers("b")
    put_shovel(a, "nfx", shovel_value(remote_uri(b), "amqp://", "on-confirm",
                                      dest_queue="nfx-dest", **{"src-exchange": "nfx-x",
                                                                "src-exchange-key": "k"}))
    status = wait_state(a, "nfx", "terminated", reason="NOT_FOUND")
    print("missing source exchange:", status["reason"])
    assert "nfx-x" in status["reason"]
    with connect(b) as conn:
        conn.channel().exchange_declare("nfx-x", "direct", durable=True)
    wait_state(a, "nfx", "running", timeout=30)
    published = bodies("nfx", 200)
    publish_confirmed(b, "k", published, exchange="nfx-x", declare=False, window=True)
    wait_until(lambda: queue_messages(a, "nfx-dest") == 200, 30, "all moved")
    delete_shovel(a, "nfx")
    t = tally(published, drain(a, "nfx-dest"), [])
    record("source exchange missing, fixed", "on-confirm", t)
    assert (t.lost, t.duplicated) == (0, 0), t


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("end,junk_bytes", [("src", GarbageServer.JUNK),
                                             ("dest", GarbageServer.JUNK),
                                             ("dest", b"")])  # closes mid-handshake
def test_a_remote_speaking_garbage_leaves_a_clear_terminated_state(brokers, end, junk_bytes):
    a = brokers("a")
    junk = GarbageServer(junk_bytes)
    try:
        uri = f"amqp://guest:guest@127.0.0.1:{junk.port}/%2F"
        src, dest = (uri, "amqp://") if end == "src" else ("amqp://", uri)
        put_shovel(a, "junk", shovel_value(src, dest, "on-confirm", src_queue="junk-src",
                                           dest_queue="junk-dest"))
        status = wait_state(a, "junk", "terminated", reason=f"127.0.0.1:{junk.port}")
        print("garbage:", status["reason"])
        wait_until(lambda: junk.accepted >= 3, 30, "retries")   # retried, not given up
        status = wait_state(a, "junk", "terminated")
        assert f"127.0.0.1:{junk.port}" in status["reason"]
        delete_shovel(a, "junk")
    finally:
        junk.close()
    # the fixture checks no traceback reached the broker's log


# ------------------------------------------------------------------------------ 5. warren killed
def test_the_shovelling_broker_killed_and_restarted(brokers):
    """A runs shovels both ways (local source to B, and B to a local destination) and is
    killed -9: they are stored parameters, so they run again after its restart and resume
    where the sources are."""
    a, b = brokers("a"), brokers("b")
    out = start_shovels(a, "wko", "amqp://", remote_uri(b))     # A -> B
    into = start_shovels(a, "wki", remote_uri(b), "amqp://")    # B -> A
    wait_all(a, {**out, **{"i" + m: v for m, v in into.items()}}, "running")
    producers_out = start_producers(a, out)
    producers_in = start_producers(b, into)
    wait_moving(b, out, 200)
    wait_moving(a, into, 200)
    a.kill()
    published_out = {mode: p.finish() for mode, p in producers_out.items()}  # died with A
    a.start()
    wait_all(a, out, "running")
    wait_all(a, into, "running")
    for p in producers_in.values():
        p.wait_confirmed(len(p.confirmed) + 100)
    published_in = {mode: p.finish() for mode, p in producers_in.items()}
    counts = settle_and_count("shovelling broker kill -9 (out)", a, a, b, out, published_out)
    check(counts, dups_allowed=PREFETCH)
    counts = settle_and_count("shovelling broker kill -9 (in)", a, b, a, into, published_in)
    check(counts, dups_allowed=PREFETCH)


# ------------------------------------------------------------------------------ 6. memory alarm
def test_a_destination_blocked_by_its_memory_alarm_holds_the_shovel(brokers):
    size, count, watermark = 10_000, 300, 600_000
    a = brokers("a")
    b = brokers("b", "--memory-high-watermark", str(watermark))
    pad = b"." * size
    published = [body + pad for body in bodies("mem", count)]
    publish_confirmed(a, "mem-src", published, window=True)
    put_shovel(a, "mem", shovel_value("amqp://", remote_uri(b), "on-confirm",
                                      src_queue="mem-src", dest_queue="mem-dest"))
    status = wait_state(a, "mem", "blocked")
    b.wait_for_line("memory high watermark passed")
    # flow control: what B holds is its watermark plus at most what was in flight
    held = queue_messages(b, "mem-dest")
    assert held * size <= watermark + (PREFETCH + 1) * size, (held, status)
    assert queue_messages(a, "mem-src") > 0 and status["pending"] <= PREFETCH, status
    print(f"blocked with {held} of {count} moved, pending {status['pending']}")
    # a consumer drains B: below the low watermark B unblocks and the shovel goes on
    got: list[bytes] = []
    wait_until(lambda: got.extend(drain(b, "mem-dest")) or len(set(got)) >= count, 60,
               "everything to pass through B")
    wait_state(a, "mem", "running")
    delete_shovel(a, "mem")
    t = tally(published, got + drain(b, "mem-dest"), drain(a, "mem-src"))
    record("dest memory alarm", "on-confirm", t)
    assert (t.lost, t.duplicated) == (0, 0), t


# ------------------------------------------------------------------------------ 7. HA failover
def test_ha_failover_of_the_pair_running_the_shovels(brokers):
    """The shovels belong to a shared-file master/slave pair: the slave, once master, runs
    them (from the stored parameters) and goes on from the shared store."""
    b = brokers("b")
    first = brokers("pa", "--ha", "shared-file", "--node-name", "warren@pa", data="pair")
    second = brokers("pb", "--ha", "shared-file", "--node-name", "warren@pb", data="pair",
                     wait=False)
    second.wait_for_line("waiting for the lock held by")
    shovels = start_shovels(first, "ha", "amqp://", remote_uri(b))
    wait_all(first, shovels, "running")
    producers = start_producers(first, shovels)
    wait_moving(b, shovels, 200)
    first.kill()
    published = {mode: p.finish() for mode, p in producers.items()}  # they died with it
    second.wait_ready(30)
    statuses = wait_all(second, shovels, "running")
    assert all(s["node"] == "warren@pb" for s in statuses), statuses
    counts = settle_and_count("HA failover", second, second, b, shovels, published)
    check(counts, dups_allowed=PREFETCH)
