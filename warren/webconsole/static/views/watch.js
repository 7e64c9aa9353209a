// The watch panel of the queue and exchange pages: messages shown as they pass, over Web-STOMP.
//
// Watching never takes a message from the watched queue. The browser logs in to Web-STOMP with
// the console's own credentials and subscribes to a temporary queue of its own (exclusive to
// its session, deleted when the session ends) that the broker binds as the watched object
// receives messages: for a queue, with each of the queue's bindings; for an exchange, with a
// catch-all binding (topic "#", fanout and headers with no condition) or, for direct and
// other types, with each routing key the exchange has bindings for. All subscriptions name the
// same queue, so a message matching two bindings is shown once.

import {apiPath, credentials, get} from "../api.js";
import {h, replace} from "../dom.js";
import {StompSocket} from "../stomp.js";

/** Rows kept in the panel; older ones drop off the bottom. */
export const WATCH_ROWS = 100;
const PREVIEW_CHARS = 200;
/** MESSAGE headers that are STOMP's bookkeeping, not the message's properties. */
const FRAME_HEADERS = new Set(["destination", "subscription", "message-id", "ack", "content-length", "redelivered"]);

/** "/exchange/x/k" of an exchange and key, or null when STOMP cannot name it (a "/" in it). */
function exchangeDestination(exchange, key) {
  if (exchange.includes("/") || key.includes("/")) return null;
  return key === "" ? `/exchange/${exchange}` : `/exchange/${exchange}/${key}`;
}

/** {destinations, skipped, reason}: what to subscribe to so the watch sees what `name` gets. */
async function watchDestinations(kind, vhost, name) {
  let pairs;
  if (kind === "queue") {
    const bindings = await get(apiPath("queues", vhost, name, "bindings"));
    pairs = bindings.filter((b) => b.source !== "").map((b) => [b.source, b.routing_key]);
    if (!pairs.length) {
      return {reason: "This queue has no exchange bindings to watch (messages sent to it through the default exchange cannot be watched)."};
    }
  } else {
    if (name === "" || name === "amq.default") {
      return {reason: "The default exchange cannot be bound to, so it cannot be watched."};
    }
    const x = await get(apiPath("exchanges", vhost, name));
    if (x.type === "topic") {
      pairs = [[name, "#"]];
    } else if (x.type === "fanout" || x.type === "headers") {
      pairs = [[name, ""]];
    } else {
      const bindings = await get(apiPath("exchanges", vhost, name, "bindings", "source"));
      pairs = [...new Set(bindings.map((b) => b.routing_key))].map((k) => [name, k]);
      if (!pairs.length) return {reason: `This ${x.type} exchange has no bindings, so no routing key to watch.`};
    }
  }
  const destinations = [];
  const skipped = [];
  for (const [exchange, key] of pairs) {
    const d = exchangeDestination(exchange, key);
    if (d === null) skipped.push(`${exchange} / ${key}`);
    else if (!destinations.includes(d)) destinations.push(d);
  }
  if (!destinations.length) return {reason: "These bindings cannot be named as STOMP destinations (a '/' in the names)."};
  return {destinations, skipped};
}

/** ws:// (or wss:// for a console served over https) URL of Web-STOMP, or null when it is off. */
async function webStompUrl() {
  const overview = await get("/api/overview");
  const tls = location.protocol === "https:";
  const listener = (overview.listeners || []).find((l) => l.protocol === (tls ? "https/web-stomp" : "http/web-stomp"));
  if (!listener) return null;
  return `${tls ? "wss" : "ws"}://${location.hostname}:${listener.port}/ws`;   // IPv6: "[::1]" already
}

/** 32 random hex digits (crypto.randomUUID exists only in secure contexts, and a console on
 * plain http:// at another host than localhost is not one). */
