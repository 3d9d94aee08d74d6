// Accuracy of the book's 3-layer network on the MNIST test set, in Node.js alone.
//
// Usage: node examples/js/accuracy.mjs WEIGHTS MNIST_DIR
//
// WEIGHTS is weights saved by weightstore as JSON (weightstore.json v1, see
// docs/formats.md) or as safetensors; MNIST_DIR holds t10k-images-idx3-ubyte.gz and
// t10k-labels-idx1-ubyte.gz. Only Node's standard library is used (fs, zlib, path), and
// the plain-JavaScript modules that the web page examples/web/ runs in a browser:
// ../web/weightfiles.mjs reads the files, ../web/mlp.mjs is the network, in float32
// as in the book (each dot product summed in double precision, rounded once).

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";

import { checkTestSet, evaluateRange, networkFrom } from "../web/mlp.mjs";
import { InputError, readIdx, readWeights } from "../web/weightfiles.mjs";

function main(argv) {
  if (argv.length !== 2) {
    console.error("usage: node accuracy.mjs WEIGHTS MNIST_DIR");
    return 2;
  }
  const [weightsPath, mnistDir] = argv;
  const net = networkFrom(readWeights(readFileSync(weightsPath), weightsPath), weightsPath);
  const idx = (file, magic, ndim) =>
    readIdx(gunzipSync(readFileSync(join(mnistDir, file))), file, magic, ndim);
  const images = idx("t10k-images-idx3-ubyte.gz", 2051, 3);
  const labels = idx("t10k-labels-idx1-ubyte.gz", 2049, 1);
  const { count } = checkTestSet(net, images, labels);
  const { correct } = evaluateRange(net, images, labels, 0, count);
  console.log(`accuracy ${(correct / count).toFixed(4)} (${correct}/${count})`);
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  if (!(e instanceof InputError || e.code === "ENOENT" || e.code === "Z_DATA_ERROR")) throw e;
  console.error(`error: ${e.message}`);
  process.exitCode = 1;
}
