// Readers for weight files and MNIST, in plain JavaScript: the same module runs in a web
// page (examples/web/index.html) and in Node.js (examples/js/accuracy.mjs). It uses no
// API of either: bytes come in as an ArrayBuffer or Uint8Array, already decompressed.
//
// readWeights(bytes, name)   a weightstore JSON document (docs/formats.md, "JSON") or a
//                            safetensors file (8-byte little-endian header length, JSON
//                            header, one little-endian buffer), told apart by their first
//                            bytes; returns Map name -> {dtype, shape, values: Float32Array}
// readIdx(bytes, name, magic, ndim)   an IDX file (the MNIST test set): {dims, data}
//
// Checksums: where a file carries weightstore's CRC-32s (docs/formats.md), each tensor's
// is checked: for safetensors over its raw bytes, for JSON over the values rebuilt in
// the tensor's dtype (float32 and float64 without NaN payloads; other tensors are reported
// as unchecked).
// Every error is an InputError whose message names the file, the field, what was
// expected and what was found.

export class InputError extends Error {}

function fail(name, field, expected, found) {
  return new InputError(`${name}: ${field}: expected ${expected}, found ${found}`);
}

// --- CRC-32 (zlib's) ------------------------------------------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** zlib's CRC-32 of a Uint8Array, as 8 lowercase hex digits. */
export function crc32Hex(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ((c ^ 0xffffffff) >>> 0).toString(16).padStart(8, "0");
}

// --- values ---------------------------------------------------------------------------

