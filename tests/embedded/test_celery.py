"""Celery against the embedded broker: a producer sends tasks, a worker in this process (Celery's
own ``start_worker``) executes them, results come back over the ``rpc://`` backend.

Celery's test worker takes about 10 s to leave its event loop however fast the broker is
(RabbitMQ the same: its poll waits for its next timer), hence the generous shutdown timeout.
"""

from __future__ import annotations

import uuid

import amqp.exceptions
import pytest
from celery import Celery, group
from celery.contrib.testing.worker import start_worker

from warren.embedded import Broker

SHUTDOWN = 60


@pytest.fixture(scope="module")
def embedded():
    with Broker() as b:
        yield b


def make_app(url: str) -> Celery:
    app = Celery(f"tasks-{uuid.uuid4().hex[:6]}", broker=url, backend="rpc://")
    app.conf.broker_connection_retry_on_startup = False

    @app.task(name=f"{app.main}.add")
    def add(x, y):
        return x + y

    return app


def add_task(app: Celery):
    return app.tasks[f"{app.main}.add"]


def test_a_task_sent_is_executed_by_the_worker_and_its_result_returns(embedded):
    vhost = f"celery-{uuid.uuid4().hex[:8]}"
    app = make_app(embedded.add_vhost(vhost))
    add = add_task(app)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=SHUTDOWN):
        assert add.delay(2, 3).get(timeout=60) == 5
        results = group(add.s(i, i) for i in range(20))().get(timeout=60)
        assert results == [2 * i for i in range(20)]
    queues = embedded.api().call("GET", f"/api/queues/{vhost}")
    celery_queue = next(q for q in queues if q["name"] == "celery")
    assert celery_queue["durable"] and celery_queue["messages"] == 0   # all taken and acked
    embedded.delete_vhost(vhost)


def test_a_producer_with_a_wrong_password_is_refused_and_nothing_is_queued(embedded):
    vhost = f"celery-{uuid.uuid4().hex[:8]}"
    embedded.add_vhost(vhost)
    wrong = embedded.amqp_url_for(vhost).replace(f":{embedded.password}@", ":wrong@")
    app = make_app(wrong)
    with pytest.raises(amqp.exceptions.AccessRefused) as refused:
        add_task(app).apply_async((1, 2), retry=False)
    assert refused.value.code == 403 and "ACCESS_REFUSED" in str(refused.value)
    assert embedded.api().call("GET", f"/api/queues/{vhost}") == []
    assert "Traceback" not in embedded.log()
    embedded.delete_vhost(vhost)
