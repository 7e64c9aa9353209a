"""One broker per store without ``--ha``: a second ``warren run`` on a store in use refuses.

Two brokers writing one journal lose each other's confirmed messages, so the second must not
start at all: exit non-zero with one line naming the store and the holder (pid, host, start
time), no traceback, no listener opened, and the first broker's messages untouched. Run on
every store of the durability suite (journal, SQLite file, PostgreSQL).
"""

from __future__ import annotations

import os

import pika
import pytest

from tests.broker_process import BrokerProcess
from tests.durability.clients import read_queue
from tests.durability.conftest import fresh_database

COUNT = 200


def publish_confirmed(url: str, queue: str, count: int) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.queue_declare(queue, durable=True)
        ch.confirm_delivery()
        for i in range(count):
            ch.basic_publish("", queue, f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()


def refused(broker: BrokerProcess) -> str:
    """Start ``broker``, expect it to exit non-zero before serving; return its error line."""
    broker.start(wait=False)
    code = broker.proc.wait(60)
    broker.kill()  # joins the output reader
    assert code != 0, broker.log()
    assert not broker.ready, "the second broker started:\n" + broker.log()
    errors = [line for line in broker.lines if " ERROR " in line]
    assert len(errors) == 1, broker.log()
    assert "Traceback" not in broker.log()
    return errors[0]


@pytest.fixture
def store_args(store: dict[str, str], tmp_path) -> dict[str, str]:
    """The durability suite's store, with SQLite at an explicit shared path."""
    if store == {"store": "sql"}:
        return {"store": "sql", "store_url": f"sqlite:///{tmp_path}/shared.db"}
    return store


def test_second_broker_on_a_store_in_use_refuses_and_loses_nothing(tmp_path, store_args):
    first = BrokerProcess(tmp_path / "a", **store_args)
    # the journal is shared through the data directory, the SQL stores through the URL
    second_dir = tmp_path / ("a" if store_args["store"] == "journal" else "b")
    second = BrokerProcess(second_dir, **store_args)
    try:
        first.start()
        publish_confirmed(first.amqp_url, "kept", COUNT)
        line = refused(second)
        assert f"pid {first.proc.pid} on host " in line, line
        assert "started " in line and "in use by another broker" in line, line
        if store_args["store"] == "journal":
            assert f"data directory {os.path.abspath(tmp_path / 'a')}" in line, line
        elif store_args["store_url"].startswith("sqlite"):
            assert f"{tmp_path}/shared.db" in line, line
        else:
            assert "database postgresql" in line, line
        # the first broker still serves, with every confirmed message
        assert [b for b, _ in read_queue(first.amqp_url, "kept")] == \
            [f"m{i}".encode() for i in range(COUNT)]
        # once the holder is gone (however it died) the store is free again
        first.kill()
        second.start()
        assert len(read_queue(second.amqp_url, "kept")) == COUNT
    finally:
        for b in (first, second):
            b.stop()
            b.kill()


def test_standalone_broker_refuses_a_database_an_ha_master_serves(tmp_path, pg_url):
    url = fresh_database(pg_url)
    master = BrokerProcess(tmp_path / "m", store="sql", store_url=url,
                           extra_args=["--ha", "shared-db"])
    standalone = BrokerProcess(tmp_path / "s", store="sql", store_url=url)
    try:
        master.start()
        line = refused(standalone)
        assert "in use by another broker" in line and "--ha shared-db" in line, line
        assert f"/{master.proc.pid}/" in line or f"pid {master.proc.pid} " in line, line
    finally:
        for b in (master, standalone):
            b.stop()
            b.kill()


def test_ha_pair_refuses_a_database_a_standalone_broker_serves(tmp_path, pg_url):
    url = fresh_database(pg_url)
    standalone = BrokerProcess(tmp_path / "s", store="sql", store_url=url)
    member = BrokerProcess(tmp_path / "m", store="sql", store_url=url,
                           extra_args=["--ha", "shared-db"])
    try:
        standalone.start()
        publish_confirmed(standalone.amqp_url, "kept", COUNT)
        line = refused(member)
        assert "in use by another broker" in line and "without --ha" in line, line
        assert f"pid {standalone.proc.pid} on host " in line, line
        assert "--ha shared-db" in line, line
        assert len(read_queue(standalone.amqp_url, "kept")) == COUNT
        # once the standalone broker is gone, the member starts and serves what it stored
        standalone.kill()
        member.start()
        member.wait_for_line("role: waiting -> master")
        assert len(read_queue(member.amqp_url, "kept")) == COUNT
    finally:
        for b in (standalone, member):
            b.stop()
            b.kill()


def test_standalone_broker_still_refuses_a_database_an_ha_member_holds(tmp_path, pg_url):
    """The member's shared hold on the standalone key (new) and its lease (as before) both
    keep a standalone broker out; the refusal still names the member."""
    url = fresh_database(pg_url)
    member = BrokerProcess(tmp_path / "m", store="sql", store_url=url,
                           extra_args=["--ha", "shared-db"])
    standalone = BrokerProcess(tmp_path / "s", store="sql", store_url=url)
    try:
        member.start()
        line = refused(standalone)
        assert "in use by another broker" in line, line
        assert f"pid {member.proc.pid} " in line or f"/{member.proc.pid}/" in line, line
    finally:
        for b in (member, standalone):
            b.stop()
            b.kill()


def test_unparsable_store_url_is_one_line(tmp_path):
    broker = BrokerProcess(tmp_path / "x", store="sql", store_url="not a url")
    line = refused(broker)
    assert "--store-url 'not a url': not a database URL" in line, line
