"""Headless Chromium driven over the Chrome DevTools Protocol, for the console's UI tests.

Why CDP over a websocket and not Selenium: Debian's chromium speaks CDP itself, so the tests
need only `websocket-client`, not a driver binary whose version must match the browser.

Debian's chromium is installed on first use when `/usr/bin/chromium` is missing (the tests
run as root on a clean CI machine, and the README's test command must work there); with
WARREN_TEST_SKIP_MISSING set the UI tests are skipped instead (`tests/missing_tools.py`).

Waiting is done inside the page: `wait_for(js)` evaluates a promise that settles when the
expression turns truthy (checked on every DOM mutation and animation frame), so the tests
never sleep for a fixed time.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import websocket

from tests.missing_tools import one_installer, skipping_missing, tool_missing

CHROMIUM = "/usr/bin/chromium"
DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://\S+)")


class BrowserError(AssertionError):
    """A page-side failure: a CDP error, a JavaScript exception, a wait that timed out."""


def ensure_chromium() -> str:
    """Path of the chromium binary, installing Debian's package first when it is missing."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    remedy = "install Debian's chromium package (apt-get install chromium)"
    if skipping_missing():
        tool_missing(f"Chromium ({CHROMIUM})", remedy)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        with one_installer():
            if not os.path.exists(CHROMIUM):   # another test worker may have installed it
                subprocess.run(["apt-get", "update", "-q"], check=True, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
                subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    except (OSError, subprocess.CalledProcessError) as error:
        tool_missing(f"Chromium ({CHROMIUM})", f"{remedy}; the tests tried as root and "
                     f"failed: {error}")
    if not os.path.exists(CHROMIUM):
        tool_missing(f"Chromium ({CHROMIUM})", f"{remedy}; installing the package did not "
                     f"provide {CHROMIUM}")
    return CHROMIUM


class Chromium:
    """One headless Chromium process with one page, 1366x768 by default.

    ``console_errors`` collects uncaught exceptions and console.error messages of the page, so a
    test can assert the UI ran cleanly.
    """

    def __init__(self, width: int = 1366, height: int = 768, timeout: float = 20.0,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.extra_args = extra_args          # more chromium flags, as a test needs them
        self.width = width
        self.height = height
        self.timeout = timeout
        self.console_errors: list[str] = []
        self._ids = itertools.count(1)
        self._profile = tempfile.mkdtemp(prefix="warren-chromium-")
        self._proc: subprocess.Popen | None = None
        self._ws: websocket.WebSocket | None = None
        self._events: list[dict] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Chromium":
        binary = ensure_chromium()
        self._proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
             f"--user-data-dir={self._profile}", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
             f"--window-size={self.width},{self.height}", *self.extra_args, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        browser_url = self._read_devtools_url()
        page_url = self._page_target(browser_url)
        # No Origin header: Chromium refuses DevTools websockets from origins it was not told of.
        self._ws = websocket.create_connection(page_url, timeout=self.timeout, suppress_origin=True,
                                               enable_multithread=False)
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return self

    def _read_devtools_url(self) -> str:
        found: list[str] = []
        ready = threading.Event()
        lines: list[str] = []

        def read() -> None:
            assert self._proc is not None and self._proc.stderr is not None
            for line in self._proc.stderr:
                lines.append(line)
                m = DEVTOOLS_LINE.search(line)
                if m and not found:
                    found.append(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(self.timeout) or not found:
            self.close()
            raise RuntimeError("chromium did not report its DevTools URL:\n" + "".join(lines[-20:]))
        return found[0]

    def _page_target(self, browser_url: str) -> str:
        """The websocket URL of the about:blank page chromium opened at start."""
        browser = websocket.create_connection(browser_url, timeout=self.timeout, suppress_origin=True)
        try:
            browser.send(json.dumps({"id": 1, "method": "Target.getTargets"}))
            while True:
                reply = json.loads(browser.recv())
                if reply.get("id") == 1:
                    break
            pages = [t for t in reply["result"]["targetInfos"] if t["type"] == "page"]
            if not pages:
                browser.send(json.dumps({"id": 2, "method": "Target.createTarget",
                                         "params": {"url": "about:blank"}}))
                while True:
                    reply = json.loads(browser.recv())
                    if reply.get("id") == 2:
                        break
                target_id = reply["result"]["targetId"]
            else:
                target_id = pages[0]["targetId"]
        finally:
            browser.close()
        host = browser_url.split("/devtools/")[0]
        return f"{host}/devtools/page/{target_id}"

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:
                pass
            self._ws = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ protocol
    def send(self, method: str, **params) -> dict:
        """Send one CDP command and return its result (events seen meanwhile are recorded)."""
        assert self._ws is not None, "browser not started"
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == msg_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._record(message)

    def _record(self, event: dict) -> None:
        self._events.append(event)
        method = event["method"]
        params = event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.console_errors.append(f"uncaught: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            args = [a.get("value", a.get("description", "")) for a in params.get("args", [])]
            self.console_errors.append("console.error: " + " ".join(map(str, args)))
        elif method == "Page.javascriptDialogOpening":
            self.console_errors.append(f"unexpected native dialog: {params.get('message')}")

    def _wait_event(self, method: str) -> dict:
        for i, event in enumerate(self._events):
            if event["method"] == method:
                del self._events[i]
                return event
        assert self._ws is not None
        while True:
            message = json.loads(self._ws.recv())
            if message.get("method") == method:
                return message
            if "method" in message:
                self._record(message)

    # ------------------------------------------------------------------ page actions
    def goto(self, url: str) -> None:
        """Load `url` and wait for its load event (a change of #fragment only has none)."""
        self._events = [e for e in self._events if e["method"] != "Page.loadEventFired"]
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url}: {result['errorText']}")
        if result.get("loaderId"):  # absent for same-document navigations
            self._wait_event("Page.loadEventFired")

    def reload(self) -> None:
        """Reload the page (bypassing the cache) and wait for its load event."""
        self._events = [e for e in self._events if e["method"] != "Page.loadEventFired"]
        self.send("Page.reload", ignoreCache=True)
        self._wait_event("Page.loadEventFired")

    def evaluate(self, expression: str):
        """Value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True, userGesture=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"evaluating {expression[:80]!r}: {text}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None, what: str = ""):
        """Wait until `expression` is truthy in the page; returns its value.

        The check runs in the page on each DOM change and animation frame, and a timeout
        raises BrowserError naming `what` (or the expression).
        """
        limit_ms = int((timeout or self.timeout) * 1000)
        script = f"""
        new Promise((resolve, reject) => {{
          const check = () => {{ try {{ return ({expression}); }} catch (e) {{ return false; }} }};
          const first = check();
          if (first) {{ resolve(first); return; }}
          let done = false;
          const finish = (value) => {{ if (done) return; done = true; observer.disconnect();
            clearTimeout(timer); resolve(value); }};
          const observer = new MutationObserver(() => {{ const v = check(); if (v) finish(v); }});
          observer.observe(document, {{subtree: true, childList: true, attributes: true,
                                       characterData: true}});
          const frame = () => {{ if (done) return; const v = check(); if (v) finish(v);
            else requestAnimationFrame(frame); }};
          requestAnimationFrame(frame);
          const timer = setTimeout(() => {{ if (done) return; done = true; observer.disconnect();
            reject(new Error("timed out")); }}, {limit_ms});
        }})"""
        try:
            return self.evaluate(script)
        except BrowserError as err:
            raise BrowserError(f"waiting for {what or expression}: {err}") from None

    def wait_for_selector(self, selector: str, timeout: float | None = None) -> None:
        """Wait until an element matching `selector` is in the page and visible."""
        self.wait_for(f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
                      f" return el && el.getClientRects().length > 0; }})()",
                      timeout, what=f"visible {selector}")

    def text(self, selector: str) -> str:
        return self.evaluate(f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''")

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the element, once it is scrolled into view, holds
        still for two animation frames and is the element hit at that point (not covered, not
        moving because the page above it is still being filled in)."""
        self.wait_for_selector(selector)
        sel = json.dumps(selector)
        point = self.wait_for(f"""(() => {{
            const el = document.querySelector({sel});
            if (!el) return false;
            const r = el.getClientRects()[0];  // first line box: a wrapped link has a gap mid-way
            if (!r) return false;
            if (r.top < 0 || r.bottom > innerHeight) {{ el.scrollIntoView({{block: 'center'}}); return false; }}
            const x = r.left + r.width / 2, y = r.top + r.height / 2;
            const key = `${{x}},${{y}}`;
            const hit = document.elementFromPoint(x, y);
            const last = window.__cdpClickPoint;  // a window property: no DOM mutation
            if (!last || last.el !== el || last.key !== key) {{
              window.__cdpClickPoint = {{el, key, since: performance.now()}};
              return false;
            }}
            const held = performance.now() - last.since >= 40;  // still for a few frames
            return held && hit && (hit === el || el.contains(hit)) ? {{x, y}} : false;
        }})()""", what=f"{selector} clickable")
        self.evaluate("window.__cdpClickPoint = null")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=point["x"], y=point["y"],
                      button="left", clickCount=1)

    def fill(self, selector: str, text: str) -> None:
        """Focus a field, clear it and type `text` as keyboard input would."""
        self.wait_for_selector(selector)
        self.evaluate(f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
            el.scrollIntoView({{block: 'center'}}); el.focus();
            if ('select' in el) el.select(); }})()""")
        self.send("Input.dispatchKeyEvent", type="keyDown", key="Backspace", code="Backspace",
                  windowsVirtualKeyCode=8)
        self.send("Input.dispatchKeyEvent", type="keyUp", key="Backspace", code="Backspace",
                  windowsVirtualKeyCode=8)
        if text:
            self.send("Input.insertText", text=text)

    def choose(self, selector: str, value: str) -> None:
        """Pick an option of a <select> (as a user would, with a change event)."""
        self.wait_for_selector(selector)
        self.evaluate(f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
            el.value = {json.dumps(value)};
            el.dispatchEvent(new Event('input', {{bubbles: true}}));
            el.dispatchEvent(new Event('change', {{bubbles: true}})); }})()""")

    def open_section(self, selector: str) -> None:
        """Open a collapsed <details> section by clicking its summary, if it is closed."""
        if not self.evaluate(f"document.querySelector({json.dumps(selector)}).open"):
            self.click(f"{selector} > summary")
        self.wait_for(f"document.querySelector({json.dumps(selector)}).open", what=f"{selector} open")

    def screenshot(self, path: str | Path | None = None) -> Path:
        """Save a PNG of the viewport; returns its path (a new temp file when none is given)."""
        data = self.send("Page.captureScreenshot", format="png")["data"]
        if path is None:
            fd, name = tempfile.mkstemp(prefix="warren-ui-", suffix=".png")
            os.close(fd)
            path = name
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path
