// A parallel-coordinates chart in SVG: one vertical axis per dimension (numbers on a linear
// scale, anything else as evenly spaced categories, a missing value at the foot of its axis),
// one line per item. Dragging along an axis brushes a range: only the lines inside every
// brushed range stay lit; a click on an axis clears its brush.

import { h } from "./dom.js";
import { shown } from "./fields.js";

const SVG = "http://www.w3.org/2000/svg";
const TOP = 28;
const FOOT = 34; // room below the axes for "none"
const HEIGHT = 300;
const SIDE = 48;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) if (value != null) el.setAttribute(name, String(value));
  el.append(...children);
  return el;
}

/** Where each value of a dimension sits, from the top (0) to the bottom (1) of its axis. */
function scale(values) {
  const present = values.filter((v) => v !== undefined && v !== null);
  if (present.length && present.every((v) => typeof v === "number")) {
    const lo = Math.min(...present);
    const hi = Math.max(...present);
    return { ticks: [[hi, 0], [lo, 1]], at: (v) => (hi === lo ? 0.5 : (hi - v) / (hi - lo)) };
  }
  const labels = [...new Set(present.map((v) => shown(v)))].sort();
  const at = (v) => (labels.length === 1 ? 0.5 : labels.indexOf(shown(v)) / (labels.length - 1));
  return { ticks: labels.map((label) => [label, at(label)]), at };
}

/**
 * Draw `items` (`{id, label, color}`) across `dimensions` (`{field, label, values}`: one value
 * per item) into `container`; returns `{el, active()}`.
 */
export function parallelCoordinates(container, { items, dimensions, onBrush = () => {} }) {
  const width = Math.max(320, container.clientWidth || 640);
  const step = dimensions.length > 1 ? (width - 2 * SIDE) / (dimensions.length - 1) : 0;
  const x = (i) => SIDE + i * step;
  const bottom = HEIGHT - FOOT;
  const y = (fraction) => TOP + fraction * (bottom - TOP);
  const scales = dimensions.map((d) => scale(d.values));
  const brushes = new Map(); // axis index -> [y0, y1] in pixels
  const point = (d, i) => {
    const v = dimensions[d].values[i];
    return v === undefined || v === null ? bottom + 16 : y(scales[d].at(typeof v === "number" ? v : shown(v)));
  };

  const lines = items.map((item, i) => svg("path", {
    d: dimensions.map((_, d) => `${d ? "L" : "M"}${x(d).toFixed(1)},${point(d, i).toFixed(1)}`).join(""),
    stroke: item.color, fill: "none", "stroke-width": 2.5, class: "pc-line active",
    "data-run": item.id,
  }, svg("title", {}, item.label)));

  const root = svg("svg", { width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, class: "parcoords",
    role: "img", "aria-label": `Parallel coordinates of ${items.length} runs over ${dimensions.map((d) => d.label).join(", ")}` });
  root.append(...lines);

  function update() {
    let lit = 0;
    items.forEach((item, i) => {
      const inside = [...brushes].every(([d, [a, b]]) => {
        const py = point(d, i);
        return py >= Math.min(a, b) && py <= Math.max(a, b);
      });
      lines[i].setAttribute("class", `pc-line ${inside ? "active" : "dimmed"}`);
      if (inside) lit += 1;
    });
    root.dataset.active = String(lit);
    root.dataset.brushed = String(brushes.size);
    onBrush(items.filter((_, i) => lines[i].classList.contains("active")).map((item) => item.id));
  }

  dimensions.forEach((dimension, d) => {
    const group = svg("g", { class: "pc-axis", "data-field": dimension.field });
    group.append(svg("line", { x1: x(d), x2: x(d), y1: TOP, y2: bottom, stroke: "#4a5560" }));
    group.append(svg("text", { x: x(d), y: 14, "text-anchor": "middle", class: "pc-label" }, dimension.label));
    for (const [label, fraction] of scales[d].ticks) {
      group.append(svg("text", { x: x(d) + 4, y: y(fraction) + 4, class: "pc-tick" }, typeof label === "number" ? shown(label) : label));
    }
    if (dimension.values.some((v) => v === undefined || v === null)) {
      group.append(svg("text", { x: x(d) + 4, y: bottom + 20, class: "pc-tick" }, "none"));
    }
    const band = svg("rect", { x: x(d) - 6, y: TOP, width: 12, height: 0, class: "pc-brush" });
    const hit = svg("rect", { x: x(d) - 14, y: TOP - 6, width: 28, height: bottom - TOP + 30,
      class: "pc-hit", "data-axis": d });
    let start = null;
    hit.addEventListener("pointerdown", (event) => {
      const box = root.getBoundingClientRect();
      start = event.clientY - box.top;
      hit.setPointerCapture(event.pointerId);
    });
    hit.addEventListener("pointermove", (event) => {
      if (start === null) return;
      const now = event.clientY - root.getBoundingClientRect().top;
      band.setAttribute("y", Math.min(start, now));
      band.setAttribute("height", Math.abs(now - start));
    });
    hit.addEventListener("pointerup", (event) => {
      if (start === null) return;
      const end = event.clientY - root.getBoundingClientRect().top;
      if (Math.abs(end - start) < 3) {
        brushes.delete(d);
        band.setAttribute("height", 0);
      } else {
        brushes.set(d, [start, end]);
      }
      start = null;
      update();
    });
    group.append(band, hit);
    root.append(group);
  });
  container.replaceChildren(root);
  update();
  return {
    el: root,
    clear() {
      brushes.clear();
      root.querySelectorAll(".pc-brush").forEach((band) => band.setAttribute("height", 0));
      update();
    },
  };
}

/** A legend of items: a swatch and a label each. */
export function legend(items) {
  return h("ul", { class: "pc-legend" }, items.map((item) => {
    const swatch = h("span", { class: "pc-swatch", "aria-hidden": "true" });
    swatch.style.background = item.color;
    return h("li", { dataset: { run: item.id } }, swatch, " ", item.label);
  }));
}
