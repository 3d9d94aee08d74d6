// The book's 3-layer network (Deep Learning from Scratch, ch. 3) in plain JavaScript,
// for a web page (examples/web/index.html) and Node.js (examples/js/accuracy.mjs) alike.
//
//   a1 = x W1 + b1, z1 = sigmoid(a1), a2 = z1 W2 + b2, z2 = sigmoid(a2),
//   a3 = z2 W3 + b3, y = softmax(a3)        x = pixel / 255 as float32
//
// Weights and activations are float32 (Float32Array, Math.fround), as in the book;
// each dot product is summed in double precision, then rounded once to float32.

import { InputError } from "./weightfiles.mjs";

/** The network's parameters, checked: W1 [n0, n1], b1 [n1], ... W3 [n2, n3], b3 [n3]. */
export function networkFrom(tensors, name) {
  const layers = [];
  let previous = null;
  for (const i of [1, 2, 3]) {
    const W = tensors.get(`W${i}`);
    const b = tensors.get(`b${i}`);
    if (!W || !b) {
      const quantized = tensors.has(`W${i}.q`) ? " (a quantized file: convert it with " +
        "--dequantize first)" : "";
      throw new InputError(`${name}: tensors: expected W${i} and b${i}, found ` +
        `${[...tensors.keys()].join(", ") || "none"}${quantized}`);
    }
    if (W.shape.length !== 2 || (previous !== null && W.shape[0] !== previous) ||
        b.shape.length !== 1 || b.shape[0] !== W.shape[1]) {
      throw new InputError(`${name}: W${i} and b${i}: expected shapes that chain ` +
        `[${previous ?? "n"}, m] and [m], found W${i} [${W.shape}] and b${i} [${b.shape}]`);
    }
    layers.push({ W, b });
    previous = W.shape[1];
  }
  return { layers, inputs: layers[0].W.shape[0], outputs: previous };
}

/** out = f(x W + b) for one row x; W is [n, m] row-major. */
function dense(x, W, b, out, f) {
  const [n, m] = W.shape;
  const w = W.values;
  const acc = new Float64Array(m);
  for (let i = 0; i < n; i++) {
    const xi = x[i];
    if (xi === 0) continue; // most MNIST pixels are 0
    const row = i * m;
    for (let j = 0; j < m; j++) acc[j] += xi * w[row + j];
  }
  for (let j = 0; j < m; j++) out[j] = f(Math.fround(Math.fround(acc[j]) + b.values[j]));
}

const sigmoid = (a) => 1 / (1 + Math.exp(-a));
const identity = (a) => a;

/** y = softmax(a): exp(a - max) / sum, in float32. */
function softmax(a) {
  const max = Math.max(...a);
  const e = Float32Array.from(a, (v) => Math.exp(v - max));
  const sum = e.reduce((s, v) => s + v, 0);
  return e.map((v) => v / sum);
}

/** The class probabilities for one image x (Float32Array of pixel / 255). */
export function predict(net, x) {
  let input = x;
  net.layers.forEach(({ W, b }, k) => {
    const out = new Float32Array(W.shape[1]);
    dense(input, W, b, out, k === net.layers.length - 1 ? identity : sigmoid);
    input = out;
  });
  return softmax(input);
}

/** The index of the largest value (the first one on ties). */
export function argmax(y) {
  let best = 0;
  for (let j = 1; j < y.length; j++) if (y[j] > y[best]) best = j;
  return best;
}

/** The image k of an IDX payload as the network's input: pixel / 255 in float32. */
export function imageInput(pixels, k, size) {
  const x = new Float32Array(size);
  for (let p = 0; p < size; p++) x[p] = Math.fround(pixels[k * size + p] / 255);
  return x;
}

/** Checks that images {dims: [count, rows, cols]} and labels {dims: [count]} fit the net. */
export function checkTestSet(net, images, labels) {
  const [count, rows, cols] = images.dims;
  if (labels.dims[0] !== count) {
    throw new InputError(`labels: count: expected ${count} (one per image), found ${labels.dims[0]}`);
  }
  if (rows * cols !== net.inputs) {
    throw new InputError(`images: pixels: expected ${net.inputs} (the inputs of W1), ` +
      `found ${rows}x${cols}`);
  }
  return { count, size: rows * cols };
}

/**
 * Classifies images [from, to) of the test set; returns how many match their labels and
 * the indices of those that do not.
 */
export function evaluateRange(net, images, labels, from, to) {
  const size = net.inputs;
  let correct = 0;
  const wrong = [];
  for (let k = from; k < to; k++) {
    if (argmax(predict(net, imageInput(images.data, k, size))) === labels.data[k]) correct++;
    else wrong.push(k);
  }
  return { correct, wrong };
}
