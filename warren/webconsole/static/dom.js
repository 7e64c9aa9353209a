// Building DOM nodes without HTML strings.
//
// Every string that reaches the page goes through a text node or setAttribute, never through
// innerHTML: queue names, message bodies and headers come from clients and may hold markup.

/**
 * h("a", {href: "#/x", class: "link", onclick: fn}, "text", child, [more])
 * Attributes named on* become event listeners; `dataset` is an object of data-* values;
 * boolean attributes set to false or null are left out; children may be strings, numbers,
 * nodes, arrays or null (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "value") {
      el.value = value;
    } else if (key === "checked") {
      el.checked = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replace all children of `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/**
 * A table with a header row; `rows` are arrays of cells (strings or nodes). `keys[i]`, when
 * given, names row i in its data-key attribute (what scripts and tests find rows by).
 */
export function table(headers, rows, {empty = "Nothing here yet.", cls = "", keys = null} = {}) {
  if (!rows.length) return h("p", {class: "empty"}, empty);
  return h("table", {class: `grid ${cls}`},
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", {}, name)))),
    h("tbody", {}, rows.map((cells, i) => h("tr", {dataset: keys ? {key: keys[i]} : null},
      cells.map((cell) => (cell instanceof Node && cell.tagName === "TD" ? cell : h("td", {}, cell)))))));
}

/** A numeric table cell (right-aligned). */
export function num(value) {
  return h("td", {class: "num"}, value);
}

export function link(href, text) {
  return h("a", {href}, text);
}

export function formatCount(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return Number(n).toLocaleString("en-US");
}

export function formatRate(r) {
  if (r === null || r === undefined || Number.isNaN(r)) return "–";
  const v = Number(r);
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)}/s`;
}

export function formatBytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined) return "–";
  let s = Math.floor(Number(ms) / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const mm = Math.floor(s / 60); s -= mm * 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${mm}m`;
  if (mm) return `${mm}m ${s}s`;
  return `${s}s`;
}

/** Value of `obj.a.b.c` for path "a.b.c", or undefined. */
export function dig(obj, path) {
  let cur = obj;
  for (const part of path.split(".")) {
    if (cur === null || cur === undefined) return undefined;
    cur = cur[part];
  }
  return cur;
}

/** Short text for an arbitrary JSON value (arguments, definitions, header values). */
export function showValue(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** A small key/value table (for arguments, properties, headers). */
export function kvTable(obj, {empty = "none", cls = "kv"} = {}) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return h("span", {class: "muted"}, empty);
  return h("table", {class: cls}, h("tbody", {}, entries.map(([k, v]) =>
    h("tr", {}, h("th", {}, k), h("td", {}, showValue(v))))));
}
