// The page of examples/web/index.html: load weights, draw digits, evaluate the test set.
//
// Query parameters (both optional): ?weights=URL of a weightstore JSON or safetensors file
// (default weights.json beside the page), &mnist=URL of a folder holding the MNIST test
// set's t10k-*-ubyte.gz files (default mnist/). Relative URLs are against the page.

import { argmax, checkTestSet, evaluateRange, imageInput, networkFrom, predict } from "./mlp.mjs";
import { InputError, isSafetensors, readIdx, readWeights } from "./weightfiles.mjs";

const $ = (id) => document.getElementById(id);
const state = { net: null, source: "", testSet: null, testSetUrl: "", pixels: null };

function showError(e) {
  $("error").textContent = e instanceof InputError || e instanceof HttpError
    ? e.message : `${e.name}: ${e.message}`;
}

class HttpError extends Error {}

async function fetchBytes(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new HttpError(`${url}: could not be fetched (${e.message})`);
  }
  if (!response.ok) throw new HttpError(`${url}: HTTP ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** gzip data decompressed (bytes that are not gzip, e.g. already decoded, pass as they are). */
async function gunzip(bytes) {
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// --- weights --------------------------------------------------------------------------

function useWeights(bytes, name) {
  const tensors = readWeights(bytes, name);
  const net = networkFrom(tensors, name);
  if (net.inputs !== 784 || net.outputs !== 10) {
    throw new InputError(`${name}: W1 and W3: expected 784 inputs and 10 outputs (MNIST), ` +
      `found ${net.inputs} and ${net.outputs}`);
  }
  state.net = net;
  state.source = name;
  const kind = isSafetensors(bytes) ? "safetensors" : "weightstore JSON";
  const list = [...tensors].map(([k, t]) => `${k} [${t.shape}] ${t.dtype}`).join(", ");
  const total = [...tensors.values()].reduce((s, t) => s + t.values.length, 0);
  const checks = tensors.unchecked.length === 0 ? "every checksum verified"
    : tensors.unchecked.length === tensors.size ? "no checksums in the file"
      : `checksums verified except ${tensors.unchecked.join(", ")}`;
  $("weights-status").textContent = `${name}: ${kind}, ${bytes.length.toLocaleString("en")} ` +
    `bytes, ${total.toLocaleString("en")} values (${list}); ${checks}.`;
  document.body.dataset.weights = kind;
  $("accuracy").textContent = "";
  classifyCurrent();
}

async function loadUrl(url) {
  $("error").textContent = "";
  document.body.dataset.weights = "";
  $("weights-status").textContent = `Loading ${url} ...`;
  try {
    useWeights(await fetchBytes(url), url);
  } catch (e) {
    $("weights-status").textContent = "No weights loaded.";
    showError(e);
  }
}

async function loadFile(file) {
  $("error").textContent = "";
  try {
    useWeights(new Uint8Array(await file.arrayBuffer()), file.name);
  } catch (e) {
    showError(e);
  }
}

// --- drawing --------------------------------------------------------------------------

const canvas = $("canvas");
const ctx = canvas.getContext("2d", { willReadFrequently: true });
const SCALE = canvas.width / 28;

function clearCanvas() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  state.pixels = null;
  $("prediction").textContent = "";
  $("prediction").dataset.digit = "";
  $("probs").textContent = "";
  $("preview").getContext("2d").clearRect(0, 0, 28, 28);
}

/**
 * The drawing as MNIST's 28x28 input: the ink's bounding box scaled into 20x20 (aspect
 * kept, area-averaged), placed so that its centre of mass is at the middle. Null when
 * nothing is drawn.
 */
function drawingToPixels() {
  const { width, height } = canvas;
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const ink = new Float32Array(width * height);
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = rgba[(y * width + x) * 4]; // red channel: white ink on black
      ink[y * width + x] = v;
      if (v > 0) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
    }
  }
  if (x1 < 0) return null;
  const bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  const s = 20 / Math.max(bw, bh);
  const box = new Float64Array(28 * 28);
  const weight = new Float64Array(28 * 28);
  const ox = (28 - bw * s) / 2, oy = (28 - bh * s) / 2;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const tx = Math.min(27, Math.floor(ox + (x - x0 + 0.5) * s));
      const ty = Math.min(27, Math.floor(oy + (y - y0 + 0.5) * s));
      box[ty * 28 + tx] += ink[y * width + x];
      weight[ty * 28 + tx] += 1;
    }
  }
  let mass = 0, mx = 0, my = 0;
  for (let i = 0; i < box.length; i++) {
    if (weight[i]) box[i] /= weight[i];
    mass += box[i]; mx += box[i] * (i % 28); my += box[i] * Math.floor(i / 28);
  }
  const dx = Math.round(13.5 - mx / mass), dy = Math.round(13.5 - my / mass);
  const pixels = new Uint8Array(28 * 28);
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      const sx = x - dx, sy = y - dy;
      if (sx >= 0 && sx < 28 && sy >= 0 && sy < 28) pixels[y * 28 + x] = Math.round(box[sy * 28 + sx]);
    }
  }
  return pixels;
}

function paintDigit(target, pixels, scale) {
  const c = target.getContext("2d");
  const img = c.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    img.data.set([pixels[i], pixels[i], pixels[i], 255], i * 4);
  }
  if (scale === 1) { c.putImageData(img, 0, 0); return; }
  const tmp = document.createElement("canvas");
  tmp.width = tmp.height = 28;
  tmp.getContext("2d").putImageData(img, 0, 0);
  c.imageSmoothingEnabled = false;
  c.drawImage(tmp, 0, 0, 28 * scale, 28 * scale);
}

function classify(pixels) {
  state.pixels = pixels;
  paintDigit($("preview"), pixels, 1);
  if (!state.net) {
    $("prediction").textContent = "?";
    $("probs").textContent = "load weights first";
    return;
  }
  const y = predict(state.net, imageInput(pixels, 0, 784));
  const best = argmax(y);
  $("prediction").textContent = String(best);
  $("prediction").dataset.digit = String(best);
  $("probs").dataset.values = JSON.stringify(Array.from(y));
  $("probs").replaceChildren(...Array.from(y).flatMap((p, d) => {
    const label = document.createElement("span");
    label.textContent = d;
    const bar = document.createElement("div");
    bar.className = d === best ? "bar best" : "bar";
    const fill = document.createElement("div");
    fill.style.width = `${(p * 100).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.textContent = p.toFixed(3);
    return [label, bar, value];
  }));
}

