// Overview: totals, live charts of queued messages and message rates, nodes, listeners.

import {apiPath, get} from "../api.js";
import {
  dig, formatBytes, formatCount, formatDuration, formatRate, h, num, replace, table,
} from "../dom.js";
import {LineChart} from "../chart.js";

const RATE_SERIES = [
  {key: "publish", label: "Publish", color: "#e8710a"},
  {key: "deliver", label: "Deliver", color: "#1a73e8"},
  {key: "ack", label: "Ack", color: "#188038"},
];
const QUEUED_SERIES = [
  {key: "ready", label: "Ready", color: "#b06000"},
  {key: "unacked", label: "Unacked", color: "#5f6368"},
  {key: "total", label: "Total", color: "#1967d2"},
];

// Samples outlive the page so the charts keep their history when the operator comes back.
const samples = [];
const MAX_SAMPLES = 400;

/** Rate of a counter: the API's own *_details.rate when given, else the change since the last poll. */
function rate(stats, prevStats, dt, ...names) {
  for (const name of names) {
    const given = dig(stats, `${name}_details.rate`);
    if (typeof given === "number") return given;
  }
  for (const name of names) {
    const now = stats && stats[name];
    const before = prevStats && prevStats[name];
    if (typeof now === "number" && typeof before === "number" && dt > 0) {
      return Math.max(0, (now - before) / dt);
    }
  }
  return stats && names.some((n) => typeof stats[n] === "number") ? (prevStats ? 0 : undefined) : undefined;
}

function sample(overview) {
  const prev = samples[samples.length - 1];
  const t = Date.now();
  const dt = prev ? (t - prev.t) / 1000 : 0;
  const stats = overview.message_stats || {};
  const prevStats = prev ? prev.stats : null;
  const totals = overview.queue_totals || {};
  const s = {
    t,
    stats,
    rates: {
      publish: rate(stats, prevStats, dt, "publish"),
      deliver: rate(stats, prevStats, dt, "deliver_get", "deliver"),
      ack: rate(stats, prevStats, dt, "ack"),
    },
    queued: {
      ready: totals.messages_ready ?? 0,
      unacked: totals.messages_unacknowledged ?? 0,
      total: totals.messages ?? 0,
    },
  };
  samples.push(s);
  if (samples.length > MAX_SAMPLES) samples.shift();
  return s;
}

function totalCard(label, value, id) {
  return h("div", {class: "stat", id}, h("div", {class: "stat-value"}, formatCount(value)),
    h("div", {class: "stat-label"}, label));
}

export function overviewPage(params, app) {
  const totals = h("div", {class: "stats", id: "overview-totals"});
  const queuedChart = new LineChart({title: "Queued messages", series: QUEUED_SERIES,
    format: (v) => formatCount(Math.round(v)), integer: true});
  const rateChart = new LineChart({title: "Message rates", series: RATE_SERIES,
    format: (v) => formatRate(v)});
  for (const s of samples) {
    queuedChart.push(s.t, s.queued);
    rateChart.push(s.t, s.rates);
  }
  const nodes = h("div", {id: "overview-nodes"});
  const listeners = h("div", {id: "overview-listeners"});
  const about = h("p", {class: "muted", id: "overview-about"});

  const element = h("div", {class: "page", id: "page-overview"},
    h("h2", {}, "Overview"),
    totals,
    h("div", {class: "charts"}, queuedChart.element, rateChart.element),
    h("h3", {}, "Nodes"), nodes,
    h("h3", {}, "Listeners"), listeners,
    about);

  async function refresh() {
    const [overview, nodeList] = await Promise.all([
      get(apiPath("overview")),
      get(apiPath("nodes")).catch(() => []),
    ]);
    app.showNode(overview);
    const s = sample(overview);
    queuedChart.push(s.t, s.queued);
    rateChart.push(s.t, s.rates);

    const objects = overview.object_totals || {};
    const queued = overview.queue_totals || {};
    replace(totals,
      totalCard("Ready", queued.messages_ready, "total-ready"),
      totalCard("Unacked", queued.messages_unacknowledged, "total-unacked"),
      totalCard("Total messages", queued.messages, "total-messages"),
      h("div", {class: "stat-sep"}),
      totalCard("Connections", objects.connections, "total-connections"),
      totalCard("Channels", objects.channels, "total-channels"),
      totalCard("Exchanges", objects.exchanges, "total-exchanges"),
      totalCard("Queues", objects.queues, "total-queues"),
      totalCard("Consumers", objects.consumers, "total-consumers"));

    replace(nodes, table(
      ["Name", "Type", "Running", "Uptime", "Memory used", "Memory limit", "Disk free",
        "Disk free limit", "Alarms", "File descriptors", "HA role"],
      nodeList.map((n) => [
        n.name, n.type ?? "", n.running === false ? "no" : "yes", formatDuration(n.uptime),
        num(formatBytes(n.mem_used)), num(formatBytes(n.mem_limit)), num(formatBytes(n.disk_free)),
        num(formatBytes(n.disk_free_limit)),
        // RabbitMQ's resource alarms: publishers are blocked while either is on
        [n.mem_alarm ? "memory" : "", n.disk_free_alarm ? "disk" : ""]
          .filter(Boolean).join(", ") || "none",
        num(n.fd_used !== undefined ? `${formatCount(n.fd_used)}${n.fd_total ? ` / ${formatCount(n.fd_total)}` : ""}` : "–"),
        n.ha_role ?? overview.ha_role ?? "–",
      ]),
      {empty: "No node information."}));

    replace(listeners, table(["Protocol", "Bound to", "Port"],
      (overview.listeners || []).map((l) => [l.protocol, l.ip_address ?? "", num(l.port)]),
      {empty: "No listeners reported."}));

    const versions = [];
    if (overview.product_name || overview.product_version) {
      versions.push(`${overview.product_name || "warren"} ${overview.product_version || ""}`.trim());
    }
    if (overview.management_version) versions.push(`management API ${overview.management_version}`);
    if (overview.cluster_name) versions.push(`cluster ${overview.cluster_name}`);
    about.textContent = versions.join(" · ");
  }

  return {
    element,
    refresh,
    dispose() {
      queuedChart.dispose();
      rateChart.dispose();
    },
  };
}
