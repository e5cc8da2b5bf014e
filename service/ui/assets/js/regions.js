// Decision regions of a two-feature classifier: the model's predicted class over a grid
// (POST /v1/models/{id}/predict answers `probabilities` for classifiers; while a run trains,
// the same forward pass here over the params of its latest history row), shaded by how sure
// it is, with the data points on top, each class a palette colour and a marker shape.

import { id, postJSON } from "./api.js";
import { PALETTE, markFirstChart } from "./charts.js";
import { h } from "./dom.js";

const ACTIVATIONS = {
  relu: (v) => Math.max(0, v),
  tanh: Math.tanh,
  sigmoid: (v) => 1 / (1 + Math.exp(-v)),
};

function softmax(logits) {
  const top = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - top));
  const total = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / total);
}

/**
 * The classifier `model` (logistic or MLP) as a function of the grid, from `params` (a
 * history row's named arrays), answering like /predict: `{y, probabilities}`; null when
 * the params are not all there.
 */
export function forward(model, params) {
  if (!params) return null;
  let layers;
  if (model.kind === "logistic") {
    if (params.W == null || params.b == null) return null;
    layers = [[params.W, params.b]];
  } else if (model.kind === "mlp") {
    layers = [];
    for (let k = 1; params[`W${k}`] != null; k++) layers.push([params[`W${k}`], params[`b${k}`]]);
    if (!layers.length || layers.some(([, b]) => b == null)) return null;
  } else return null;
  const act = ACTIVATIONS[model.activation] ?? ACTIVATIONS.relu;
  return (grid) => {
    const y = [];
    const probabilities = grid.map((point) => {
      let values = point;
      layers.forEach(([W, b], k) => {
        const bias = [b].flat();
        const columns = bias.length;
        // W is (inputs, outputs); a 2-class logistic W is a vector of inputs and b a number.
        const out = bias.map((v, j) => values.reduce((sum, x, i) => sum + x * (columns === 1 && !Array.isArray(W[i]) ? W[i] : W[i][j]), v));
        values = k < layers.length - 1 ? out.map(act) : out;
      });
      const p = values.length === 1 ? [1 - ACTIVATIONS.sigmoid(values[0]), ACTIVATIONS.sigmoid(values[0])] : softmax(values);
      y.push(p.indexOf(Math.max(...p)));
      return p;
    });
    return { y, probabilities };
  };
}

const GRID = 40; // 1,600 predictions: within the page's 2,000-point budget
const SHAPES = ["circle", "square", "triangle", "diamond"];

function bounds(values) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  const pad = (hi - lo || 1) * 0.08;
  return [lo - pad, hi + pad];
}

function mark(ctx, shape, x, y, r) {
  ctx.beginPath();
  if (shape === "square") ctx.rect(x - r, y - r, 2 * r, 2 * r);
  else if (shape === "triangle") {
    ctx.moveTo(x, y - r * 1.2);
    ctx.lineTo(x + r * 1.1, y + r * 0.8);
    ctx.lineTo(x - r * 1.1, y + r * 0.8);
    ctx.closePath();
  } else if (shape === "diamond") {
    ctx.moveTo(x, y - r * 1.3);
    ctx.lineTo(x + r * 1.3, y);
    ctx.lineTo(x, y + r * 1.3);
    ctx.lineTo(x - r * 1.3, y);
    ctx.closePath();
  } else ctx.arc(x, y, r, 0, 2 * Math.PI);
  ctx.fill();
  ctx.stroke();
}

/**
 * Draw the regions of model `modelId` and the points `{x: [[x0, x1], ...], y: [class, ...]}`
 * into `fig` (from charts.figure); resolves with the predicted grid (for the table).
 */
