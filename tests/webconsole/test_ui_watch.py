"""The console's watch panel (queue and exchange pages) over Web-STOMP, in headless Chromium.

The panel logs in to Web-STOMP with the console's credentials and reads a temporary queue of
its own bound like the watched object: messages published with pika show up in the panel,
the watched queue keeps them, and the temporary queue is gone when watching stops or the page
goes away. The Content-Security-Policy lets the page reach Web-STOMP's port and no other.
"""

from __future__ import annotations

import urllib.parse

import pika
import pytest
import requests

from tests.broker_process import BrokerProcess, free_port
from tests.tls.pki import make_pki
from tests.webconsole.browser import Chromium
from tests.webconsole import test_ui
from tests.webconsole.test_ui import (
    api, assert_clean, click, login, open_page, queue_info, screenshot_on_failure, wait_until,
)

chromium = test_ui.chromium      # the console tests' browser fixtures
ui = test_ui.ui

STATUS = "document.getElementById('watch-status').textContent"


def declare(broker, kind: str, name: str, **body) -> None:
    """PUT an exchange or queue through the API."""
    r = api(broker, "PUT", kind, "/", name, json=body)
    assert r.status_code in (201, 204), r.text


def bind(broker, exchange: str, queue: str, key: str) -> None:
    r = api(broker, "POST", "bindings", "/", "e", exchange, "q", queue, json={"routing_key": key})
    assert r.status_code == 201, r.text


def exchange_page(browser, exchange: str) -> None:
    open_page(browser, f"#/exchanges/%2F/{urllib.parse.quote(exchange, safe='')}", "#page-exchange")


def publish(broker, exchange: str, key: str, body: bytes, **props) -> None:
    with pika.BlockingConnection(pika.URLParameters(broker.amqp_url)) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(exchange, key, body, pika.BasicProperties(**props))


def start_watch(browser) -> str:
    """Open the panel, start it, wait until the broker confirmed the subscriptions; the name
    of the temporary queue."""
    browser.open_section("#watch-section")
    click(browser, "#watch-start")
    browser.wait_for(f"document.getElementById('watch-queue') || !{STATUS}.match(/^(Start|Not)/)",
                     what="watch started")
    status = browser.evaluate(STATUS)
    assert status.startswith("Watching"), status
    return browser.evaluate("document.getElementById('watch-queue').textContent")


def rows_text(browser) -> list[str]:
    return browser.evaluate("[...document.querySelectorAll('#watch-rows tr')]"
                            ".map(r => r.textContent)")


def wait_rows(browser, count: int) -> None:
    browser.wait_for(f"document.querySelectorAll('#watch-rows tr').length >= {count}",
                     what=f"{count} watched messages")


def gone(broker, queue: str) -> bool:
    return api(broker, "GET", "queues", "/", queue).status_code == 404