function classifyCurrent() {
  if (state.pixels) classify(state.pixels);
}

let drawing = false;
canvas.addEventListener("pointerdown", (e) => {
  drawing = true;
  canvas.setPointerCapture(e.pointerId);
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 22;
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(e.offsetX, e.offsetY);
  ctx.lineTo(e.offsetX + 0.01, e.offsetY);
  ctx.stroke();
});
canvas.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  ctx.lineTo(e.offsetX, e.offsetY);
  ctx.stroke();
});
for (const type of ["pointerup", "pointercancel"]) {
  canvas.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    const pixels = drawingToPixels();
    if (pixels) classify(pixels);
  });
}

// --- the test set ---------------------------------------------------------------------

async function testSet() {
  let base = $("mnist-url").value.trim();
  if (!base.endsWith("/")) base += "/";
  if (state.testSet && state.testSetUrl === base) return state.testSet;
  $("mnist-status").textContent = `Loading the test set from ${base} ...`;
  const idx = async (file, magic, ndim) =>
    readIdx(await gunzip(await fetchBytes(base + file)), base + file, magic, ndim);
  const [images, labels] = await Promise.all([idx("t10k-images-idx3-ubyte.gz", 2051, 3),
    idx("t10k-labels-idx1-ubyte.gz", 2049, 1)]);
  state.testSet = { images, labels };
  state.testSetUrl = base;
  $("mnist-status").textContent = `${images.dims[0].toLocaleString("en")} test images from ${base}`;
  return state.testSet;
}

