// Accuracy of the book's 3-layer network on the MNIST test set, in Node.js alone.
//
// Usage: node examples/js/accuracy.mjs WEIGHTS.json MNIST_DIR
//
// WEIGHTS.json is weights saved by weightstore as JSON (weightstore.json v1, see
// weightstore/codecs/json.py); MNIST_DIR holds t10k-images-idx3-ubyte.gz and
// t10k-labels-idx1-ubyte.gz. Only the standard library is used (fs, zlib, path).
//
//   a1 = x W1 + b1, z1 = sigmoid(a1), a2 = z1 W2 + b2, z2 = sigmoid(a2),
//   a3 = z2 W3 + b3, y = softmax(a3)        x = pixel / 255 as float32
//
// Weights and activations are float32 (Float32Array, Math.fround), as in the book;
// each dot product is summed in double precision, then rounded once to float32.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";

class InputError extends Error {}

/** The tensors of a weightstore.json document, by name: {dtype, shape, values}. */
function readWeights(path) {
  const doc = JSON.parse(readFileSync(path, "utf8"));
  if (doc.format !== "weightstore.json" || doc.version !== 1) {
    throw new InputError(`${path}: expected format "weightstore.json" version 1, ` +
      `found ${JSON.stringify(doc.format)} version ${JSON.stringify(doc.version)}`);
  }
  const tensors = new Map();
  for (const t of doc.tensors) {
    // data nests one list level per dimension (a bare value for 0-d); strings are
    // "NaN", "Infinity", "-Infinity", "NaN(0x..)" or big integers: Number() reads them.
    const flat = t.shape.length === 0 ? [t.data] : t.data.flat(t.shape.length - 1);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (flat.length !== count) {
      throw new InputError(`${path}: tensor ${t.name}: expected ${count} values for shape ` +
        `[${t.shape}], found ${flat.length}`);
    }
    tensors.set(t.name, { dtype: t.dtype, shape: t.shape, values: Float32Array.from(flat, Number) });
  }
  return tensors;
}

/** The network's parameters, checked: W1 [n0, n1], b1 [n1], ... W3 [n2, n3], b3 [n3]. */
function networkFrom(tensors, path) {
  const net = {};
  let previous = null;
  for (const i of [1, 2, 3]) {
    const W = tensors.get(`W${i}`);
    const b = tensors.get(`b${i}`);
    if (!W || !b) throw new InputError(`${path}: expected tensors W${i} and b${i}`);
    if (W.shape.length !== 2 || (previous !== null && W.shape[0] !== previous) ||
        b.shape.length !== 1 || b.shape[0] !== W.shape[1]) {
      throw new InputError(`${path}: W${i} [${W.shape}] and b${i} [${b.shape}] do not chain`);
    }
    net[`W${i}`] = W;
    net[`b${i}`] = b;
    previous = W.shape[1];
  }
  return net;
}

/** An IDX file (gzip): its dimensions and the uint8 payload. */
function readIdx(path, magic, ndim) {
  const raw = gunzipSync(readFileSync(path));
  const head = 4 + 4 * ndim;
  if (raw.length < head || raw.readUInt32BE(0) !== magic) {
    throw new InputError(`${path}: expected an IDX file with magic ${magic}`);
  }
  const dims = [];
  for (let d = 0; d < ndim; d++) dims.push(raw.readUInt32BE(4 + 4 * d));
  const count = dims.reduce((a, b) => a * b, 1);
  if (raw.length - head !== count) {
    throw new InputError(`${path}: expected ${count} data bytes for [${dims}], ` +
      `found ${raw.length - head}`);
  }
  return { dims, data: raw.subarray(head) };
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

function main(argv) {
  if (argv.length !== 2) {
    console.error("usage: node accuracy.mjs WEIGHTS.json MNIST_DIR");
    return 2;
  }
  const [weightsPath, mnistDir] = argv;
  const net = networkFrom(readWeights(weightsPath), weightsPath);
  const images = readIdx(join(mnistDir, "t10k-images-idx3-ubyte.gz"), 2051, 3);
  const labels = readIdx(join(mnistDir, "t10k-labels-idx1-ubyte.gz"), 2049, 1);
  const [count, rows, cols] = images.dims;
  const size = rows * cols;
  if (labels.dims[0] !== count) throw new InputError(`${count} images but ${labels.dims[0]} labels`);
  if (size !== net.W1.shape[0]) {
    throw new InputError(`images have ${size} pixels but W1 takes ${net.W1.shape[0]} inputs`);
  }

  const x = new Float32Array(size);
  const z1 = new Float32Array(net.W1.shape[1]);
  const z2 = new Float32Array(net.W2.shape[1]);
  const a3 = new Float32Array(net.W3.shape[1]);
  let correct = 0;
  for (let k = 0; k < count; k++) {
    for (let p = 0; p < size; p++) x[p] = Math.fround(images.data[k * size + p] / 255);
    dense(x, net.W1, net.b1, z1, sigmoid);
    dense(z1, net.W2, net.b2, z2, sigmoid);
    dense(z2, net.W3, net.b3, a3, identity);
    const y = softmax(a3);
    let best = 0;
    for (let j = 1; j < y.length; j++) if (y[j] > y[best]) best = j;
    if (best === labels.data[k]) correct++;
  }
  console.log(`accuracy ${(correct / count).toFixed(4)} (${correct}/${count})`);
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  if (!(e instanceof InputError || e.code === "ENOENT" || e instanceof SyntaxError ||
        e.code === "Z_DATA_ERROR")) throw e;
  console.error(`error: ${e.message}`);
  process.exitCode = 1;
}
