// The Network page's picture: this broker in the middle, one node per remote peer (host:port
// of the redacted URIs), one arrow per link in the direction messages flow, coloured by state
// (classes link-running, link-starting, link-blocked, link-terminated, link-error; the colours
// are app.css variables), labelled with the link's name and rate, its last error in a <title>.
// An SVG built with createElementNS: every string goes through a text node or setAttribute.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 1000;          // viewBox units; the SVG scales to the page width
const NODE_W = 160, NODE_H = 40;
const STATES = ["running", "starting", "blocked", "terminated", "error"];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function title(text) {
  return s("title", {}, text);
}

/** "host:port" of a redacted URI, or "" for this broker (amqp://, amqp:///vhost). */
export function peerOf(uri) {
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(uri || "");
  if (!m) return "";
  const authority = m[1];
  return authority.slice(authority.lastIndexOf("@") + 1);
}

/** A state the picture knows, for the class name (anything else is drawn as an error). */
function stateClass(state) {
  return STATES.includes(state) ? state : "error";
}

/** At most `max` characters, cut in the middle: names often differ only at their ends. */
export function shorten(text, max) {
  if (text.length <= max) return text;
  const head = Math.ceil((max - 1) / 2);
  return `${text.slice(0, head)}…${text.slice(text.length - (max - 1 - head))}`;
}

/** Where the segment from the node's centre towards (tx, ty) leaves its box. */
function edge(node, tx, ty) {
  const dx = tx - node.x, dy = ty - node.y;
  if (!dx && !dy) return [node.x, node.y];
  const t = Math.min(dx ? (node.w / 2 + 4) / Math.abs(dx) : Infinity,
    dy ? (node.h / 2 + 4) / Math.abs(dy) : Infinity);
  return [node.x + dx * t, node.y + dy * t];
}

function nodeElement(node) {
  const cls = node.self ? "net-node net-self" : "net-node";
  return s("g", {class: cls, "data-node": node.key, "data-name": node.label},
    title(node.tooltip),
    s("rect", {x: node.x - node.w / 2, y: node.y - node.h / 2, width: node.w, height: node.h,
      rx: 8}),
    s("text", {x: node.x, y: node.y, "text-anchor": "middle", "dominant-baseline": "central"},
      shorten(node.label, node.self ? 26 : 20)));
}

function linkTooltip(link, from, to) {
  const lines = [`${link.kind} ${link.name}`, `${from.label} → ${to.label}${link.duplex ? " (both ways)" : ""}`,
    `state: ${link.state}`];
  if (link.rateText) lines.push(`rate: ${link.rateText}`);
  if (link.error) lines.push(`last error: ${link.error}`);
  return lines.join("\n");
}

function linkElement(link, from, to, path, labelX, labelY) {
  const state = stateClass(link.state);
  const attrs = {class: "net-arrow", d: path, "marker-end": `url(#net-head-${state})`};
  if (link.duplex) attrs["marker-start"] = `url(#net-head-${state})`;
  const label = link.rateText ? `${shorten(link.name, 22)} · ${link.rateText}` : shorten(link.name, 22);
  return s("g", {class: `net-link link-${state}`, "data-link": link.key, "data-state": link.state,
    "data-from": from.key, "data-to": to.key},
  title(linkTooltip(link, from, to)),
  s("path", attrs),
  s("text", {class: "net-label", x: labelX, y: labelY, "text-anchor": "middle"}, label));
}

/**
 * The picture, or null when there are no links.
 * @param {string} nodeName  this broker's node name
 * @param {{key: string, kind: string, name: string, from: string, to: string, state: string,
 *   duplex?: boolean, rateText?: string, error?: string, peerName?: string}[]} links
 *   `from`/`to` are "" for this broker, host:port for a peer.
 */
