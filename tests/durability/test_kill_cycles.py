"""SIGKILL in the middle of a confirmed publish stream: zero loss of confirmed messages.

Per store, a few cycles: a publisher keeps a window of persistent publishes in flight with
confirms; once it has seen a (seeded) random number of confirms a second thread SIGKILLs the
broker while publishes are still on the wire. After the restart every queue of every cycle so
far is read back: each confirmed body must be there, nothing may appear twice (nothing was ever
consumed, so there is nothing acked that could legitimately come back), and nothing may appear
that was never published. Older cycles' queues are re-checked after every later kill, so
recovery of recovered data is covered too.
"""

from __future__ import annotations

import random
import threading

import pika

from tests.durability.clients import ConfirmedPublisher, read_queue

CYCLES = 3


def declare(url: str, queue: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    conn.channel().queue_declare(queue, durable=True)
    conn.close()


def test_confirmed_messages_survive_sigkill_cycles(make_broker, store):
    rng = random.Random(f"kill-cycles-{store}")
    broker = make_broker().start()
    confirmed: dict[str, set[bytes]] = {}
    published: dict[str, set[bytes]] = {}
    for cycle in range(CYCLES):
        queue = f"kill.{cycle}"
        declare(broker.amqp_url, queue)
        threshold = rng.randint(100, 1500)
        kill_now = threading.Event()

        def killer() -> None:
            kill_now.wait(60)
            broker.kill()

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        publisher = ConfirmedPublisher(
            broker.amqp_url, queue, (f"{cycle}:{i}".encode() for i in range(10 ** 6)),
            window=rng.choice([50, 300, 1000]))
        publisher.on_confirm = lambda p: len(p.acked) >= threshold and kill_now.set()
        publisher.run(timeout=60)
        kill_now.set()
        thread.join(30)
        assert len(publisher.acked) >= threshold, publisher.error
        assert publisher.error and "timed out" not in publisher.error
        assert not publisher.nacked
        confirmed[queue] = set(publisher.acked)
        published[queue] = publisher.published

        broker.start()
        for name in confirmed:
            bodies = [body for body, _ in read_queue(broker.amqp_url, name)]
            found = set(bodies)
            missing = confirmed[name] - found
            assert not missing, f"{name}: {len(missing)} confirmed messages lost, e.g. " \
                                f"{sorted(missing)[:5]}"
            assert len(bodies) == len(found), f"{name}: duplicates after recovery"
            assert found <= published[name], f"{name}: messages nobody published"