/** float16 bits to a number (exact). */
function halfToNumber(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

// safetensors dtype code -> [weightstore dtype name, bytes per value, reader at byte offset].
const SAFETENSORS_DTYPES = {
  F64: ["float64", 8, (v, o) => v.getFloat64(o, true)],
  F32: ["float32", 4, (v, o) => v.getFloat32(o, true)],
  F16: ["float16", 2, (v, o) => halfToNumber(v.getUint16(o, true))],
  BF16: ["bfloat16", 2, (v, o) => {
    const f = new DataView(new ArrayBuffer(4));
    f.setUint32(0, v.getUint16(o, true) << 16, false);
    return f.getFloat32(0, false);
  }],
  I64: ["int64", 8, (v, o) => Number(v.getBigInt64(o, true))],
  U64: ["uint64", 8, (v, o) => Number(v.getBigUint64(o, true))],
  I32: ["int32", 4, (v, o) => v.getInt32(o, true)],
  U32: ["uint32", 4, (v, o) => v.getUint32(o, true)],
  I16: ["int16", 2, (v, o) => v.getInt16(o, true)],
  U16: ["uint16", 2, (v, o) => v.getUint16(o, true)],
  I8: ["int8", 1, (v, o) => v.getInt8(o)],
  U8: ["uint8", 1, (v, o) => v.getUint8(o)],
  BOOL: ["bool", 1, (v, o) => v.getUint8(o)],
};

const isCount = (d) => Number.isSafeInteger(d) && d >= 0;

function checkShape(shape, name, field) {
  if (!Array.isArray(shape) || shape.length > 64 || !shape.every(isCount)) {
    throw fail(name, `${field} shape`, "a list of at most 64 non-negative integers",
      JSON.stringify(shape));
  }
  return shape.reduce((a, b) => a * b, 1);
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("expected an ArrayBuffer or a Uint8Array");
}

/** Whether bytes look like a safetensors file: a small length, then '{' at byte 8. */
export function isSafetensors(bytes) {
  const b = asBytes(bytes);
  if (b.length < 10 || b[8] !== 0x7b) return false;
  return b[4] === 0 && b[5] === 0 && b[6] === 0 && b[7] === 0;
}

/** The tensors of a weights file (weightstore JSON or safetensors), by name. */
export function readWeights(data, name) {
  const bytes = asBytes(data);
  return isSafetensors(bytes) ? readSafetensors(bytes, name) : readWeightstoreJson(bytes, name);
}

// --- weightstore JSON -----------------------------------------------------------------

/** The tensors of a weightstore.json version 1 document (docs/formats.md). */
export function readWeightstoreJson(data, name) {
  let doc;
  try {
    doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(asBytes(data)));
  } catch (e) {
    throw fail(name, "document", "a weightstore JSON document or a safetensors file",
      `${e.name}: ${e.message}`);
  }
  if (doc === null || typeof doc !== "object" || doc.format !== "weightstore.json" ||
      doc.version !== 1) {
    throw fail(name, "format/version", '"weightstore.json" version 1',
      `${JSON.stringify(doc?.format)} version ${JSON.stringify(doc?.version)}`);
  }
  if (!Array.isArray(doc.tensors)) {
    throw fail(name, "tensors", "an array", JSON.stringify(typeof doc.tensors));
  }
  const tensors = new Map();
  const unchecked = [];
  for (const [i, t] of doc.tensors.entries()) {
    const field = `tensor ${typeof t?.name === "string" ? t.name : `#${i}`}`;
    if (typeof t?.name !== "string" || tensors.has(t.name)) {
      throw fail(name, `${field} name`, "a string used once", JSON.stringify(t?.name));
    }
    const count = checkShape(t.shape, name, field);
    // data nests one list level per dimension (a bare value for 0-d); strings are
    // "NaN", "Infinity", "-Infinity", "NaN(0x..)" or big integers: Number() reads them.
    if (t.shape.length > 0 && !Array.isArray(t.data)) {
      throw fail(name, `${field} data`, `nested arrays for shape [${t.shape}]`,
        JSON.stringify(t.data)?.slice(0, 40));
    }
    const flat = t.shape.length === 0 ? [t.data] : t.data.flat(t.shape.length - 1);
    if (flat.length !== count) {
      throw fail(name, `${field} data`, `${count} values for shape [${t.shape}]`,
        `${flat.length}`);
    }
    const values = Float32Array.from(flat, Number);
    if (t.crc32 !== undefined) {
      // JavaScript has one NaN: a NaN written with its own bits ("NaN(0x...)") cannot be
      // rebuilt, so such a tensor's checksum goes unchecked, as do other dtypes'.
      const payload = flat.some((v) => typeof v === "string" && v.startsWith("NaN("));
      const exact = payload ? null : t.dtype === "float32" ? values
        : t.dtype === "float64" ? Float64Array.from(flat, Number) : null;
      if (exact === null) {
        unchecked.push(t.name);
      } else {
        const got = crc32Hex(littleEndianBytes(exact));
        if (got !== t.crc32) {
          throw fail(name, `${field} crc32`, `${t.crc32} (the file is damaged)`, got);
        }
      }
    }
    tensors.set(t.name, { dtype: t.dtype, shape: t.shape, values });
  }
  tensors.unchecked = unchecked;
  return tensors;
}

/** The bytes of a Float32Array or Float64Array, little-endian. */
function littleEndianBytes(array) {
  const size = array.BYTES_PER_ELEMENT;
  const out = new DataView(new ArrayBuffer(array.length * size));
  for (let i = 0; i < array.length; i++) {
    if (size === 4) out.setFloat32(i * 4, array[i], true);
    else out.setFloat64(i * 8, array[i], true);
  }
  return new Uint8Array(out.buffer);
}

// --- safetensors ----------------------------------------------------------------------

/** Bytes a safetensors header may take (the format's own readers use 100 MB). */
const MAX_HEADER = 100_000_000;

