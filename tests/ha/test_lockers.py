"""The lockers alone: exclusivity, holder, release, loss, lease expiry, concurrent takers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from tests.polling import eventually as poll
from warren.ha.file_locker import SharedFileLocker
from warren.ha.lease_locker import LeaseLocker


def eventually(check, timeout: float = 10.0):
    return poll(check, "the lock state", timeout=timeout, every=0.02)


# ---------------------------------------------------------------- file lock
def test_file_lock_is_exclusive_and_names_its_holder(tmp_path):
    a, b = SharedFileLocker(str(tmp_path), "a"), SharedFileLocker(str(tmp_path), "b")
    assert a.holder() is None
    assert a.acquire()
    assert not b.acquire()
    assert b.holder() == "a"
    assert a.renew()
    a.release()
    assert b.holder() is None
    assert b.acquire() and not a.acquire()
    b.close()


def test_file_lock_renew_fails_when_the_lock_file_is_replaced(tmp_path):
    a = SharedFileLocker(str(tmp_path), "a")
    assert a.acquire()
    os.unlink(a.path)
    assert not a.renew()
    b = SharedFileLocker(str(tmp_path), "b")
    assert b.acquire()  # the new file is free: exactly why a must stop serving
    a.close()
    b.close()


def test_file_lock_is_freed_by_process_death(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         ("import sys, time; from warren.ha.file_locker import SharedFileLocker; "
          f"l = SharedFileLocker({str(tmp_path)!r}, 'child'); assert l.acquire(); "
          "print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert holder.stdout.readline().strip() == "locked"
        me = SharedFileLocker(str(tmp_path), "me")
        assert not me.acquire()
        assert me.holder() == "child"
        holder.kill()
        holder.wait(10)
        assert me.acquire()
        me.close()
    finally:
        holder.kill()


# ---------------------------------------------------------------- lease
@pytest.fixture(params=["sqlite", "postgresql"])
def lease_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/lease.db"
    return request.getfixturevalue("ha_pg_url")


def test_lease_is_exclusive_until_it_expires(lease_url):
    a = LeaseLocker(lease_url, ttl=0.5, owner="a")
    b = LeaseLocker(lease_url, ttl=0.5, owner="b")
    try:
        assert a.holder() is None
        assert a.acquire()
        assert not b.acquire()
        assert b.holder() == "a"
        assert a.renew()
        assert eventually(b.acquire)           # only once a's lease ran out
        assert not a.renew()                   # a never gets it back silently
        assert a.holder() == "b"
        b.release()
        assert a.acquire()                     # released: at once, no expiry to wait for
    finally:
        a.close()
        b.close()


def test_lease_release_by_a_non_holder_changes_nothing(lease_url):
    a = LeaseLocker(lease_url, ttl=30, owner="a")
    b = LeaseLocker(lease_url, ttl=30, owner="b")
    try:
        assert a.acquire()
        b.release()
        assert b.holder() == "a" and not b.acquire()
    finally:
        a.close()
        b.close()


def test_lease_has_one_winner_among_concurrent_takers(lease_url):
    lockers = [LeaseLocker(lease_url, ttl=30, owner=f"n{i}") for i in range(8)]
    lockers[0].holder()  # schema and row exist before the race (the race is on the UPDATE)
    barrier = threading.Barrier(len(lockers))
    results: dict[str, bool] = {}

    def take(locker: LeaseLocker) -> None:
        barrier.wait()
        results[locker.owner] = locker.acquire()
    threads = [threading.Thread(target=take, args=(locker,)) for locker in lockers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        winners = [owner for owner, won in results.items() if won]
        assert len(winners) == 1
        assert lockers[0].holder() == winners[0]
    finally:
        for locker in lockers:
            locker.close()


def test_lease_unreachable_database_raises_lock_unavailable(tmp_path):
    from warren.ha.locker import LockUnavailable
    locker = LeaseLocker("postgresql+psycopg://nobody@127.0.0.1:1/none", ttl=2, timeout=0.5)
    with pytest.raises(LockUnavailable):
        locker.acquire()


# ---------------------------------------------------------------- lease liveness (PostgreSQL)
def terminate_liveness(url: str, owner: str) -> int:
    """``pg_terminate_backend`` the liveness session of ``owner``; how many were ended.

    The session's ``application_name`` is cut to PostgreSQL's 63 bytes, and so is the name
    looked for (a host's long name makes the owner id longer than that)."""
    import psycopg

    from warren.ha.lease_locker import LIVENESS_APP
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE %s", ((LIVENESS_APP + owner)[:63].replace("%", r"\%")
                                               .replace("_", r"\_") + "%",)).fetchall()
    return len(rows)


