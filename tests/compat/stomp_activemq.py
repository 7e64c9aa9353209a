"""The STOMP scenarios of issue 13, run side by side against warren and a real ActiveMQ.

Not part of the test run (pytest collects ``test_*.py`` only): a check of the expectations the
tests under tests/stomp/ encode, run by hand against Debian's ``activemq`` package (5.17)::

    apt-get install -y activemq          # then start it with a STOMP connector, e.g.
    #   <transportConnector name="stomp" uri="stomp://127.0.0.1:61613"/>
    #   <policyEntry queue=">" prioritizedMessages="true"/>
    python -m tests.compat.stomp_activemq --activemq 127.0.0.1:61613

warren is started from this checkout (``python -m warren``, memory store) unless
``--warren host:port`` names a running one. Each scenario prints one line per broker: what it
answered, reduced to the facts the tests assert, so differences stand out.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
import uuid
from typing import Callable

TIMEOUT = 5.0


class Raw:
    """A bare STOMP 1.2 connection: frames as (command, headers, body)."""

    def __init__(self, addr: tuple[str, int], login: tuple[str, str], extra: str = "",
                 heart_beat: str = "0,0") -> None:
        self.sock = socket.create_connection(addr, timeout=TIMEOUT)
        self.buf = b""
        self.send_raw(f"CONNECT\naccept-version:1.2\nhost:localhost\nlogin:{login[0]}\n"
                      f"passcode:{login[1]}\nheart-beat:{heart_beat}\n{extra}\n\0")
        self.connected = self.frame()

    def send_raw(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def send(self, command: str, body: str = "", **headers: str) -> None:
        head = "".join(f"{k}:{v}\n" for k, v in headers.items())
        self.send_raw(f"{command}\n{head}\n{body}\0")

    def frame(self, timeout: float = TIMEOUT):
        self.sock.settimeout(timeout)
        while True:
            stripped = self.buf.lstrip(b"\r\n")
            if b"\0" in stripped:
                raw, _, self.buf = stripped.partition(b"\0")
                head, _, body = raw.partition(b"\n\n")
                lines = head.decode().split("\n")
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers.setdefault(k, v)
                return lines[0], headers, body.decode()
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                return None
            if not chunk:
                return ("<closed>", {}, "")
            self.buf += chunk

    def sync(self) -> None:
        rid = uuid.uuid4().hex[:8]
        self.send("BEGIN", transaction=rid, receipt=rid)
        self.send("ABORT", transaction=rid)

    def drain(self, timeout: float = 1.0) -> list:
        out = []
        while (f := self.frame(timeout)) is not None and f[0] != "<closed>":
            out.append(f)
        return out

    def close(self) -> None:
        self.sock.close()


def _now() -> int:
    return int(time.time() * 1000)


def heartbeats(addr, login) -> str:
    out = []
    for asked in ("1000,2000", "0,500", "5000,0", "10,10"):
        c = Raw(addr, login, heart_beat=asked)
        out.append(f"{asked}->{c.connected[1].get('heart-beat')}")
        c.close()
    return " ".join(out)


def expires(addr, login) -> str:
    c = Raw(addr, login)
    q = "/queue/compat-exp-" + uuid.uuid4().hex[:6]
    c.send("SUBSCRIBE", id="s", destination=q)
    c.send("SEND", "dead", destination=q, expires=str(_now() - 1000), persistent="true")
    later = str(_now() + 60000)
    c.send("SEND", "alive", destination=q, expires=later)
    got = [f for f in c.drain() if f[0] == "MESSAGE"]
    c.close()
    return (f"bodies={[f[2] for f in got]} expires-echoed="
            f"{bool(got) and got[0][1].get('expires') == later}")


def priority(addr, login) -> str:
    c = Raw(addr, login)
    q = "/queue/compat-pri-" + uuid.uuid4().hex[:6]
    for body, p in (("p1", "1"), ("none", None), ("p9", "9"), ("p4", "4"), ("p0", "0")):
        headers = {"destination": q, "persistent": "true"}
        if p is not None:
            headers["priority"] = p
        c.send("SEND", body, **headers)
    c.sync()
    c.drain(0.5)
    c.send("SUBSCRIBE", id="s", destination=q)
    got = [f for f in c.drain() if f[0] == "MESSAGE"]
    c.close()
    return f"order={[f[2] for f in got]} priority-headers={[f[1].get('priority') for f in got]}"


SELECTORS = [
    ("JMSDeliveryMode = 'PERSISTENT'", {"persistent": "true"}),
    ("JMSDeliveryMode = 'NON_PERSISTENT'", {}),
    ("JMSPriority = 4", {}),
    ("JMSType = 'order'", {"type": "order"}),
    ("JMSCorrelationID = 'c-1'", {"correlation-id": "c-1"}),
    ("JMSXGroupID = 'g1'", {"JMSXGroupID": "g1"}),
    ("JMSExpiration > 0", {"expires": "LATER"}),
    ("JMSExpiration = 0", {}),
    ("JMSRedelivered = FALSE", {}),
    ("JMSTimestamp > 0", {}),
    ("JMSTimestamp > 0", {"timestamp": "1700000000000"}),
]


def selectors(addr, login) -> str:
    out = []
    for selector, headers in SELECTORS:
        c = Raw(addr, login)
        q = "/queue/compat-sel-" + uuid.uuid4().hex[:6]
        c.send("SUBSCRIBE", id="s", destination=q, selector=selector)
        headers = {k: (str(_now() + 60000) if v == "LATER" else v) for k, v in headers.items()}
        c.send("SEND", "m", destination=q, **headers)
        got = [f for f in c.drain(0.7) if f[0] == "MESSAGE"]
        out.append(f"[{selector} {sorted(headers)}: {'match' if got else 'no'}]")
        c.close()
    return " ".join(out)


def bad_selector(addr, login) -> str:
    out = []
    for selector in ("a = = 1", "foo(a) = 1"):
        c = Raw(addr, login)
        c.send("SUBSCRIBE", id="s", destination="/queue/compat-bad", selector=selector,
               receipt="r")
        error = c.frame()
        c.send("SUBSCRIBE", id="s", destination="/queue/compat-bad", receipt="again")
        after = c.frame()
        out.append(f"[{selector}: {error[0]} message={error[1].get('message')!r} "
                   f"receipt-id={error[1].get('receipt-id')} body={error[2][:45]!r} "
                   f"then={after[0] if after else None}]")
        c.close()
    return " ".join(out)


def client_id(addr, login) -> str:
    cid = "compat-" + uuid.uuid4().hex[:6]
    a = Raw(addr, login, f"client-id:{cid}\n")
    b = Raw(addr, login, f"client-id:{cid}\n")
    after = b.frame(1.0)
    message = b.connected[1].get("message", "")
    out = (f"second={b.connected[0]} message={message.replace(cid, '<id>')!r} "
           f"then={after[0] if after else None}")
    a.send("DISCONNECT", receipt="bye")
    a.frame()
    a.close()
    time.sleep(0.5)             # a hand-run script: give the broker the close
    c = Raw(addr, login, f"client-id:{cid}\n")
    out += f" after-first-gone={c.connected[0]}"
    c.close()
    d = Raw(addr, login, "client-id:ctl\x07id\n")
    out += f" control-chars={d.connected[0]}"
    d.close()
    return out


def durable(addr, login) -> str:
    cid = "compat-" + uuid.uuid4().hex[:6]
    topic = "/topic/" + cid
    sub = {"destination": topic, "activemq.subscriptionName": "n"}
    c = Raw(addr, login, f"client-id:{cid}\n")
    c.send("SUBSCRIBE", id="d", receipt="r", **sub)
    c.frame()
    c.send("UNSUBSCRIBE", id="other", receipt="rm", **{"activemq.subscriptionName": "n"})
    in_use = c.frame()
    c.send("SEND", "still", destination=topic)
    still = c.frame()
    c.send("UNSUBSCRIBE", id="d", receipt="u")
    c.frame()
    c.send("SEND", "while-away", destination=topic, receipt="s")
    c.frame()
    c.send("SUBSCRIBE", id="d", receipt="r2", **sub)
    kept = [f[2] for f in c.drain() if f[0] == "MESSAGE"]
    c.send("UNSUBSCRIBE", id="d", receipt="u2")
    c.frame()
    c.send("SEND", "pending", destination=topic, receipt="s2")
    c.frame()
    c.send("UNSUBSCRIBE", id="d", receipt="u3", **{"activemq.subscriptionName": "n"})
    removed = c.frame()
    c.send("SUBSCRIBE", id="d", receipt="r3", **sub)
    after = [f[2] for f in c.drain() if f[0] == "MESSAGE"]
    c.close()
    return (f"in-use={in_use[0]} {in_use[1].get('message')!r} goes-on={still[2]!r} "
            f"deactivated-keeps={kept} remove={removed[0]} after-remove={after}")


def message_headers(addr, login) -> str:
    c = Raw(addr, login)
    q = "/queue/compat-hdr-" + uuid.uuid4().hex[:6]
    c.send("SUBSCRIBE", id="s", destination=q)
    sent = {"timestamp": "1700000000123", "expires": str(_now() + 60000), "priority": "7",
            "persistent": "true", "type": "order", "correlation-id": "c-9", "colour": "blue"}
    c.send("SEND", "x", destination=q, **sent)
    c.send("SEND", "plain", destination=q)
    got = [f for f in c.drain() if f[0] == "MESSAGE"]
    c.close()
    same = {k: got[0][1].get(k) == v for k, v in sent.items()}
    plain = {k: got[1][1].get(k) for k in ("priority", "expires", "timestamp", "persistent")}
    return f"as-sent={same} redelivered={got[0][1].get('redelivered')} plain={plain}"


SCENARIOS: list[tuple[str, Callable]] = [
    ("heart-beat", heartbeats), ("expires", expires), ("priority", priority),
    ("selectors", selectors), ("bad selector", bad_selector), ("client-id", client_id),
    ("durable", durable), ("MESSAGE headers", message_headers),
]


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activemq", default="127.0.0.1:61613")
    parser.add_argument("--warren", help="host:port of a running warren (default: start one)")
    args = parser.parse_args()
    proc = None
    if args.warren:
        warren = _addr(args.warren)
    else:
        from tests.broker_process import BrokerProcess
        proc = BrokerProcess(tempfile.mkdtemp(prefix="warren-compat-"), store="memory")
        proc.start()
        warren = ("127.0.0.1", proc.stomp_port)
    brokers = [("warren", warren, ("guest", "guest")),
               ("activemq", _addr(args.activemq), ("admin", "admin"))]
    try:
        for title, scenario in SCENARIOS:
            print(f"== {title}")
            for name, addr, login in brokers:
                try:
                    print(f"  {name:9} {scenario(addr, login)}")
                except Exception as error:      # a hand-run report: show and go on
                    print(f"  {name:9} failed: {error!r}")
    finally:
        if proc is not None:
            proc.stop()


if __name__ == "__main__":
    main()