/** The tensors of a safetensors file, in weightstore's order when it recorded one. */
export function readSafetensors(data, name) {
  const bytes = asBytes(data);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 8) throw fail(name, "header length", "8 bytes", `${bytes.length} bytes`);
  const length = view.getBigUint64(0, true);
  if (length > BigInt(Math.min(MAX_HEADER, bytes.length - 8))) {
    throw fail(name, "header length", `at most ${Math.min(MAX_HEADER, bytes.length - 8)} bytes`,
      `${length}`);
  }
  const headerEnd = 8 + Number(length);
  let header;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true })
      .decode(bytes.subarray(8, headerEnd)));
  } catch (e) {
    throw fail(name, "header", "a UTF-8 JSON object", `${e.name}: ${e.message}`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw fail(name, "header", "a JSON object", JSON.stringify(header).slice(0, 40));
  }
  const metadata = header.__metadata__ ?? {};
  const buffer = bytes.subarray(headerEnd);
  const entries = [];
  for (const [key, entry] of Object.entries(header)) {
    if (key === "__metadata__") continue;
    const field = `tensor ${key}`;
    const dtype = SAFETENSORS_DTYPES[entry?.dtype];
    if (!dtype) {
      throw fail(name, `${field} dtype`, `one of ${Object.keys(SAFETENSORS_DTYPES).join(" ")}`,
        JSON.stringify(entry?.dtype));
    }
    const count = checkShape(entry.shape, name, field);
    const offsets = entry.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) ||
        offsets[1] - offsets[0] !== count * dtype[1] || offsets[1] > buffer.length) {
      throw fail(name, `${field} data_offsets`,
        `[begin, begin + ${count * dtype[1]}] within the ${buffer.length}-byte buffer`,
        JSON.stringify(offsets));
    }
    entries.push({ key, entry, dtype, count, begin: offsets[0], end: offsets[1] });
  }
  // The tensors tile the buffer exactly: no gap, no overlap, nothing after.
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin);
  let at = 0;
  for (const e of byOffset) {
    if (e.begin !== at) {
      throw fail(name, `tensor ${e.key} data_offsets`, `to begin at byte ${at}`, e.begin);
    }
    at = e.end;
  }
  if (at !== buffer.length) throw fail(name, "data buffer", `${at} bytes`, buffer.length);

  const crcs = metadata["weightstore.crc32"] ? JSON.parse(metadata["weightstore.crc32"]) : {};
  const order = metadata["weightstore.order"] ? JSON.parse(metadata["weightstore.order"])
    : byOffset.map((e) => e.key);
  const byName = new Map(entries.map((e) => [e.key, e]));
  if (order.length !== entries.length || !order.every((k) => byName.has(k))) {
    throw fail(name, "__metadata__ weightstore.order", "the header's tensor names",
      JSON.stringify(order).slice(0, 80));
  }
  const tensors = new Map();
  for (const key of order) {
    const { entry, dtype, count, begin, end } = byName.get(key);
    const raw = buffer.subarray(begin, end);
    if (key in crcs && crc32Hex(raw) !== crcs[key]) {
      throw fail(name, `tensor ${key} crc32`, `${crcs[key]} (the file is damaged)`,
        crc32Hex(raw));
    }
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const values = new Float32Array(count);
    for (let i = 0; i < count; i++) values[i] = dtype[2](dv, i * dtype[1]);
    tensors.set(key, { dtype: dtype[0], shape: entry.shape, values });
  }
  tensors.unchecked = order.filter((k) => !(k in crcs));
  return tensors;
}

// --- MNIST ----------------------------------------------------------------------------

/** An IDX file (not compressed): its dimensions and the uint8 payload. */
export function readIdx(data, name, magic, ndim) {
  const bytes = asBytes(data);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const head = 4 + 4 * ndim;
  if (bytes.length < head || view.getUint32(0, false) !== magic) {
    throw fail(name, "magic", `an IDX file with magic ${magic}`,
      bytes.length < 4 ? `${bytes.length} bytes` : view.getUint32(0, false));
  }
  const dims = [];
  for (let d = 0; d < ndim; d++) dims.push(view.getUint32(4 + 4 * d, false));
  const count = dims.reduce((a, b) => a * b, 1);
  if (bytes.length - head !== count) {
    throw fail(name, "data", `${count} bytes for [${dims}]`, `${bytes.length - head}`);
  }
  return { dims, data: bytes.subarray(head) };
}