def test_bound_lease_is_taken_at_once_when_the_holders_session_ends(ha_pg_url):
    a = LeaseLocker(ha_pg_url, ttl=30, owner="a")
    b = LeaseLocker(ha_pg_url, ttl=30, owner="b")
    try:
        assert a.acquire() and a.bound and a.took_over_from is None
        assert not b.probe() and not b.acquire()
        assert b.holder() == "a"
        assert a.renew() and not a.liveness_lost()
        assert terminate_liveness(ha_pg_url, "a") == 1
        assert eventually(a.liveness_lost, 5)            # the owner sees it without a query
        # long before the 30 s lease ends; the server lists the ended session a moment longer
        assert eventually(b.probe, 5)
        assert b.bound and b.took_over_from == "a"
        assert not a.renew() and not a.acquire()
        assert a.holder() == "b"
    finally:
        a.close()
        b.close()


def test_live_unbound_lease_is_not_taken_by_the_fast_path_and_binds_later(ha_pg_url):
    a = LeaseLocker(ha_pg_url, ttl=30, owner="a")
    b = LeaseLocker(ha_pg_url, ttl=30, owner="b")
    squatter = LeaseLocker(ha_pg_url, ttl=30, owner="squatter")
    try:
        squatter.holder()
        assert squatter._live.try_lock()                 # e.g. a stopped old master's session
        assert a.acquire() and not a.bound               # by the expiry rule alone
        assert a.renew() and not a.bound                 # cannot bind yet
        squatter._live.unlock()
        assert not b.probe()                             # b gets the lock, but a is live
        assert not b._live.held                          # ... and b let it go at once
        assert a.renew() and a.bound                     # so a binds at its next renewal
        assert not b.probe() and b.holder() == "a"
    finally:
        for locker in (a, b, squatter):
            locker.close()


def test_lease_of_a_killed_process_is_taken_by_the_fast_path(ha_pg_url):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         ("import time; from warren.ha.lease_locker import LeaseLocker; "
          f"l = LeaseLocker({ha_pg_url!r}, ttl=30, owner='child'); assert l.acquire(); "
          "assert l.bound; print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    me = LeaseLocker(ha_pg_url, ttl=30, owner="me")
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert not me.probe() and me.holder() == "child"
        holder.kill()
        holder.wait(10)
        # well inside the child's 30 s lease: only the fast path can take it (how fast:
        # ``python -m bench.failover --lockers probe``)
        assert eventually(me.probe, 20)
        assert me.took_over_from == "child"
    finally:
        holder.kill()
        me.close()


def test_release_frees_the_liveness_lock_and_the_lease(ha_pg_url):
    a = LeaseLocker(ha_pg_url, ttl=30, owner="a")
    b = LeaseLocker(ha_pg_url, ttl=30, owner="b")
    try:
        assert a.acquire() and a.bound
        a.release()
        assert b.probe() and b.bound and b.took_over_from is None
    finally:
        a.close()
        b.close()


def test_error_response_detection_walks_the_server_messages():
    from warren.ha.lease_locker import _has_error_response

    def message(kind: bytes, body: bytes) -> bytes:
        return kind + (len(body) + 4).to_bytes(4, "big") + body
    assert _has_error_response(message(b"E", b"SFATAL\x00"))
    assert _has_error_response(message(b"N", b"notice\x00") + message(b"E", b"x"))
    assert not _has_error_response(message(b"S", b"a\x00b\x00") + message(b"N", b"E"))
    assert not _has_error_response(b"")


def test_lease_taken_by_a_broker_of_the_previous_version_is_not_bound(ha_pg_url):
    import psycopg
    a = LeaseLocker(ha_pg_url, ttl=30, owner="a")
    b = LeaseLocker(ha_pg_url, ttl=30, owner="b")
    try:
        assert a.acquire() and a.bound
        a._live.reset()                                  # a's session ends, a's row stays bound
        with psycopg.connect(ha_pg_url.replace("postgresql+psycopg://", "postgresql://"),
                             autocommit=True) as conn:   # the old take, which knows no bound_owner
            conn.execute("UPDATE warren_lock SET owner = 'old', "
                         "expires_at = extract(epoch from clock_timestamp()) + 30")
        assert not b.probe() and not b.acquire()         # 'old' never bound: expiry only
        assert b.holder() == "old"
    finally:
        a.close()
        b.close()