export async function drawRegions(fig, modelId, sample, labels = [], predict = null) {
  // A dataset with named classes samples its labels as names: back to indices.
  const index = new Map(labels.map((name, i) => [name, i]));
  const points = { x: sample.x, y: sample.y.map((c) => (typeof c === "number" ? c : index.get(c) ?? 0)) };
  const [x0lo, x0hi] = bounds(points.x.map((p) => p[0]));
  const [x1lo, x1hi] = bounds(points.x.map((p) => p[1]));
  const grid = [];
  for (let j = 0; j < GRID; j++) {
    for (let i = 0; i < GRID; i++) {
      grid.push([x0lo + ((i + 0.5) * (x0hi - x0lo)) / GRID, x1lo + ((j + 0.5) * (x1hi - x1lo)) / GRID]);
    }
  }
  const answer = predict ? predict(grid) : await postJSON(`/v1/models/${id(modelId)}/predict`, { x: grid });
  const probabilities = answer.probabilities ?? answer.y.map((c) => [c]);
  const classes = Math.max(2, probabilities[0]?.length ?? 2, ...points.y.map((c) => c + 1));

  const width = Math.max(240, (fig.plot.clientWidth || 400) - 2); // inside the frame's border
  const side = Math.min(width, 480);
  // Two layers: the regions, and the points over them (so each can be read, or redrawn, alone).
  const ratio = window.devicePixelRatio || 1;
  const layer = (name) => {
    const canvas = h("canvas", { class: name });
    canvas.width = side * ratio;
    canvas.height = side * ratio;
    canvas.style.width = `${side}px`; // square (app.css): shrinks with a narrower frame
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    return [canvas, ctx];
  };
  const [canvas, ctx] = layer("regions");
  // Cells on whole device pixels, edge to edge: translucent cells must not overlap.
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  const edge = (n) => Math.round((n * canvas.width) / GRID);
  probabilities.forEach((p, k) => {
    const best = p.indexOf(Math.max(...p));
    const sure = (p[best] - 1 / classes) / (1 - 1 / classes);
    ctx.globalAlpha = 0.12 + 0.4 * sure;
    ctx.fillStyle = PALETTE[answer.y[k] % PALETTE.length];
    const i = k % GRID;
    const j = Math.floor(k / GRID);
    const top = canvas.height - edge(j + 1);
    ctx.fillRect(edge(i), top, edge(i + 1) - edge(i), canvas.height - edge(j) - top);
  });
  const [pointsCanvas, dots] = layer("points");
  dots.strokeStyle = "#fff";
  dots.lineWidth = 0.8;
  points.x.forEach(([a, b], k) => {
    const c = points.y[k];
    dots.fillStyle = PALETTE[c % PALETTE.length];
    const px = ((a - x0lo) / (x0hi - x0lo)) * side;
    const py = side - ((b - x1lo) / (x1hi - x1lo)) * side;
    mark(dots, SHAPES[c % SHAPES.length], px, py, 3.2);
  });
  const stack = h("div", { class: "regions-stack" }, canvas, pointsCanvas);
  // Axes: five ticks on each side of the square, and the features' names.
  const ticks = (lo, hi) => Array.from({ length: 5 }, (_, k) => h("span", {}, (lo + ((hi - lo) * k) / 4).toFixed(1)));
  const framed = h("div", { class: "regions-frame", "aria-hidden": "true" },
    h("span", { class: "axis-title y" }, "x1"),
    h("div", { class: "ticks y" }, ticks(x1lo, x1hi).reverse()),
    stack, h("span", {}), h("span", {}),
    h("div", { class: "ticks x" }, ticks(x0lo, x0hi)),
    h("span", {}), h("span", {}), h("span", { class: "axis-title x" }, "x0"));
  const legend = h("ul", { class: "legend" }, Array.from({ length: classes }, (_, c) => h("li", {},
    h("span", { class: `swatch c${c % PALETTE.length} ${SHAPES[c % SHAPES.length]}`, "aria-hidden": "true" }),
    ` class ${labels[c] ?? c} (${SHAPES[c % SHAPES.length]})`)));
  const axes = h("p", { class: "axes-note visually-hidden" },
    `x0 from ${x0lo.toFixed(2)} to ${x0hi.toFixed(2)} (left to right), x1 from ${x1lo.toFixed(2)} to ${x1hi.toFixed(2)} (bottom to top)`);
  fig.plot.replaceChildren(framed, legend, axes);
  fig.el.dataset.points = String(points.x.length);
  fig.el.dataset.series = String(classes);
  fig.el.dataset.cells = String(probabilities.length);
  // Where the grid lies (for tests and readers of the table): the cells' centres follow.
  fig.el.dataset.grid = String(GRID);
  fig.el.dataset.bounds = [x0lo, x0hi, x1lo, x1hi].join(",");
  fig.el.dataset.predicted = answer.y.join(",");
  markFirstChart();
  return { grid, predicted: answer.y };
}
