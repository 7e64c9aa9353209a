// A small line chart on <canvas> for the live rate graphs: a sliding time window, a few
// series, a y axis scaled to the visible data, a legend with the latest values.
// Drawn by hand rather than vendoring a charting library: it is all the overview needs.

import {h} from "./dom.js";

export class LineChart {
  /**
   * @param {object} opts
   * @param {string} opts.title  heading above the plot
   * @param {{key: string, label: string, color: string}[]} opts.series
   * @param {number} [opts.windowSeconds]  how much history is shown
   * @param {(v: number) => string} [opts.format]  value formatter for axis and legend
   * @param {boolean} [opts.integer]  values are counts: y ticks are whole numbers
   */
  constructor({title, series, windowSeconds = 300, format = (v) => v.toFixed(1),
    integer = false}) {
    this.series = series;
    this.windowMs = windowSeconds * 1000;
    this.format = format;
    this.integer = integer;
    this.points = [];  // {t: ms, values: {key: number}}
    this.canvas = h("canvas", {class: "chart-canvas", role: "img", "aria-label": title});
    this.legendValues = new Map();
    const legend = h("ul", {class: "chart-legend"}, series.map((s) => {
      const value = h("span", {class: "legend-value"}, "–");
      this.legendValues.set(s.key, value);
      const swatch = h("span", {class: "swatch"});
      swatch.style.background = s.color;  // CSSOM, not a style attribute: allowed by the CSP
      return h("li", {dataset: {series: s.key}}, swatch, s.label, " ", value);
    }));
    this.element = h("figure", {class: "chart"}, h("figcaption", {}, title), this.canvas, legend);
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.canvas);
  }

  push(t, values) {
    this.points.push({t, values});
    const cutoff = t - this.windowMs;
    while (this.points.length > 2 && this.points[1].t < cutoff) this.points.shift();
    for (const s of this.series) {
      const v = values[s.key];
      this.legendValues.get(s.key).textContent = v === undefined || v === null ? "–" : this.format(v);
    }
    this.draw();
  }

  dispose() {
    this.resizeObserver.disconnect();
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    const left = 56, right = 10, top = 8, bottom = 22;
    const plotW = width - left - right;
    const plotH = height - top - bottom;
    const now = this.points.length ? this.points[this.points.length - 1].t : Date.now();
    const start = now - this.windowMs;

    let max = 0;
    for (const p of this.points) {
      for (const s of this.series) {
        const v = p.values[s.key];
        if (typeof v === "number" && v > max) max = v;
      }
    }
    const ticks = yTicks(max, this.integer);
    max = ticks[ticks.length - 1];
    // the labels drawn on the canvas, readable by tests and assistive tools
    this.canvas.dataset.yTicks = ticks.map((v) => this.format(v)).join(" | ");

    const style = getComputedStyle(canvas);
    const gridColor = style.getPropertyValue("--chart-grid").trim() || "#ddd";
    const textColor = style.getPropertyValue("--chart-text").trim() || "#555";
    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;

    // horizontal grid lines with y labels
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const tick of ticks) {
      const y = top + plotH - (plotH * tick) / max;
      ctx.strokeStyle = gridColor;
      ctx.beginPath();
      ctx.moveTo(left, Math.round(y) + 0.5);
      ctx.lineTo(left + plotW, Math.round(y) + 0.5);
      ctx.stroke();
      ctx.fillStyle = textColor;
      ctx.fillText(this.format(tick), left - 6, y);
    }
    // time labels: minutes ago
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const minutes = Math.round(this.windowMs / 60000);
    for (let m = 0; m <= minutes; m++) {
      const x = left + plotW - (plotW * m * 60000) / this.windowMs;
      ctx.fillText(m === 0 ? "now" : `-${m}m`, x, top + plotH + 6);
    }

    const xOf = (t) => left + ((t - start) / this.windowMs) * plotW;
    const yOf = (v) => top + plotH - (max ? (v / max) * plotH : 0);
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    for (const s of this.series) {
      ctx.strokeStyle = s.color;
      ctx.beginPath();
      let started = false;
      for (const p of this.points) {
        const v = p.values[s.key];
        if (typeof v !== "number") { started = false; continue; }
        const x = xOf(p.t), y = yOf(v);
        if (!started) { ctx.moveTo(x, y); started = true; } else ctx.lineTo(x, y);
      }
      ctx.stroke();
    }
  }
}

/**
 * Y axis ticks for data up to `max`: 0 and up to 4 more steps of 1, 2 or 5 × 10^n, the last at
 * or above `max`. With `integer` the step is at least 1, so a count axis never repeats a label
 * (an empty queue once read 1, 1, 1, 0, 0 from quarters of 1 rounded).
 */
export function yTicks(max, integer = false) {
  const wanted = max > 0 ? max / 4 : (integer ? 1 : 0.25);
  let step = niceCeiling(wanted);
  if (integer) step = Math.max(1, Math.round(step));
  const steps = Math.max(1, Math.ceil(max / step - 1e-9));
  return Array.from({length: steps + 1}, (_, i) => i * step);
}

/** 1, 2, 5 × 10^n at or above `v`, so axis labels stay round. */
function niceCeiling(v) {
  const exp = Math.pow(10, Math.floor(Math.log10(v)));
  for (const step of [1, 2, 5, 10]) {
    if (v <= step * exp * (1 + 1e-9)) return step * exp;
  }
  return 10 * exp;
}