def test_queue_page_watches_its_bindings_without_consuming(ui, broker, unique):
    exchange, queue = f"{unique}.x", f"{unique}.q"
    declare(broker, "exchanges", exchange, type="direct")
    declare(broker, "queues", queue, durable=False)
    for key in ("k1", "k2"):
        bind(broker, exchange, queue, key)
    with screenshot_on_failure(ui, "watch queue"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        open_page(ui, f"#/queues/%2F/{urllib.parse.quote(queue, safe='')}", "#page-queue")
        temp = start_watch(ui)
        info = queue_info(broker, temp)
        assert (info["exclusive"], info["auto_delete"], info["durable"]) == (True, True, False)
        assert queue_info(broker, queue)["consumers"] == 0

        publish(broker, exchange, "k1", b"first <b>body</b>", content_type="text/plain",
                headers={"origin": "pika"})
        wait_rows(ui, 1)
        publish(broker, exchange, "k2", b"second")
        publish(broker, exchange, "other", b"not routed to the queue")
        publish(broker, exchange, "k1", b"third")
        wait_rows(ui, 3)
        rows = rows_text(ui)
        # newest first; each message once although the temporary queue has two bindings;
        # the unbound key is not shown, as the watched queue does not get it
        assert len(rows) == 3, rows
        assert "third" in rows[0] and "k1" in rows[0]
        assert "second" in rows[1] and "k2" in rows[1]
        assert "first <b>body</b>" in rows[2] and exchange in rows[2]
        assert "content-type" in rows[2] and "text/plain" in rows[2] and "origin" in rows[2]
        assert ui.evaluate("document.querySelector('#watch-rows b')") is None   # text, not HTML
        wait_until(lambda: queue_info(broker, queue).get("messages") == 3,
                   what="watched queue kept all")
        assert queue_info(broker, queue)["consumers"] == 0

        click(ui, "#watch-stop")
        wait_until(lambda: gone(broker, temp), what="temporary queue deleted on stop")
        ui.wait_for(f"{STATUS}.includes('Stopped')", what="stopped status")
        assert queue_info(broker, queue)["messages"] == 3
        assert_clean(ui)
    assert "Traceback" not in broker.log()


def test_exchange_page_watches_everything_routed_and_reload_drops_the_queue(ui, broker, unique):
    exchange, queue = f"{unique}.t", f"{unique}.q"
    declare(broker, "exchanges", exchange, type="topic")
    declare(broker, "queues", queue, durable=False)
    bind(broker, exchange, queue, "a.#")
    with screenshot_on_failure(ui, "watch exchange"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        exchange_page(ui, exchange)
        temp = start_watch(ui)
        publish(broker, exchange, "a.b.c", b"to the queue too")
        publish(broker, exchange, "z.y", b"bound nowhere")
        wait_rows(ui, 2)
        rows = rows_text(ui)
        assert "bound nowhere" in rows[0] and "z.y" in rows[0]
        assert "to the queue too" in rows[1] and "a.b.c" in rows[1]
        wait_until(lambda: queue_info(broker, queue).get("messages") == 1,
                   what="queue kept its message")

        ui.reload()      # the page goes away: its WebSocket closes, the broker drops the queue
        wait_until(lambda: gone(broker, temp), what="temporary queue deleted with the page")
        assert queue_info(broker, queue)["messages"] == 1
    assert "Traceback" not in broker.log()


@pytest.mark.parametrize("kind", ["fanout", "headers"])
def test_fanout_and_headers_exchanges_are_watched_whole(ui, broker, unique, kind):
    exchange = f"{unique}.{kind}"
    declare(broker, "exchanges", exchange, type=kind)
    with screenshot_on_failure(ui, f"watch {kind}"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        exchange_page(ui, exchange)
        temp = start_watch(ui)
        publish(broker, exchange, "any", b"seen", headers={"h": "v"})
        wait_rows(ui, 1)
        assert "seen" in rows_text(ui)[0]
        open_page(ui, "#/queues", "#page-queues")      # leaving the page stops the watch
        wait_until(lambda: gone(broker, temp), what="temporary queue deleted on leaving")
        assert_clean(ui)


def test_direct_exchange_without_bindings_and_default_exchange_say_why(ui, broker, unique):
    exchange = f"{unique}.d"
    declare(broker, "exchanges", exchange, type="direct")
    with screenshot_on_failure(ui, "watch direct"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        exchange_page(ui, exchange)
        ui.open_section("#watch-section")
        click(ui, "#watch-start")
        ui.wait_for(f"{STATUS}.includes('no bindings')", what="no-bindings explanation")
        assert ui.evaluate("document.getElementById('watch-start').disabled") is False
        assert ui.evaluate("document.querySelector('#page-exchange #watch-queue')") is None
        assert_clean(ui)


def test_user_without_configure_permission_is_told_and_nothing_is_left(ui, broker, unique):
    exchange = f"{unique}.x"
    user, password = f"u-{unique[-8:]}", "pw-watch"
    r = api(broker, "PUT", "users", user, json={"password": password, "tags": "management"})
    assert r.status_code in (201, 204), r.text
    assert api(broker, "PUT", "permissions", "/", user,
               json={"configure": "^$", "write": ".*", "read": ".*"}).status_code in (201, 204)
    declare(broker, "exchanges", exchange, type="topic")
    try:
        with screenshot_on_failure(ui, "watch refused"):
            login(ui, broker, user, password)
            ui.wait_for_selector("#page-overview")
            exchange_page(ui, exchange)
            ui.open_section("#watch-section")
            click(ui, "#watch-start")
            ui.wait_for(f"!{STATUS}.startsWith('Starting')", what="an answer from the broker")
            status = ui.evaluate(STATUS)
            assert status.startswith("The broker refused: access_refused"), status
            assert "access to queue 'warren.console.watch-" in status and user in status, status
            names = [q["name"] for q in api(broker, "GET", "queues", "/").json()]
            assert not [n for n in names if n.startswith("warren.console.watch-")], names
    finally:
        api(broker, "DELETE", "users", user)
    assert "Traceback" not in broker.log()


def test_csp_allows_web_stomp_port_on_the_same_host_only(broker):
    csp = requests.get(f"{broker.http_url}/", timeout=10).headers["Content-Security-Policy"]
    host = urllib.parse.urlsplit(broker.http_url).hostname
    assert f"connect-src 'self' ws://{host}:{broker.web_stomp_port};" in csp, csp
    for rest in ("default-src 'self'", "script-src 'self'", "object-src 'none'",
                 "frame-ancestors 'none'"):
        assert rest in csp
    v6 = requests.get(f"{broker.http_url}/", timeout=10, headers={
        "Host": f"[::1]:{broker.http_port}"}).headers["Content-Security-Policy"]
    assert f"connect-src 'self' ws://[::1]:{broker.web_stomp_port};" in v6, v6
    # a Host header that tries to add sources gets none
    evil = requests.get(f"{broker.http_url}/", timeout=10, headers={
        "Host": "a.example; script-src *"}).headers["Content-Security-Policy"]
    assert "connect-src 'self';" in evil and "ws://" not in evil and "script-src *" not in evil


def test_without_web_stomp_the_panel_says_so(ui, tmp_path):
    with BrokerProcess(tmp_path, extra_args=["--web-stomp-port", "0"]) as broker:
        csp = requests.get(f"{broker.http_url}/", timeout=10).headers["Content-Security-Policy"]
        assert "connect-src 'self';" in csp, csp
        exchange = "watched.fanout"
        declare(broker, "exchanges", exchange, type="fanout")
        with screenshot_on_failure(ui, "no web-stomp"):
            login(ui, broker)
            ui.wait_for_selector("#page-overview")
            exchange_page(ui, exchange)
            ui.open_section("#watch-section")
            click(ui, "#watch-start")
            ui.wait_for(f"{STATUS}.includes('Web-STOMP is not enabled')",
                        what="not-enabled explanation")
            assert_clean(ui)


def test_rows_are_capped_newest_first(ui, broker, unique):
    exchange = f"{unique}.f"
    declare(broker, "exchanges", exchange, type="fanout")
    with screenshot_on_failure(ui, "watch cap"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        exchange_page(ui, exchange)
        start_watch(ui)
        with pika.BlockingConnection(pika.URLParameters(broker.amqp_url)) as conn:
            ch = conn.channel()
            ch.confirm_delivery()
            for i in range(105):
                ch.basic_publish(exchange, "", f"message #{i}".encode())
        ui.wait_for("document.querySelector('#watch-rows tr .watch-body')"
                    ".textContent === 'message #104'", what="the last message on top")
        bodies = ui.evaluate("[...document.querySelectorAll('#watch-rows .watch-body')]"
                             ".map(b => b.textContent)")
        assert bodies == [f"message #{i}" for i in range(104, 4, -1)]
        click(ui, "#watch-stop")
        assert_clean(ui)


def test_queue_bindings_that_cannot_be_watched_are_named(ui, broker, unique):
    lonely, queue = f"{unique}.alone", f"{unique}.q"
    declare(broker, "queues", lonely, durable=False)          # only the default binding
    declare(broker, "queues", queue, durable=False)
    bind(broker, "amq.direct", queue, "has/slash")
    bind(broker, "amq.direct", queue, "plain")
    with screenshot_on_failure(ui, "watch unwatchable"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        open_page(ui, f"#/queues/%2F/{urllib.parse.quote(lonely, safe='')}", "#page-queue")
        ui.open_section("#watch-section")
        click(ui, "#watch-start")
        ui.wait_for(f"{STATUS}.includes('no exchange bindings')", what="no-bindings explanation")

        open_page(ui, f"#/queues/%2F/{urllib.parse.quote(queue, safe='')}", "#page-queue")
        temp = start_watch(ui)
        status = ui.evaluate(STATUS)
        assert "/exchange/amq.direct/plain" in status, status
        assert "not watched: amq.direct / has/slash" in status, status
        publish(broker, "amq.direct", "plain", b"seen")
        wait_rows(ui, 1)
        click(ui, "#watch-stop")
        wait_until(lambda: gone(broker, temp), what="temporary queue deleted on stop")
        assert_clean(ui)


def test_console_over_https_watches_over_wss(tmp_path, unique):
    """An https console may not open ws:// (mixed content): the panel takes Web-STOMP's TLS
    listener, and the CSP names it as wss://."""
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    https_port = free_port()
    with BrokerProcess(tmp_path / "broker", extra_args=[
            "--tls-cert", pki["cert"], "--tls-key", pki["key"], "--amqps-port", "0",
            "--stomps-port", "0", "--mqtts-port", "0", "--https-port", str(https_port)]) as broker:
        console = f"https://127.0.0.1:{https_port}"
        csp = requests.get(f"{console}/", timeout=10, verify=pki["ca"]).headers[
            "Content-Security-Policy"]
        assert (f"connect-src 'self' ws://127.0.0.1:{broker.web_stomp_port} "
                f"wss://127.0.0.1:{broker.web_stomp_tls_port};") in csp, csp
        exchange = f"{unique}.t"
        declare(broker, "exchanges", exchange, type="topic")
        with Chromium(extra_args=("--ignore-certificate-errors",)) as browser, \
                screenshot_on_failure(browser, "watch over wss"):
            login(browser, type("Console", (), {"http_url": console})())
            browser.wait_for_selector("#page-overview")
            exchange_page(browser, exchange)
            temp = start_watch(browser)
            publish(broker, exchange, "over.tls", b"through wss")
            wait_rows(browser, 1)
            assert "through wss" in rows_text(browser)[0]
            conns = api(broker, "GET", "connections").json()
            assert [(c["protocol"], c["port"]) for c in conns] == [
                ("Web STOMP 1.2", broker.web_stomp_tls_port)], conns
            click(browser, "#watch-stop")
            wait_until(lambda: gone(broker, temp), what="temporary queue deleted on stop")
            assert_clean(browser)


def test_direct_exchange_is_watched_on_its_bound_keys(ui, broker, unique):
    exchange, q1, q2 = f"{unique}.d", f"{unique}.q1", f"{unique}.q2"
    declare(broker, "exchanges", exchange, type="direct")
    for queue, key in ((q1, "k1"), (q2, "k2"), (q2, "k1")):
        declare(broker, "queues", queue, durable=False)
        bind(broker, exchange, queue, key)
    with screenshot_on_failure(ui, "watch direct keys"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        exchange_page(ui, exchange)
        temp = start_watch(ui)
        publish(broker, exchange, "k1", b"to both queues")
        publish(broker, exchange, "nobody", b"unrouted")
        publish(broker, exchange, "k2", b"to q2")
        wait_rows(ui, 2)
        rows = rows_text(ui)
        assert len(rows) == 2 and "to q2" in rows[0] and "to both queues" in rows[1], rows
        keys = sorted(b["routing_key"] for b in
                      api(broker, "GET", "queues", "/", temp, "bindings").json() if b["source"])
        assert keys == ["k1", "k2"]
        click(ui, "#watch-stop")
        wait_until(lambda: gone(broker, temp), what="temporary queue deleted on stop")
        assert_clean(ui)


def test_console_at_another_host_name_over_plain_http(broker, unique):
    """Reached as http://console.test (not localhost: no secure context) the page's CSP names
    ws://console.test:PORT and the panel still works."""
    exchange = f"{unique}.t"
    declare(broker, "exchanges", exchange, type="topic")
    console = f"http://console.test:{broker.http_port}"
    with Chromium(extra_args=("--host-resolver-rules=MAP console.test 127.0.0.1",)) as browser, \
            screenshot_on_failure(browser, "watch at another host name"):
        login(browser, type("Console", (), {"http_url": console})())
        browser.wait_for_selector("#page-overview")
        assert browser.evaluate("window.isSecureContext") is False
        exchange_page(browser, exchange)
        temp = start_watch(browser)
        publish(broker, exchange, "x", b"by name")
        wait_rows(browser, 1)
        assert "by name" in rows_text(browser)[0]
        click(browser, "#watch-stop")
        wait_until(lambda: gone(broker, temp), what="temporary queue deleted on stop")
        assert_clean(browser)