async function showTestImage() {
  $("error").textContent = "";
  try {
    const { images, labels } = await testSet();
    const k = Number($("test-index").value);
    if (!Number.isInteger(k) || k < 0 || k >= images.dims[0]) {
      throw new InputError(`test image #: expected 0 to ${images.dims[0] - 1}, found ${$("test-index").value}`);
    }
    const pixels = images.data.slice(k * 784, (k + 1) * 784);
    paintDigit(canvas, pixels, SCALE);
    classify(pixels);
    $("draw-status").textContent = `test image #${k}, labelled ${labels.data[k]}`;
  } catch (e) {
    showError(e);
  }
}

async function evaluateAll() {
  $("error").textContent = "";
  $("accuracy").textContent = "";
  $("mistakes").textContent = "";
  if (!state.net) { showError(new InputError("weights: expected loaded weights, found none")); return; }
  const button = $("evaluate");
  button.disabled = true;
  document.body.dataset.evaluating = "yes";
  try {
    const { images, labels } = await testSet();
    const net = state.net;
    const { count } = checkTestSet(net, images, labels);
    const start = performance.now();
    let correct = 0;
    const wrong = [];
    const CHUNK = 500;
    for (let from = 0; from < count; from += CHUNK) {
      const part = evaluateRange(net, images, labels, from, Math.min(count, from + CHUNK));
      correct += part.correct;
      wrong.push(...part.wrong);
      $("progress").value = Math.min(count, from + CHUNK) / count;
      $("progress-text").textContent = `${Math.min(count, from + CHUNK)} / ${count}`;
      await new Promise((resolve) => setTimeout(resolve, 0)); // let the page repaint
    }
    const seconds = (performance.now() - start) / 1000;
    const text = `accuracy ${(correct / count).toFixed(4)} (${correct}/${count})`;
    $("accuracy").textContent = text;
    $("accuracy").dataset.correct = String(correct);
    $("accuracy").dataset.count = String(count);
    $("mnist-status").textContent = `${state.source}: ${count.toLocaleString("en")} images in ` +
      `${seconds.toFixed(2)} s; ${wrong.length} misclassified, the first ones below (click one).`;
    console.log(`${state.source}: ${text}`);
    showMistakes(wrong.slice(0, 24), images, labels);
  } catch (e) {
    showError(e);
  } finally {
    button.disabled = false;
    document.body.dataset.evaluating = "";
  }
}

function showMistakes(indices, images, labels) {
  $("mistakes").replaceChildren(...indices.map((k) => {
    const pixels = images.data.subarray(k * 784, (k + 1) * 784);
    const figure = document.createElement("figure");
    const c = document.createElement("canvas");
    c.width = c.height = 28;
    c.style.width = c.style.height = "42px";
    paintDigit(c, pixels, 1);
    const y = argmax(predict(state.net, imageInput(pixels, 0, 784)));
    const caption = document.createElement("figcaption");
    caption.textContent = `${labels.data[k]}→${y}`;
    caption.title = `test image #${k}: label ${labels.data[k]}, predicted ${y}`;
    figure.append(c, caption);
    figure.addEventListener("click", () => { $("test-index").value = k; showTestImage(); });
    return figure;
  }));
}

// --- wiring ---------------------------------------------------------------------------

$("load").addEventListener("click", () => loadUrl($("weights-url").value.trim()));
$("weights-file").addEventListener("change", (e) => {
  if (e.target.files.length) loadFile(e.target.files[0]);
});
$("clear").addEventListener("click", () => {
  clearCanvas();
  $("draw-status").textContent = "";
});
$("show-test").addEventListener("click", showTestImage);
$("evaluate").addEventListener("click", evaluateAll);

const params = new URLSearchParams(location.search);
if (params.has("mnist")) $("mnist-url").value = params.get("mnist");
if (params.has("weights")) $("weights-url").value = params.get("weights");
clearCanvas();
document.body.dataset.ready = "yes";
loadUrl($("weights-url").value.trim());
