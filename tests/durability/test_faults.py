"""Faults: a full disk, a corrupt journal segment, the database going away.

In each, publishers must learn of the trouble (nacks and/or ``connection.blocked`` with the
store alarm), nothing confirmed may be lost, and the broker must carry on by itself once the
medium is back. The full disk is a 2 MiB tmpfs when this machine lets us mount one (root in a
sandbox that allows it), else a per-process file-size limit (``RLIMIT_FSIZE``; CPython ignores
SIGXFSZ, so writes past it fail with EFBIG, which the journal treats like ENOSPC), lifted from
outside with ``prlimit`` when "space returns".
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
from pathlib import Path

import pika
import pytest

from tests.broker_process import BrokerProcess
from tests.durability.clients import ConfirmedPublisher, read_queue
from tests.durability.test_kill_cycles import declare
from tests.store.conftest import start_test_cluster


def body(i: int, size: int) -> bytes:
    return f"{i:08d}".encode().ljust(size, b".")


class SmallDisk:
    """A data directory that runs out of space at about ``size`` bytes until :meth:`grow`."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        path.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                  str(path)], capture_output=True)
        self.tmpfs = mounted.returncode == 0
        self.broker: BrokerProcess | None = None

    def broker_args(self) -> list[str]:
        """Prefix for the broker command: the file-size limit when there is no tmpfs."""
        return [] if self.tmpfs else ["prlimit", f"--fsize={self.size}:unlimited", "--"]

    def grow(self) -> None:
        if self.tmpfs:
            subprocess.run(["mount", "-o", "remount,size=256m", str(self.path)], check=True)
        else:
            # only the soft limit was lowered: raising it back needs no privilege
            unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(self.broker.proc.pid, resource.RLIMIT_FSIZE, unlimited)

    def remove(self) -> None:
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.path)], check=False)


class LimitedBroker(BrokerProcess):
    """A broker whose command runs under a prefix (``prlimit ... --``)."""

    def __init__(self, *args, prefix: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.prefix = prefix

    def command(self) -> list[str]:
        return self.prefix + super().command()


def run_in_thread(publisher: ConfirmedPublisher) -> threading.Thread:
    thread = threading.Thread(target=publisher.run, kwargs={"timeout": 90}, daemon=True)
    thread.start()
    return thread


def check_confirmed(url: str, queue: str, publisher: ConfirmedPublisher) -> list[bytes]:
    bodies = [b for b, _ in read_queue(url, queue)]
    found = set(bodies)
    missing = set(publisher.acked) - found
    assert not missing, f"{len(missing)} confirmed messages lost"
    assert found <= publisher.published, "messages nobody published"
    assert len(bodies) == len(found), "duplicates"
    return bodies


def when(predicate, event: threading.Event) -> callable:
    """An on_confirm hook setting ``event`` once ``predicate(publisher)`` holds."""
    return lambda p: predicate(p) and event.set()


def test_disk_full_blocks_and_nacks_then_recovers(tmp_path):
    disk = SmallDisk(tmp_path / "disk", 2 * 1024 * 1024)
    broker = LimitedBroker(disk.path / "data", prefix=disk.broker_args())
    disk.broker = broker
    try:
        broker.start()
        declare(broker.amqp_url, "full")
        total = 600  # 600 x 8 KiB: about 5 MB, more than twice the disk
        publisher = ConfirmedPublisher(broker.amqp_url, "full",
                                       (body(i, 8192) for i in range(total)), window=100)
        thread = run_in_thread(publisher)
        assert publisher.blocked.wait(30), "publisher never blocked:\n" + broker.log()
        assert "store unavailable" in publisher.block_reasons
        acked_when_blocked = len(publisher.acked)
        assert acked_when_blocked < total
        broker.wait_for_line("write failed")
        disk.grow()
        assert publisher.unblocked.wait(30), "never unblocked:\n" + broker.log()
        thread.join(60)
        assert not thread.is_alive()
        assert publisher.error is None, publisher.error
        assert len(publisher.acked) + len(publisher.nacked) == total
        assert len(publisher.acked) > acked_when_blocked  # publishing went on after the block
        broker.wait_for_line("writes succeed again")
        broker.kill()
        broker.start()
        check_confirmed(broker.amqp_url, "full", publisher)
    finally:
        broker.stop()
        broker.kill()
        disk.remove()


def test_corrupt_middle_segment_is_skipped_and_the_rest_served(tmp_path):
    env = {"WARREN_JOURNAL_SEGMENT_SIZE": str(64 * 1024)}
    broker = BrokerProcess(tmp_path / "data", env=env)
    try:
        broker.start()
        declare(broker.amqp_url, "segs")
        count = 400
        publisher = ConfirmedPublisher(broker.amqp_url, "segs",
                                       (body(i, 1000) for i in range(count)), window=50)
        publisher.run(timeout=60)
        assert len(publisher.acked) == count, publisher.error
        broker.stop()

        journal = Path(broker.data_dir) / "journal"
        segments = sorted(p for p in journal.iterdir() if p.suffix == ".log")
        assert len(segments) >= 4, segments
        victim = segments[len(segments) // 2]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))

        broker.start()
        line = broker.wait_for_line(victim.name)
        assert "ERROR" in line and "skipped" in line
        bodies = [b for b, _ in read_queue(broker.amqp_url, "segs")]
        expected = [body(i, 1000) for i in range(count)]
        assert bodies, "nothing served"
        assert set(bodies) <= set(expected), "a body came back altered"
        assert bodies == sorted(bodies), "order lost"
        lost = count - len(bodies)
        # only records of the damaged segment's second half can be gone
        assert 0 < lost < 64 * 1024 // 1000, lost
        # and the broker takes new work
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish("", "segs", b"after", pika.BasicProperties(delivery_mode=2))
        conn.close()
        assert read_queue(broker.amqp_url, "segs")[-1][0] == b"after"
    finally:
        broker.stop()
        broker.kill()


def test_database_gone_blocks_then_reconnects_without_loss(tmp_path):
    cluster = start_test_cluster(tmp_path)
    broker = BrokerProcess(tmp_path / "data", store="sql", store_url=cluster.url)
    try:
        broker.start()
        declare(broker.amqp_url, "pg")
        warmed = threading.Event()
        publisher = ConfirmedPublisher(broker.amqp_url, "pg",
                                       (body(i, 2048) for i in range(10 ** 6)), window=200)
        publisher.on_confirm = when(lambda p: len(p.acked) >= 300, warmed)
        thread = run_in_thread(publisher)
        assert warmed.wait(30), publisher.error
        cluster.stop("immediate")
        assert publisher.blocked.wait(30), "publisher never blocked:\n" + broker.log()
        acked_when_blocked = len(publisher.acked)
        cluster.start()
        assert publisher.unblocked.wait(60), "never unblocked:\n" + broker.log()
        resumed = threading.Event()
        publisher.on_confirm = when(lambda p: len(p.acked) >= acked_when_blocked + 300, resumed)
        assert resumed.wait(30), publisher.error
        publisher.stop()
        thread.join(30)
        broker.kill()
        broker.start()
        check_confirmed(broker.amqp_url, "pg", publisher)
    finally:
        broker.stop()
        broker.kill()
        cluster.destroy()
