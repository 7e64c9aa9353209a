"""End-to-end tests of the browser console in headless Chromium.

Each test drives the UI the way an operator would (real clicks and typing over the DevTools
protocol) and checks every step against the HTTP API with requests. On failure a screenshot of
the page is saved to a temp file and its path printed. Names carry markup on purpose: the UI
must show them as text, never as HTML.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
import urllib.parse

import pytest
import requests

from tests.polling import eventually
from tests.webconsole.browser import Chromium

GUEST = ("guest", "guest")
CONSOLE = "/"


@pytest.fixture(scope="module")
def chromium():
    with Chromium(width=1366, height=768) as browser:
        yield browser


@pytest.fixture
def ui(chromium):
    """The shared browser with its error log emptied; each test logs in afresh."""
    chromium.console_errors.clear()
    return chromium


@contextlib.contextmanager
def screenshot_on_failure(browser: Chromium, name: str):
    try:
        yield
    except BaseException:
        try:
            path = browser.screenshot()
            print(f"\nUI screenshot of the failure ({name}): {path}")
            print(f"page URL: {browser.evaluate('location.href')}")
            print(f"console errors: {browser.console_errors}")
        except Exception as err:  # the browser itself may be the thing that failed
            print(f"\n(no screenshot: {err})")
        raise


def api(broker, method: str, *parts: str, **kwargs) -> requests.Response:
    path = "/".join(urllib.parse.quote(p, safe="") for p in parts)
    headers = kwargs.pop("headers", {})
    if method != "GET":
        headers.setdefault("Content-Type", "application/json")
    return requests.request(method, f"{broker.http_url}/api/{path}", auth=GUEST,
                            headers=headers, timeout=10, **kwargs)


def queue_info(broker, name: str, vhost: str = "/") -> dict:
    r = api(broker, "GET", "queues", vhost, name)
    assert r.status_code == 200, r.text
    return r.json()


def wait_until(condition, timeout: float = 10.0, what: str = "condition"):
    """Poll an API condition (the broker's counters settle within a reactor turn or two)."""
    return eventually(condition, what, timeout=timeout)


def login(browser: Chromium, broker, username="guest", password="guest") -> None:
    browser.goto(f"{broker.http_url}{CONSOLE}")
    browser.evaluate("sessionStorage.clear(); location.hash = '#/'")
    browser.reload()
    browser.wait_for_selector("#login-form")
    browser.fill("#login-username", username)
    browser.fill("#login-password", password)
    browser.click("#login-submit")


def open_page(browser: Chromium, hash_: str, ready_selector: str) -> None:
    """Go to a console page and wait until its data has loaded."""
    browser.evaluate(f"location.hash = {json.dumps(hash_)}")
    browser.wait_for_selector(ready_selector)
    loaded(browser)


def loaded(browser: Chromium) -> None:
    browser.wait_for("document.getElementById('refresh-status').textContent.startsWith('Updated')",
                     what="page data loaded")


def click(browser: Chromium, selector: str) -> None:
    """Click, after dismissing earlier notices so a later `notice()` sees only new ones."""
    browser.evaluate("document.querySelectorAll('.notice').forEach(n => n.remove())")
    browser.click(selector)


def notice(browser: Chromium, text: str) -> None:
    browser.wait_for(f"[...document.querySelectorAll('.notice')].some("
                     f"n => n.textContent.includes({json.dumps(text)}))", what=f"notice {text!r}")


def row(key: str) -> str:
    """CSS selector of the list row the console keys `key` (vhost/name, or a name)."""
    return f"#main tr[data-key={json.dumps(key)}]"


def confirm(browser: Chromium) -> None:
    browser.wait_for_selector("#confirm-yes")
    click(browser, "#confirm-yes")


def assert_clean(browser: Chromium) -> None:
    assert browser.console_errors == [], browser.console_errors


# ---------------------------------------------------------------------------- tests
def test_wrong_password_is_refused_and_right_one_logs_in(ui, broker):
    with screenshot_on_failure(ui, "login"):
        login(ui, broker, password="not-the-password")
        ui.wait_for("!document.getElementById('login-error').hidden", what="login error")
        assert "Login failed" in ui.text("#login-error")
        assert ui.evaluate("sessionStorage.getItem('warren.credentials')") is None
        ui.fill("#login-password", "guest")
        click(ui, "#login-submit")
        ui.wait_for_selector("#page-overview")
        loaded(ui)
        assert "guest" in ui.text("#user-name")
        ui.wait_for("document.querySelector('#total-queues .stat-value')", what="totals")
        # a reload keeps the session (sessionStorage), logging out forgets it
        ui.evaluate("location.hash = '#/queues'")
        ui.reload()
        ui.wait_for_selector("#page-queues")
        loaded(ui)
        click(ui, "#logout")
        ui.wait_for_selector("#login-form")
        assert ui.evaluate("sessionStorage.getItem('warren.credentials')") is None
        assert_clean(ui)


def test_queue_create_publish_browse_purge_delete(ui, broker, unique):
    name = f"{unique}<i>q</i>&\"'"
    body = 'hello <b>world</b> "quoted" ünïcode'
    with screenshot_on_failure(ui, "queue"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        loaded(ui)

        # create the queue from the Queues tab
        click(ui, "#tabs a[data-tab=queues]")
        ui.wait_for_selector("#page-queues")
        loaded(ui)
        ui.open_section("#add-queue-section")
        ui.fill("#add-queue-name", name)
        ui.choose("#add-queue-form select[name=durable]", "true")
        click(ui, "#add-queue-submit")
        notice(ui, "added")
        info = queue_info(broker, name)
        assert info["durable"] is True
        # open its page by clicking its link in the list (the markup in its name shown as text)
        listed = row(f"//{name}")  # vhost "/", a slash, the name
        ui.wait_for_selector(f"{listed} a")
        assert ui.text(f"{listed} a") == name
        click(ui, f"{listed} a")
        ui.wait_for_selector("#page-queue")
        loaded(ui)
        assert ui.text("#queue-name") == name
        # the markup in the name stayed text
        assert ui.evaluate("document.querySelectorAll('#main i').length") == 0

        # publish a message with a header
        ui.open_section("#publish-section")
        assert ui.evaluate("document.getElementById('publish-routing-key').value") == name
        ui.fill("#publish-form .args-editor .arg-key", "x-trace")
        ui.fill("#publish-form .args-editor .arg-value", "<script>alert(1)</script>")
        ui.fill("#publish-payload", body)
        click(ui, "#publish-submit")
        notice(ui, "Message published.")
        wait_until(lambda: queue_info(broker, name).get("messages") == 1, what="1 message queued")

        # browse it: nack/requeue leaves it in the queue
        ui.open_section("#get-section")
        click(ui, "#get-submit")
        ui.wait_for_selector("#get-results .message pre.payload")
        assert ui.text("#get-results pre.payload") == body
        headers = ui.text("#get-results .message-headers")
        assert "x-trace" in headers and "<script>alert(1)</script>" in headers
        assert ui.evaluate("document.querySelectorAll('#main script').length") == 0
        assert "delivery_mode" in ui.text("#get-results .message-properties")
        click(ui, "#get-results .payload-toggle")
        ui.wait_for("document.querySelector('#get-results pre.payload').dataset.shown === 'base64'",
                    what="base64 view")
        assert ui.text("#get-results pre.payload") == base64.b64encode(body.encode()).decode()
        click(ui, "#get-results .payload-toggle")
        ui.wait_for("document.querySelector('#get-results pre.payload').dataset.shown === 'text'",
                    what="text view")
        wait_until(lambda: queue_info(broker, name).get("messages_ready") == 1,
                   what="browsed message back in the queue")

        # purge, confirming in the dialog
        ui.open_section("#purge-section")
        click(ui, "#purge-queue")
        confirm(ui)
        notice(ui, "Done.")
        wait_until(lambda: queue_info(broker, name).get("messages") == 0, what="queue purged")
        ui.wait_for("document.getElementById('queue-total').textContent === '0'", what="total 0")

        # an empty queue browses as empty
        click(ui, "#get-submit")
        ui.wait_for_selector("#get-empty")

        # delete it
        ui.open_section("#delete-section")
        click(ui, "#delete-queue")
        confirm(ui)
        ui.wait_for_selector("#page-queues")
        loaded(ui)
        assert api(broker, "GET", "queues", "/", name).status_code == 404
        assert_clean(ui)


def test_move_messages_to_another_queue(ui, broker, unique):
    source, target = f"{unique}.src", f"{unique}.dst"
    for q in (source, target):
        assert api(broker, "PUT", "queues", "/", q, json={"durable": False}).status_code in (201, 204)
    for i in range(3):
        r = api(broker, "POST", "exchanges", "/", "amq.default", "publish",
                json={"properties": {}, "routing_key": source, "payload": f"m{i}",
                      "payload_encoding": "string"})
        assert r.status_code == 200 and r.json()["routed"] is True
    with screenshot_on_failure(ui, "move"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        loaded(ui)
        open_page(ui, f"#/queues/%2F/{urllib.parse.quote(source, safe='')}", "#page-queue")
        ui.wait_for("document.getElementById('queue-total')?.textContent === '3'", what="3 messages")
        ui.open_section("#move-section")
        ui.fill("#move-destination", target)
        ui.fill("#move-count", "2")
        click(ui, "#move-submit")
        notice(ui, "to " + target)
        wait_until(lambda: queue_info(broker, target).get("messages") == 2, what="2 moved")
        assert queue_info(broker, source)["messages"] == 1
        assert_clean(ui)


def test_queue_page_shows_delivery_limit_back_off_and_held_messages(ui, broker, unique):
    name = f"{unique}.poison"
    assert api(broker, "PUT", "queues", "/", name, json={"durable": False, "arguments": {
        "x-delivery-limit": 3, "x-redelivery-initial-delay": 600000,
        "x-redelivery-multiplier": 2}}).status_code in (201, 204)
    r = api(broker, "POST", "exchanges", "/", "amq.default", "publish",
            json={"properties": {}, "routing_key": name, "payload": "p",
                  "payload_encoding": "string"})
    assert r.json()["routed"] is True
    # browsing with requeue is a return, as in RabbitMQ: the message is held for 10 minutes
    r = api(broker, "POST", "queues", "/", name, "get",
            json={"count": 1, "ackmode": "reject_requeue_true", "encoding": "auto"})
    assert r.status_code == 200 and len(r.json()) == 1
    assert queue_info(broker, name)["messages_redelivery_held"] == 1
    with screenshot_on_failure(ui, "poison"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        loaded(ui)
        open_page(ui, f"#/queues/%2F/{urllib.parse.quote(name, safe='')}", "#page-queue")
        ui.wait_for("document.getElementById('queue-redelivery-held')?.textContent === '1'",
                    what="1 held message")
        assert ui.text("#queue-delivery-limit") == "3"
        assert ui.text("#queue-back-off") == "600 s, x2"
        assert_clean(ui)
    api(broker, "DELETE", "queues", "/", name)


def test_queue_page_shows_a_streams_offsets_size_and_segments(ui, broker, unique):
    name = f"{unique}.stream"
    assert api(broker, "PUT", "queues", "/", name, json={"durable": True, "arguments": {
        "x-queue-type": "stream"}}).status_code in (201, 204)
    for i in range(3):
        r = api(broker, "POST", "exchanges", "/", "amq.default", "publish",
                json={"properties": {}, "routing_key": name, "payload": f"s{i}",
                      "payload_encoding": "string"})
        assert r.json()["routed"] is True
    with screenshot_on_failure(ui, "stream"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        loaded(ui)
        open_page(ui, f"#/queues/%2F/{urllib.parse.quote(name, safe='')}", "#page-queue")
        ui.wait_for("document.getElementById('stream-last-offset')?.textContent === '2'",
                    what="last offset 2")
        assert ui.text("#stream-first-offset") == "0"
        assert ui.text("#stream-segments") == "1"
        assert ui.text("#stream-size").endswith(" bytes")
        assert_clean(ui)
    api(broker, "DELETE", "queues", "/", name)


def test_queue_page_shows_messages_in_memory_and_paged_out(ui, broker, unique):
    name = f"{unique}.ram"
    assert api(broker, "PUT", "queues", "/", name, json={"durable": False}).status_code in (201, 204)
    r = api(broker, "POST", "exchanges", "/", "amq.default", "publish",
            json={"properties": {}, "routing_key": name, "payload": "hello",
                  "payload_encoding": "string"})
    assert r.json()["routed"] is True
    with screenshot_on_failure(ui, "paging"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        loaded(ui)
        open_page(ui, f"#/queues/%2F/{urllib.parse.quote(name, safe='')}", "#page-queue")
        ui.wait_for("document.getElementById('queue-ram')?.textContent === '1 (5 B)'",
                    what="1 message of 5 bytes in memory")
        assert ui.text("#queue-paged-out") == "0 (0 B)"
        assert_clean(ui)
    api(broker, "DELETE", "queues", "/", name)


def test_exchange_add_publish_and_delete(ui, broker, unique):
    exchange, queue = f"{unique}.x", f"{unique}.q"
    assert api(broker, "PUT", "queues", "/", queue, json={"durable": False}).status_code in (201, 204)
    with screenshot_on_failure(ui, "exchange"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        loaded(ui)
        click(ui, "#tabs a[data-tab=exchanges]")
        ui.wait_for_selector("#page-exchanges")
        loaded(ui)
        ui.open_section("#page-exchanges details.section")
        ui.fill("#add-exchange-name", exchange)
        ui.choose("#add-exchange-form select[name=type]", "topic")
        click(ui, "#add-exchange-form button[type=submit]")
        notice(ui, "added")
        r = api(broker, "GET", "exchanges", "/", exchange)
        assert r.status_code == 200 and r.json()["type"] == "topic"

        open_page(ui, f"#/exchanges/%2F/{urllib.parse.quote(exchange, safe='')}", "#page-exchange")
        ui.wait_for_selector("#binding-form")
        ui.fill("#binding-other", queue)
        ui.fill("#binding-key", "a.*")
        click(ui, "#binding-form button[type=submit]")
        notice(ui, "Binding added.")
        ui.wait_for(f"document.getElementById('bindings-list').textContent.includes({json.dumps(queue)})",
                    what="binding listed")

        ui.open_section("#publish-section")
        ui.fill("#publish-routing-key", "a.b")
        ui.fill("#publish-payload", "via the exchange")
        click(ui, "#publish-submit")
        notice(ui, "Message published.")
        wait_until(lambda: queue_info(broker, queue).get("messages") == 1, what="routed message")
        got = api(broker, "POST", "queues", "/", queue, "get",
                  json={"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}).json()
        assert got[0]["payload"] == "via the exchange" and got[0]["routing_key"] == "a.b"

        click(ui, "#page-exchange details.section:last-of-type > summary")
        click(ui, "#delete-exchange")
        confirm(ui)
        ui.wait_for_selector("#page-exchanges")
        loaded(ui)
        assert api(broker, "GET", "exchanges", "/", exchange).status_code == 404
        assert_clean(ui)


def test_admin_vhost_user_permission_policy(ui, broker, unique):
    vhost, user, policy = f"{unique}.vh", f"{unique}.user", f"{unique}.pol"
    with screenshot_on_failure(ui, "admin"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        loaded(ui)
        click(ui, "#tabs a[data-tab=admin]")
        ui.wait_for_selector("#page-users")
        loaded(ui)

        click(ui, ".subtabs a[href='#/vhosts']")
        ui.wait_for_selector("#page-vhosts")
        loaded(ui)
        ui.open_section("#page-vhosts details.section")
        ui.fill("#add-vhost-name", vhost)
        click(ui, "#add-vhost-form button[type=submit]")
        notice(ui, "added")
        assert api(broker, "GET", "vhosts", vhost).status_code == 200

        click(ui, ".subtabs a[href='#/users']")
        ui.wait_for_selector("#page-users")
        loaded(ui)
        ui.open_section("#page-users details.section")
        ui.fill("#add-user-name", user)
        ui.fill("#add-user-password", "s3cret")
        ui.fill("#add-user-tags", "management")
        click(ui, "#add-user-form button[type=submit]")
        notice(ui, "saved")
        r = api(broker, "GET", "users", user)
        assert r.status_code == 200
        tags = r.json()["tags"]
        assert "management" in (tags if isinstance(tags, list) else tags.split(","))

        click(ui, ".subtabs a[href='#/permissions']")
        ui.wait_for_selector("#page-permissions")
        loaded(ui)
        ui.open_section("#page-permissions details.section")
        ui.wait_for(f"[...document.querySelectorAll('#add-permission-form select[name=user] option')]"
                    f".some(o => o.value === {json.dumps(user)})", what="user option")
        ui.choose("#add-permission-form select[name=user]", user)
        ui.choose("#add-permission-form select[name=vhost]", vhost)
        ui.fill("#add-permission-form input[name=write]", "^amq")
        click(ui, "#add-permission-form button[type=submit]")
        notice(ui, "set")
        r = api(broker, "GET", "permissions", vhost, user)
        assert r.status_code == 200 and r.json()["write"] == "^amq" and r.json()["read"] == ".*"

        click(ui, ".subtabs a[href='#/policies']")
        ui.wait_for_selector("#page-policies")
        loaded(ui)
        ui.open_section("#page-policies details.section")
        ui.choose("#add-policy-form select[name=vhost]", vhost)
        ui.fill("#add-policy-name", policy)
        ui.fill("#add-policy-pattern", "^ttl\\.")
        ui.fill("#add-policy-form .arg-key", "message-ttl")
        ui.fill("#add-policy-form .arg-value", "60000")
        ui.choose("#add-policy-form .args-row select", "Number")
        click(ui, "#add-policy-form button[type=submit]")
        notice(ui, "saved")
        r = api(broker, "GET", "policies", vhost, policy)
        assert r.status_code == 200, r.text
        assert r.json()["definition"] == {"message-ttl": 60000} and r.json()["pattern"] == "^ttl\\."

        # delete them again through the UI (policy, then the vhost and the user)
        for key, page, check in (
                (f"{vhost}/{policy}", "#/policies", ("policies", vhost, policy)),
                (vhost, "#/vhosts", ("vhosts", vhost)),
                (user, "#/users", ("users", user))):
            open_page(ui, page, f"#page-{page[2:]}")
            click(ui, f"{row(key)} button.danger")
            confirm(ui)
            notice(ui, "Done.")
            wait_until(lambda: api(broker, "GET", *check).status_code == 404, what=f"{check} gone")
        assert_clean(ui)


def test_admin_topic_permission_set_shown_cleared(ui, broker, unique):
    user = f"{unique}.user"
    assert api(broker, "PUT", "users", user, json={"password": "pw", "tags": ""}).status_code == 201
    try:
        with screenshot_on_failure(ui, "topic permissions"):
            login(ui, broker)
            ui.wait_for_selector("#page-overview")
            loaded(ui)
            open_page(ui, "#/permissions", "#page-permissions")
            ui.open_section("#topic-permissions")
            form = "#add-topic-permission-form"
            ui.wait_for(f"[...document.querySelectorAll('{form} select[name=user] option')]"
                        f".some(o => o.value === {json.dumps(user)})", what="user option")
            ui.choose(f"{form} select[name=user]", user)
            ui.choose(f"{form} select[name=vhost]", "/")
            ui.fill(f"{form} input[name=write]", "^sensors\\.")
            ui.fill(f"{form} input[name=read]", "<b>^r</b>")
            click(ui, f"{form} button[type=submit]")
            notice(ui, "set")
            r = api(broker, "GET", "topic-permissions", "/", user)
            assert r.status_code == 200, r.text
            assert r.json() == [{"user": user, "vhost": "/", "exchange": "amq.topic",
                                 "write": "^sensors\\.", "read": "<b>^r</b>"}]
            key = f"//{user}/amq.topic"
            ui.wait_for_selector(row(key))
            text = ui.evaluate(f"document.querySelector({json.dumps(row(key))}).textContent")
            assert "^sensors\\." in text and "<b>^r</b>" in text    # shown as text
            click(ui, f"{row(key)} button.danger")
            confirm(ui)
            notice(ui, "Done.")
            wait_until(lambda: api(broker, "GET", "topic-permissions", "/", user).status_code
                       == 404, what="topic permission gone")
            assert_clean(ui)
    finally:
        api(broker, "DELETE", "users", user)


def test_admin_limits_set_listed_and_cleared(ui, broker, unique):
    vhost = f"{unique}.lim"
    assert api(broker, "PUT", "vhosts", vhost, json={}).status_code == 201
    try:
        with screenshot_on_failure(ui, "limits"):
            login(ui, broker)
            ui.wait_for_selector("#page-overview")
            loaded(ui)
            open_page(ui, "#/limits", "#page-limits")
            ui.open_section("#page-limits details.section")
            ui.wait_for(f"[...document.querySelectorAll('#set-vhost-limit-form select[name=vhost] "
                        f"option')].some(o => o.value === {json.dumps(vhost)})", what="vhost")
            ui.choose("#set-vhost-limit-form select[name=vhost]", vhost)
            ui.choose("#set-vhost-limit-form select[name=name]", "max-queues")
            ui.fill("#set-vhost-limit-value", "7")
            click(ui, "#set-vhost-limit-form button[type=submit]")
            notice(ui, "set")
            r = api(broker, "GET", "vhost-limits", vhost)
            assert r.json() == [{"vhost": vhost, "value": {"max-queues": 7}}]
            ui.wait_for_selector(row(f"{vhost}/max-queues"))
            click(ui, f"{row(vhost + '/max-queues')} button.danger")
            confirm(ui)
            notice(ui, "Done.")
            wait_until(lambda: api(broker, "GET", "vhost-limits", vhost).json() == [],
                       what="limit cleared")
            assert_clean(ui)
    finally:
        api(broker, "DELETE", "vhosts", vhost)


def test_shovel_add_see_running_restart_delete(ui, broker, unique):
    src, dst = f"{unique}.src", f"{unique}.dst"
    with screenshot_on_failure(ui, "shovels"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        loaded(ui)
        open_page(ui, "#/bridges", "#page-bridges")
        loaded(ui)
        ui.open_section("#add-shovel")
        ui.fill("#add-shovel-name", unique)
        ui.fill("#add-shovel-src-name", src)
        ui.fill("#add-shovel-dest-name", dst)
        click(ui, "#add-shovel-form button[type=submit]")
        notice(ui, "added")
        r = api(broker, "GET", "parameters", "shovel", "/", unique)
        assert r.status_code == 200 and r.json()["value"]["src-queue"] == src
        key = f"//{unique}"
        ui.wait_for(f"document.querySelector({json.dumps(row(key))}) && document.querySelector("
                    f"{json.dumps(row(key))}).textContent.includes('running')", what="running row")
        text = ui.evaluate(f"document.querySelector({json.dumps(row(key))}).textContent")
        assert f"queue {src}" in text and f"queue {dst}" in text and "amqp://" in text
        click(ui, f"{row(key)} button:not(.danger)")
        notice(ui, "restarted")
        click(ui, f"{row(key)} button.danger")
        confirm(ui)
        ui.wait_for(f"!document.querySelector({json.dumps(row(key))})", what="row gone")
        assert api(broker, "GET", "parameters", "shovel", "/", unique).status_code == 404
        assert_clean(ui)


def test_federation_links_listed_with_their_state(ui, broker, unique):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]      # nothing listens there once closed
    r = api(broker, "PUT", "parameters", "federation-upstream", "/", unique,
            json={"value": {"uri": f"amqp://127.0.0.1:{port}", "reconnect-delay": 1}})
    assert r.status_code in (201, 204), r.text
    assert api(broker, "PUT", "exchanges", "/", unique,
               json={"type": "topic", "durable": True}).status_code in (201, 204)
    assert api(broker, "PUT", "policies", "/", unique,
               json={"pattern": f"^{unique}$", "apply-to": "exchanges",
                     "definition": {"federation-upstream": unique}}).status_code in (201, 204)
    try:
        with screenshot_on_failure(ui, "federation"):
            login(ui, broker)
            ui.wait_for_selector("#page-overview")
            open_page(ui, "#/bridges", "#page-bridges")
            link_id, deadline = None, time.monotonic() + 30
            while link_id is None and time.monotonic() < deadline:
                found = [x["id"] for x in api(broker, "GET", "federation-links").json()
                         if x.get("exchange") == unique and x["status"] == "error"]
                link_id = found[0] if found else None
                if link_id is None:
                    time.sleep(0.05)
            assert link_id is not None
            sel = json.dumps(row(link_id))
            ui.wait_for(f"document.querySelector({sel}) && document.querySelector({sel})"
                        ".textContent.includes('connection refused')", what="error row")
            text = ui.evaluate(f"document.querySelector({sel}).textContent")
            assert "exchange" in text and unique in text and "error" in text
            assert_clean(ui)
    finally:
        api(broker, "DELETE", "policies", "/", unique)
        api(broker, "DELETE", "parameters", "federation-upstream", "/", unique)


def test_network_connectors_listed_with_their_state(ui, tmp_path):
    from tests.broker_process import BrokerProcess
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]      # nothing listens there once closed
    cfg = tmp_path / "warren.toml"
    cfg.write_text(f'[[network]]\nname = "to-nowhere"\nuri = "amqp://127.0.0.1:{port}"\n'
                   'include = ["topic://prices.>"]\nreconnect_delay = 0.5\n')
    with BrokerProcess(tmp_path / "data", extra_args=["--config", str(cfg)]) as broker, \
            screenshot_on_failure(ui, "connectors"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        open_page(ui, "#/bridges", "#page-bridges")
        sel = json.dumps(row("to-nowhere"))
        ui.wait_for(f"document.querySelector({sel}) && document.querySelector({sel})"
                    ".textContent.includes('connection refused')", what="error row")
        text = ui.evaluate(f"document.querySelector({sel}).textContent")
        assert "topic://prices.>" in text and "error" in text and str(port) in text
        assert_clean(ui)


def test_every_tab_renders_at_laptop_size(ui, broker):
    with screenshot_on_failure(ui, "tabs"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        loaded(ui)
        ui.wait_for("document.querySelector('#overview-listeners table, #overview-listeners .empty')",
                    what="listeners")
        assert ui.evaluate("document.querySelectorAll('canvas.chart-canvas').length") == 2
        # the node's limits and resource alarms, as RabbitMQ's overview shows them
        ui.wait_for("document.querySelector('#overview-nodes table') &&"
                    " document.querySelector('#overview-nodes').textContent.includes("
                    "'Disk free limit')", what="node limits")
        assert "none" in ui.evaluate(
            "document.querySelector('#overview-nodes tbody').textContent")
        assert ui.evaluate("document.documentElement.scrollWidth") <= 1366
        for hash_, selector in (("#/connections", "#page-connections"), ("#/channels", "#page-channels"),
                                ("#/exchanges", "#page-exchanges"), ("#/queues", "#page-queues"),
                                ("#/users", "#page-users"), ("#/vhosts", "#page-vhosts"),
                                ("#/permissions", "#page-permissions"), ("#/policies", "#page-policies"),
                                ("#/limits", "#page-limits"),
                                ("#/bridges", "#page-bridges")):
            open_page(ui, hash_, selector)
            ui.wait_for("document.getElementById('refresh-status').textContent.startsWith('Updated')",
                        what=f"{hash_} loaded")
            # nothing wider than the laptop screen
            assert ui.evaluate("document.documentElement.scrollWidth") <= 1366, hash_
        ui.wait_for("document.getElementById('bridges-list').textContent.includes('No shovels')",
                    what="shovels empty state")
        assert_clean(ui)


def test_queued_messages_axis_labels_are_distinct_counts(ui, broker):
    """The overview's queued-messages chart labels its y axis with distinct whole numbers:
    with queues empty it read 1, 1, 1, 0, 0 (quarters of 1, rounded)."""
    with screenshot_on_failure(ui, "queued axis"):
        login(ui, broker)
        ui.wait_for_selector("#page-overview")
        loaded(ui)
        ticks = ui.wait_for("document.querySelector('canvas[aria-label=\"Queued messages\"]')"
                            ".dataset.yTicks", what="queued-messages chart drawn")
        labels = ticks.split(" | ")
        assert len(labels) >= 2 and len(set(labels)) == len(labels), labels
        assert all(label.replace(",", "").isdigit() for label in labels), labels
        assert labels[0] == "0"
        # the axis for other depths, from the module the page uses
        got = ui.evaluate("import('./chart.js').then(m => [0, 1, 3, 7, 1234].map("
                          "v => m.yTicks(v, true)))")
        assert got == [[0, 1], [0, 1], [0, 1, 2, 3], [0, 2, 4, 6, 8], [0, 500, 1000, 1500]]
        assert_clean(ui)


def test_network_picture_draws_this_broker_its_peers_and_links(ui, broker, unique):
    local, remote = f"{unique}.local", f"{unique}.remote"
    shovels = {
        local: {"src-uri": "amqp://", "src-queue": f"{unique}.a",
                "dest-uri": "amqp://", "dest-queue": f"{unique}.b"},
        remote: {"src-uri": "amqp://", "src-queue": f"{unique}.c",
                 "dest-uri": "amqp://guest:guest@127.0.0.1:1", "dest-queue": f"{unique}.d",
                 "reconnect-delay": 0.2},
    }
    try:
        for name, value in shovels.items():
            r = api(broker, "PUT", "parameters", "shovel", "/", name, json={"value": value})
            assert r.status_code in (201, 204), r.text

        def state(name):
            r = api(broker, "GET", "shovels", "/", name)
            return r.json()["state"] if r.status_code == 200 else None

        wait_until(lambda: state(local) == "running", what="local shovel running")
        wait_until(lambda: state(remote) not in (None, "starting", "running"),
                   what="remote shovel failing")
        node = api(broker, "GET", "overview").json()["node"]
        with screenshot_on_failure(ui, "network picture"):
            login(ui, broker)
            ui.wait_for_selector("#page-overview")
            open_page(ui, "#/bridges", "#page-bridges")
            pic = "#network-picture"
            ui.wait_for_selector(f"{pic} g.net-node[data-node='127.0.0.1:1']")
            # this broker in the middle, named by its node name; the peer by host:port only
            assert ui.evaluate(f"document.querySelector('{pic} g.net-self').dataset.name") == node
            assert node.endswith(ui.evaluate(
                f"document.querySelector('{pic} g.net-self text').textContent").split("…")[-1])
            peers = ui.evaluate(f"[...document.querySelectorAll('{pic} g.net-node:not(.net-self)')]"
                                ".map(n => n.dataset.node)")
            assert "127.0.0.1:1" in peers and not any("guest" in p for p in peers), peers

            def arrow(name):
                return json.dumps(f"{pic} g.net-link[data-link='shovel://{name}']")

            # the local shovel loops on this broker, running
            ui.wait_for(f"document.querySelector({arrow(local)})?.classList.contains('link-running')",
                        what="local arrow running")
            assert ui.evaluate(f"[document.querySelector({arrow(local)}).dataset.from, "
                               f"document.querySelector({arrow(local)}).dataset.to]") == ["self", "self"]
            # the other one goes from this broker to 127.0.0.1:1, in its failing state
            expected = state(remote)
            ui.wait_for(f"document.querySelector({arrow(remote)})?.classList.contains("
                        f"{json.dumps('link-' + expected)})", what=f"remote arrow {expected}")
            link = ui.evaluate(f"(() => {{ const g = document.querySelector({arrow(remote)}); "
                               "return {from: g.dataset.from, to: g.dataset.to, "
                               "label: g.querySelector('text').textContent, "
                               "title: g.querySelector('title').textContent, "
                               "head: g.querySelector('path').getAttribute('marker-end')}; })()")
            assert link["from"] == "self" and link["to"] == "127.0.0.1:1", link
            # labelled with its name (cut in the middle when long, whole in the tooltip)
            assert link["label"].endswith(".remote"), link
            assert link["title"].startswith(f"shovel {remote}\n") and "last error: " in link["title"]
            assert link["head"] == f"url(#net-head-{expected})"
            assert ui.evaluate(f"document.querySelectorAll('{pic} g.net-link').length") >= 2
            # it fits the laptop screen, above the tables
            assert ui.evaluate("document.documentElement.scrollWidth") <= 1366
            assert ui.evaluate(f"document.querySelector('{pic}').getBoundingClientRect().bottom <= "
                               "document.getElementById('bridges-list').getBoundingClientRect().top")
            assert_clean(ui)
    finally:
        for name in shovels:
            api(broker, "DELETE", "parameters", "shovel", "/", name)


def test_durable_subscriptions_listed_on_the_queues_page(ui, broker, unique):
    import stomp
    conn = stomp.Connection12([("127.0.0.1", broker.stomp_port)])
    conn.connect("guest", "guest", wait=True, headers={"client-id": unique})
    try:
        conn.subscribe(f"/topic/{unique}", "d", headers={
            "activemq.subscriptionName": "sub<b>", "selector": "a = 1", "receipt": "r"})
        queue = f"stomp-subscription-{unique}-sub<b>"
        eventually(lambda: api(broker, "GET", "queues", "/", queue).status_code == 200,
                   "the subscription's queue")
        with screenshot_on_failure(ui, "durable-subscriptions"):
            login(ui, broker)
            open_page(ui, "#/queues", "#page-queues")
            listed = "#durable-subscriptions-list tr[data-key=%s]" % json.dumps("//" + queue)
            ui.wait_for_selector(listed)
            text = ui.text(listed)
            assert unique in text and "sub<b>" in text and "active" in text
            assert_clean(ui)
    finally:
        conn.disconnect()
