"""Browsers as clients: headless Chromium running @stomp/stompjs and mqtt.js (from npm,
installed by the test into a temp dir and served by it) against Web-STOMP and Web-MQTT, over
ws:// and wss://, exchanging messages with pika both ways.

Chromium is started with --ignore-certificate-errors for wss://: the browser cannot be told
of the test CA without a system trust store change; the Python clients of test_wss.py are the
ones that verify the certificate.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
import uuid

import pika
import pytest

from tests.missing_tools import tool_missing
from tests.polling import eventually
from tests.tls.pki import make_pki
from tests.webconsole.browser import Chromium
from tests.websocket.clients import tls_websocket_broker

LIBRARIES = {"stomp.umd.min.js": "node_modules/@stomp/stompjs/bundles/stomp.umd.min.js",
             "mqtt.min.js": "node_modules/mqtt/dist/mqtt.min.js"}
PAGE = """<!doctype html><meta charset="utf-8"><title>warren websocket clients</title>
<script src="stomp.umd.min.js"></script><script src="mqtt.min.js"></script>
<p id="ready">ready</p>"""


@pytest.fixture(scope="module")
def page_dir(tmp_path_factory):
    """A folder holding the test page and the two libraries as npm installed them."""
    npm = shutil.which("npm")
    if npm is None:
        tool_missing("npm", "install Debian's npm package (apt-get install npm)")
    d = tmp_path_factory.mktemp("browser-page")
    result = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
                             "--prefix", str(d), "@stomp/stompjs@7", "mqtt@5"],
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        tool_missing("@stomp/stompjs and mqtt from npm",
                     "npm install must reach the npm registry: " + result.stderr[-500:])
    for name, path in LIBRARIES.items():
        shutil.copy(d / path, d / name)
    (d / "index.html").write_text(PAGE)
    return d


@pytest.fixture(scope="module")
def page_url(page_dir):
    handler = functools.partial(_QuietHandler, directory=str(page_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    with tls_websocket_broker(tmp_path_factory.mktemp("browser"), pki) as proc:
        yield proc


@pytest.fixture(scope="module")
def browser(page_url):
    with Chromium(extra_args=("--ignore-certificate-errors",)) as chromium:
        chromium.send("Security.setIgnoreCertificateErrors", ignore=True)
        chromium.goto(page_url)
        chromium.wait_for_selector("#ready")
        yield chromium


def _url(broker, secure: bool, kind: str) -> str:
    if secure:
        port = broker.web_stomp_tls_port if kind == "stomp" else broker.web_mqtt_tls_port
        return f"wss://127.0.0.1:{port}/ws"
    port = broker.web_stomp_port if kind == "stomp" else broker.web_mqtt_port
    return f"ws://127.0.0.1:{port}/ws"


def _get(ch, queue: str) -> bytes:
    def one():
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        return body if method is not None else None
    return eventually(one, f"a message on {queue}")


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_stompjs_and_pika_both_ways(browser, tls_broker, secure):
    name = f"browser-{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(tls_broker.amqp_url))
    ch = conn.channel()
    ch.queue_declare(f"{name}.out")
    script = """(async () => {
      const got = []; window[__NAME__] = got;
      const client = new StompJs.Client({brokerURL: __URL__, reconnectDelay: 0, debug: () => {},
        connectHeaders: {login: 'guest', passcode: 'guest'}});
      await new Promise((resolve, reject) => {
        client.onConnect = resolve;
        client.onStompError = (f) => reject(new Error(f.headers.message));
        client.onWebSocketError = () => reject(new Error('websocket error'));
        client.activate();
      });
      const receipt = 'sub-' + __NAME__;
      const subscribed = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
      client.subscribe('/queue/' + __NAME__ + '.in', (m) => got.push(m.body), {receipt});
      await subscribed;
      client.publish({destination: '/queue/' + __NAME__ + '.out', body: 'from stompjs'});
      return client.webSocket.protocol;
    })()""".replace("__NAME__", json.dumps(name)).replace("__URL__", json.dumps(
        _url(tls_broker, secure, "stomp")))
    assert browser.evaluate(script) == "v12.stomp"
    assert _get(ch, f"{name}.out") == b"from stompjs"
    ch.basic_publish("", f"{name}.in", b"from pika")
    got = browser.wait_for(f"window[{json.dumps(name)}].length && window[{json.dumps(name)}]",
                           what="the message from pika")
    assert got == ["from pika"]
    conn.close()
    assert not browser.console_errors
    assert "Traceback" not in tls_broker.log()


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize("version", [4, 5], ids=["3.1.1", "5"])
def test_mqttjs_and_pika_both_ways(browser, tls_broker, secure, version):
    name = f"browser-{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(tls_broker.amqp_url))
    ch = conn.channel()
    ch.queue_declare(f"{name}.out")
    ch.queue_bind(f"{name}.out", "amq.topic", f"{name}.out")
    script = """(async () => {
      const got = []; window[__NAME__] = got;
      const client = mqtt.connect(__URL__, {username: 'guest', password: 'guest',
        protocolVersion: __VERSION__, reconnectPeriod: 0});
      await new Promise((resolve, reject) => {
        client.on('connect', resolve); client.on('error', reject); });
      client.on('message', (topic, payload) => got.push(topic + ' ' + payload.toString()));
      await client.subscribeAsync(__NAME__ + '/in', {qos: 1});
      await client.publishAsync(__NAME__ + '/out', 'from mqtt.js', {qos: 1});
      return 'ok';
    })()""".replace("__NAME__", json.dumps(name)).replace("__URL__", json.dumps(
        _url(tls_broker, secure, "mqtt"))).replace("__VERSION__", str(version))
    assert browser.evaluate(script) == "ok"
    assert _get(ch, f"{name}.out") == b"from mqtt.js"
    ch.basic_publish("amq.topic", f"{name}.in", b"from pika")
    got = browser.wait_for(f"window[{json.dumps(name)}].length && window[{json.dumps(name)}]",
                           what="the message from pika")
    assert got == [f"{name}/in from pika"]
    conn.close()
    assert not browser.console_errors
    assert "Traceback" not in tls_broker.log()