function randomHex() {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** [exchange, routing key] of a MESSAGE's destination header (as the broker names them). */
function exchangeAndKey(destination) {
  if (destination.startsWith("/exchange/")) {
    const rest = destination.slice("/exchange/".length);
    const slash = rest.indexOf("/");
    return slash < 0 ? [rest, ""] : [rest.slice(0, slash), rest.slice(slash + 1)];
  }
  if (destination.startsWith("/topic/")) return ["amq.topic", destination.slice("/topic/".length)];
  if (destination.startsWith("/queue/")) return ["", destination.slice("/queue/".length)];
  return ["", destination];
}

function messageRow(frame) {
  const [exchange, key] = exchangeAndKey(frame.headers.destination || "");
  const props = Object.entries(frame.headers).filter(([k]) => !FRAME_HEADERS.has(k));
  const text = new TextDecoder("utf-8").decode(frame.body);
  const preview = text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}…` : text;
  return h("tr", {class: "watch-row"},
    h("td", {class: "watch-time"}, new Date().toLocaleTimeString()),
    h("td", {class: "watch-exchange"}, exchange === "" ? "(AMQP default)" : exchange),
    h("td", {class: "watch-key"}, key),
    h("td", {class: "watch-properties"}, props.map(([k, v]) => h("div", {}, h("code", {}, k), ": ", v))),
    h("td", {}, h("pre", {class: "payload watch-body"}, preview),
      h("span", {class: "muted"}, `${frame.body.length} bytes`)));
}

/** watchPanel("queue" | "exchange", vhost, name) -> {element, stop()}. */
export function watchPanel(kind, vhost, name) {
  const status = h("p", {class: "muted", id: "watch-status"}, "Not watching.");
  const rows = h("tbody", {id: "watch-rows"});
  const start = h("button", {type: "button", id: "watch-start"}, "Start watching");
  const stopButton = h("button", {type: "button", class: "secondary", id: "watch-stop", disabled: true}, "Stop");
  let socket = null;
  let run = 0;        // which start is current: a stop (or leaving the page) mid-start ends it

  const say = (...parts) => replace(status, ...parts);
  const stop = (why = "Stopped.") => {
    run += 1;
    if (socket) {
      const s = socket;
      socket = null;
      s.close();
      say(why);
    }
    start.disabled = false;
    stopButton.disabled = true;
  };

  start.addEventListener("click", async () => {
    start.disabled = true;
    say("Starting…");
    const mine = ++run;
    let url;
    let plan;
    try {
      [url, plan] = await Promise.all([webStompUrl(), watchDestinations(kind, vhost, name)]);
    } catch (err) {
      say(`Cannot watch: ${err.message}`);
      start.disabled = false;
      return;
    }
    if (mine !== run) return;
    if (!url) {
      say("Web-STOMP is not enabled on this broker (--web-stomp-port), so messages cannot be watched here.");
      start.disabled = false;
      return;
    }
    if (plan.reason) {
      say(plan.reason);
      start.disabled = false;
      return;
    }
    const queue = `warren.console.watch-${randomHex()}`;
    const creds = credentials.get() || {};
    // frames of a socket already stopped (a RECEIPT after an ERROR) change nothing
    const sock = new StompSocket(url, {login: creds.username, passcode: creds.password, host: vhost}, {
      onConnected() {
        plan.destinations.forEach((destination, i) => sock.send("SUBSCRIBE", {
          id: `watch-${i}`, destination, ack: "auto", "x-queue-name": queue, exclusive: "true", "auto-delete": "true",
          ...(i === plan.destinations.length - 1 ? {receipt: "watching"} : {}),
        }));
      },
      onReceipt() {
        if (socket !== sock) return;
        say("Watching through temporary queue ", h("code", {id: "watch-queue"}, queue), ` (${plan.destinations.join(", ")})`,
          plan.skipped.length ? `; not watched: ${plan.skipped.join(", ")}` : "", ".");
      },
      onMessage(frame) {
        if (socket !== sock) return;
        rows.prepend(messageRow(frame));
        while (rows.childElementCount > WATCH_ROWS) rows.lastElementChild.remove();
      },
      onError(frame) {
        if (socket !== sock) return;
        const detail = new TextDecoder("utf-8").decode(frame.body).trim();
        stop(`The broker refused: ${frame.headers.message || "error"}${detail ? ` (${detail})` : ""}`);
      },
      onClose(event) {
        if (socket !== sock) return;
        socket = null;
        stop();
        say(`Web-STOMP connection closed (${event.code}).`);
      },
    });
    socket = sock;
    stopButton.disabled = false;
  });
  stopButton.addEventListener("click", () => stop());

  const element = h("div", {class: "watch", id: "watch-panel"},
    h("p", {}, `Shows messages as they reach this ${kind}, newest first (at most ${WATCH_ROWS}), without taking any from it.`),
    h("div", {class: "form-buttons"}, start, stopButton), status,
    h("table", {class: "grid watch-messages"},
      h("thead", {}, h("tr", {}, ...["Time", "Exchange", "Routing key", "Properties", "Body"].map((t) => h("th", {}, t)))),
      rows));
  return {element, stop: () => stop()};
}