export function networkPicture(nodeName, links) {
  if (!links.length) return null;
  const peers = [];
  const peerNames = new Map();
  for (const link of links) {
    for (const end of [link.from, link.to]) {
      if (end && !peers.includes(end)) peers.push(end);
    }
    if (link.peerName) peerNames.set(link.from || link.to, link.peerName);
  }
  peers.sort();
  // messages flow left to right: peers that only send to this broker on the left, the others
  // (destinations, duplex and two-way peers) on the right, each column top to bottom
  const left = peers.filter((peer) => links.every((l) => l.to !== peer && !(l.duplex && l.from === peer)));
  const right = peers.filter((peer) => !left.includes(peer));
  const loops = links.filter((l) => !l.from && !l.to).length;
  const loopRoom = loops ? 20 + 30 * loops : 0;
  const rowH = 84;
  const areaH = Math.max(160, Math.max(left.length, right.length) * rowH + 30);
  const height = loopRoom + areaH;
  const cx = WIDTH / 2, cy = loopRoom + areaH / 2;
  const nodes = new Map();
  nodes.set("", {key: "self", self: true, label: nodeName || "this broker", x: cx, y: cy,
    w: NODE_W + 40, h: NODE_H + 8, tooltip: `this broker: ${nodeName}`});
  for (const [column, x] of [[left, cx - 390], [right, cx + 390]]) {
    const top = loopRoom + (areaH - column.length * rowH) / 2;
    column.forEach((peer, i) => {
      const name = peerNames.get(peer);
      nodes.set(peer, {key: peer, label: peer, x, y: top + rowH * i + rowH / 2, w: NODE_W,
        h: NODE_H, tooltip: name ? `${peer} (${name})` : peer});
    });
  }

  const defs = s("defs", {}, STATES.map((state) =>
    s("marker", {id: `net-head-${state}`, class: `net-head link-${state}`, viewBox: "0 0 10 10",
      refX: 9, refY: 5, markerWidth: 4.5, markerHeight: 4.5, orient: "auto-start-reverse"},
    s("path", {d: "M0,0 L10,5 L0,10 z"}))));
  const svg = s("svg", {class: "network-picture", id: "network-picture", role: "img",
    viewBox: `0 0 ${WIDTH} ${height}`, "aria-label": "This broker's network"}, defs);

  // links between the same two nodes fan out; links of this broker to itself loop above it
  const pairs = new Map();
  for (const link of links) {
    const key = [link.from, link.to].sort().join("|");
    if (!pairs.has(key)) pairs.set(key, []);
    pairs.get(key).push(link);
  }
  const arrows = [];
  for (const group of pairs.values()) {
    group.forEach((link, k) => {
      const from = nodes.get(link.from), to = nodes.get(link.to);
      if (from === to) {
        const top = from.y - from.h / 2;
        const spread = 24 + k * 14, rise = 70 + k * 30;
        const x1 = from.x - spread, x2 = from.x + spread;
        const path = `M${x1},${top} C${from.x - spread - 60},${top - rise} `
          + `${from.x + spread + 60},${top - rise} ${x2},${top - 3}`;
        arrows.push(linkElement(link, from, to, path, from.x, top - rise * 0.75 - 6));
        return;
      }
      // a quadratic curve bent sideways, by more for each further link of the pair
      const offset = (k - (group.length - 1) / 2) * 46;
      const dx = to.x - from.x, dy = to.y - from.y;
      const len = Math.hypot(dx, dy) || 1;
      // the normal of the pair's canonical direction, so both directions fan the same way
      const sign = link.from < link.to ? 1 : -1;
      const nx = (-dy / len) * sign, ny = (dx / len) * sign;
      const mx = (from.x + to.x) / 2 + nx * offset, my = (from.y + to.y) / 2 + ny * offset;
      const [x1, y1] = edge(from, mx, my);
      const [x2, y2] = edge(to, mx, my);
      const path = `M${x1},${y1} Q${2 * mx - (x1 + x2) / 2},${2 * my - (y1 + y2) / 2} ${x2},${y2}`;
      arrows.push(linkElement(link, from, to, path, mx, my - 6));
    });
  }
  svg.append(...arrows);   // before the nodes, so arrows end under their boxes
  for (const node of nodes.values()) svg.appendChild(nodeElement(node));
  return svg;
}
