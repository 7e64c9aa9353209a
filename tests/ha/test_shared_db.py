"""Master/slave on one PostgreSQL (lease in warren_lock), and on one SQLite file.

Leases are short here (``--lease-ttl 2 --lease-renew 0.5``, see conftest) so that waiting for
one to expire costs two seconds, not ten — except where the default lease (10 s / 2 s) is the
point: a master whose process or database session ends is replaced through the liveness fast
path, well before its lease could expire.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.broker_process import BrokerProcess
from tests.ha.conftest import (
    LEASE_ARGS,
    FailoverPublisher,
    Pair,
    check_no_loss,
    connect,
    drain,
    kill_master_cycles,
    publish_confirmed,
    refuses_amqp,
)

TTL = 2.0
#: how long the slave is given to serve, generous for a loaded host: how fast it is, is
#: measured by ``python -m bench.failover`` (takeover_s, failover_s, fence_s), not asserted
READY = 60.0
FAST_PATH_LINE = "liveness session of"


def start_pair(pair: Pair):
    a, b = pair.brokers
    a.start()
    b.start(wait=False)
    b.wait_for_line("waiting for the lock held by warren@a/")
    return a, b


def test_kill_9_of_the_master_slave_takes_over_after_the_lease(db_pair, unique):
    a, b = start_pair(db_pair)
    queue = unique + "q"
    bodies = [f"m{i}".encode() for i in range(100)]
    publish_confirmed(a, queue, bodies)
    conn = connect(a)
    unacked = [conn.channel().basic_get(queue, auto_ack=False)[2]]
    # the SQL store writes "delivered" marks lazily, with the next commit: make one
    publish_confirmed(a, unique + "other", [b"commit"])
    a.kill()
    b.wait_ready(TTL + READY)
    got = drain(b, queue)
    assert [body for body, _ in got] == bodies
    assert all(redelivered for _, redelivered in got)   # the master died: possibly delivered


def test_kill_9_with_the_default_lease_fails_over_through_the_liveness_lock(
        default_lease_pair, unique):
    a, b = start_pair(default_lease_pair)
    queue = unique + "q"
    bodies = [f"m{i}".encode() for i in range(100)]
    publish_confirmed(a, queue, bodies)
    conn = connect(a)
    unacked = [conn.channel().basic_get(queue, auto_ack=False)[2]]
    publish_confirmed(a, unique + "other", [b"commit"])  # writes the lazy "delivered" mark
    a.kill()
    b.wait_ready(READY)
    # taken through the fast path, not by waiting for the lease to run out
    assert any(FAST_PATH_LINE in line for line in b.lines)
    got = drain(b, queue)
    assert [body for body, _ in got] == bodies
    assert all(redelivered for _, redelivered in got)   # the master died: possibly delivered


def test_master_whose_liveness_session_is_terminated_fences_and_the_slave_takes_over(
        default_lease_pair, ha_pg_url, unique):
    from tests.ha.test_lockers import terminate_liveness
    a, b = start_pair(default_lease_pair)
    queue = unique + "q"
    bodies = [f"m{i}".encode() for i in range(20)]
    publish_confirmed(a, queue, bodies)
    a_owner = a.wait_for_line("this broker is warren@a/").split("this broker is ")[1].split(";")[0]
    assert terminate_liveness(ha_pg_url, a_owner) == 1
    a.wait_for_line("role: master -> waiting (fenced: the database closed this broker's "
                    "liveness session", timeout=READY)
    b.wait_ready(READY)
    assert refuses_amqp(a)
    a.wait_for_line("waiting for the lock held by warren@b/")
    assert default_lease_pair.masters() == [b]
    assert [body for body, _ in drain(b, queue)] == bodies


def test_paused_master_is_fenced_when_it_wakes_up(db_pair, unique):
    a, b = start_pair(db_pair)
    queue = unique + "q"
    publish_confirmed(a, queue, [b"before"])
    client = connect(a)                    # a client of the old master, open across the pause
    os.killpg(a.proc.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        b.wait_ready(TTL + READY)          # the lease ran out while a slept
        # a stopped process keeps its socket, so its liveness lock: only expiry freed the lease
        assert time.monotonic() - stopped > TTL - 0.5 - 0.1
        assert not any(FAST_PATH_LINE in line for line in b.lines)
        publish_confirmed(b, queue, [b"on b"])
    finally:
        os.killpg(a.proc.pid, signal.SIGCONT)
    a.wait_for_line("role: master -> waiting (fenced")
    assert refuses_amqp(a)
    a.wait_for_line("waiting for the lock held by warren@b/")
    assert not client._impl.is_open or _client_is_dropped(client)
    assert db_pair.masters() == [b]
    assert [body for body, _ in drain(b, queue)] == [b"before", b"on b"]


def _client_is_dropped(client) -> bool:
    import pika
    try:
        client.process_data_events(time_limit=2)
        client.channel().queue_declare("", exclusive=True)
    except (pika.exceptions.AMQPError, OSError):
        return True
    return False


def test_master_fences_itself_when_the_database_goes_away(db_pair, pg_cluster, unique):
    a, _b = start_pair(db_pair)
    queue = unique + "q"
    bodies = [f"m{i}".encode() for i in range(50)]
    publish_confirmed(a, queue, bodies)
    pg_cluster.stop("immediate")
    try:
        a.wait_for_line("role: master -> waiting (fenced", timeout=TTL + 10)
        assert refuses_amqp(a)
        assert db_pair.masters() == []
    finally:
        pg_cluster.start()
    master = db_pair.wait_master(timeout=TTL + 20)
    assert [body for body, _ in drain(master, queue)] == bodies
    assert len(db_pair.masters()) == 1


@pytest.mark.parametrize("lease", ["db_pair", "default_lease_pair"])
def test_brokers_started_at_the_same_moment_make_one_master(request, lease):
    pair = request.getfixturevalue(lease)
    pair.start()
    master = pair.wait_master()
    slave = next(b for b in pair.brokers if b is not master)
    slave.wait_for_line("waiting for the lock held by")
    assert pair.masters() == [master]
    assert refuses_amqp(slave)


def test_failover_cycles_with_a_confirmed_publisher_lose_nothing(db_pair, unique):
    start_pair(db_pair)
    queue = unique + "q"
    publisher = FailoverPublisher(db_pair, queue)
    master = kill_master_cycles(db_pair, publisher, 3, TTL + 10)
    assert publisher.error is None, publisher.error
    check_no_loss(publisher, [body for body, _ in drain(master, queue)])


def test_sqlite_shared_db_on_one_host(tmp_path, unique):
    url = f"sqlite:///{tmp_path}/shared.db"
    pair = Pair([BrokerProcess(tmp_path / n, store="sql", store_url=url,
                               extra_args=["--ha", "shared-db", "--node-name", f"warren@{n}",
                                           *LEASE_ARGS]) for n in ("a", "b")])
    try:
        a, b = start_pair(pair)
        publish_confirmed(a, unique + "q", [b"1", b"2"])
        a.kill()
        b.wait_ready(TTL + 10)
        assert [body for body, _ in drain(b, unique + "q")] == [b"1", b"2"]
    finally:
        pair.stop()
