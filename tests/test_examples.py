"""The examples/ programs, run as a user would run them, where their tool is installed."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import weightstore
from weightstore import Weights
from weightstore.errors import OptionError
from weightstore.lab.interop.mnist import write_image_csv
from weightstore.model import arrays_identical

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NODE = shutil.which("node")
SQLITE3 = shutil.which("sqlite3")
#: The book's accuracy with sample_weight.pkl on the 10,000 test images.
BOOK_ACCURACY = 0.9352


def _sqlite_has_math() -> bool:
    if SQLITE3 is None:
        return False
    done = subprocess.run([SQLITE3, ":memory:", "select exp(1)"], capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.startswith("2.718")


needs_node = pytest.mark.skipif(NODE is None, reason="node (Node.js) is not on PATH")
needs_sqlite3 = pytest.mark.skipif(
    not _sqlite_has_math(),
    reason="sqlite3 is not on PATH, or was built without math functions (exp)",
)
needs_pandas = pytest.mark.skipif(importlib.util.find_spec("pandas") is None,
                                  reason="pandas is not installed")


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)


# --- Node.js ------------------------------------------------------------------------------

@needs_node
@pytest.mark.parametrize("name", ["book.json", "book.safetensors"])
def test_node_accuracy_from_our_json_and_safetensors(name: str, tmp_path: Path,
                                                     sample_weight_path: Path,
                                                     data_dir: Path) -> None:
    # the readers examples/web/ runs in the browser: JSON.parse, and a DataView for safetensors
    weights = tmp_path / name
    weightstore.save(weightstore.load(sample_weight_path), weights)
    done = _run([NODE, str(EXAMPLES / "js" / "accuracy.mjs"), str(weights),
                 str(data_dir / "mnist")])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"accuracy {BOOK_ACCURACY:.4f} (9352/10000)"


@needs_node
def test_node_reads_float64_and_indented_json(tmp_path: Path, sample_weight_path: Path,
                                              data_dir: Path) -> None:
    # float64 weights hold the float32 values exactly, so the accuracy is the same.
    w = weightstore.load(sample_weight_path)
    w64 = Weights({k: v.astype(np.float64) for k, v in w.items()})
    weights = tmp_path / "book64.json"
    weightstore.save(w64, weights, indent=True)
    done = _run([NODE, str(EXAMPLES / "js" / "accuracy.mjs"), str(weights),
                 str(data_dir / "mnist")])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "accuracy 0.9352 (9352/10000)"


def _safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


_READ_WEIGHTS = """
import { readFileSync } from "node:fs";
import { readWeights } from "MODULE";
const path = process.argv[1];
try {
  const t = readWeights(readFileSync(path), path);
  console.log(JSON.stringify(process.argv[2] === "unchecked" ? t.unchecked
    : [...t].map(([k, v]) => [k, v.dtype, v.shape, Array.from(v.values)])));
} catch (e) { console.log("error: " + e.message); }
""".replace("MODULE", (EXAMPLES / "web" / "weightfiles.mjs").as_uri())


def _node_read(path: Path, what: str = "tensors") -> str:
    """What examples/web/weightfiles.mjs reads from *path*, as JSON, or its error."""
    done = _run([NODE, "--input-type=module", "-e", _READ_WEIGHTS, str(path), what])
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@needs_node
@pytest.mark.parametrize(("header", "data", "expected"), [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
     np.array([1.5, -2], "<f4").tobytes(), [["a", "float32", [2], [1.5, -2]]]),
    ({"h": {"dtype": "F16", "shape": [3], "data_offsets": [0, 6]}},  # -inf: null in JSON
     np.array([0.5, -np.inf, 6e-8], "<f2").tobytes(), [["h", "float16", [3], [0.5, None, 2**-24]]]),
    ({"b": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}},
     np.array([0x3F80, 0xC0A0], "<u2").tobytes(), [["b", "bfloat16", [2], [1.0, -5.0]]]),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 12,
     "error: {path}: data buffer: expected 8 bytes, found 12"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12,
     "error: {path}: tensor a data_offsets: expected to begin at byte 0, found 4"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8,
     "error: {path}: tensor a data_offsets: expected [begin, begin + 12] within the 8-byte "
     "buffer, found [0,8]"),
    ({"a": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}, b"\0",
     "error: {path}: tensor a dtype: expected one of F64 F32 F16 BF16 I64 U64 I32 U32 I16 U16 "
     'I8 U8 BOOL, found "F8_E4M3"'),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, b"",
     "error: {path}: tensor a shape: expected a list of at most 64 non-negative integers, "
     "found [-1]"),
])
def test_web_readers_check_safetensors(tmp_path: Path, header: dict, data: bytes,
                                       expected: str | list) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(_safetensors_bytes(header, data))
    got = _node_read(path)
    if isinstance(expected, list):
        assert json.loads(got) == expected
    else:
        assert got == expected.format(path=path)


@needs_node
def test_web_readers_refuse_a_header_longer_than_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes((1000).to_bytes(8, "little") + b'{"a": 1}')
    assert _node_read(path) == (f"error: {path}: header length: expected at most 8 bytes, "
                                   "found 1000")


@needs_node
def test_web_readers_verify_json_checksums(tmp_path: Path) -> None:
    nan_payload = np.array([0x7FC00001], np.uint32).view(np.float32)[0]
    w = Weights({"a": np.array([1, np.nan, nan_payload], np.float32),
                 "b": np.array([0.1, np.nan], np.float64), "c": np.array([1, 2], np.int8)})
    path = tmp_path / "w.json"
    weightstore.save(w, path)
    # a NaN payload cannot be rebuilt in JavaScript, int8 is not rebuilt: both unchecked
    assert json.loads(_node_read(path, "unchecked")) == ["a", "c"]
    path.write_text(path.read_text().replace("0.1,", "0.2,"))
    got = _node_read(path, "unchecked")
    assert got.startswith(f"error: {path}: tensor b crc32: expected ")
    assert "(the file is damaged), found " in got


@needs_node
def test_node_reports_bad_input_without_a_trace(tmp_path: Path, data_dir: Path) -> None:
    script = str(EXAMPLES / "js" / "accuracy.mjs")
    done = _run([NODE, script])
    assert done.returncode == 2 and "usage" in done.stderr
    wrong = tmp_path / "w.json"
    weightstore.save({"W1": np.zeros((784, 5), np.float32)}, wrong)
    done = _run([NODE, script, str(wrong), str(data_dir / "mnist")])
    assert done.returncode == 1
    assert done.stderr.startswith("error:") and "W1 and b1" in done.stderr
    done = _run([NODE, script, str(tmp_path / "missing.json"), str(data_dir / "mnist")])
    assert done.returncode == 1 and "ENOENT" in done.stderr


# --- sqlite3 ------------------------------------------------------------------------------

def _sql_scores(workdir: Path) -> np.ndarray:
    with open(EXAMPLES / "sql" / "scores.sql") as script:
        done = _run([SQLITE3, ":memory:"], stdin=script, cwd=workdir)
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(done.stdout.splitlines()))
    assert rows[0] == ["class", "score"]
    assert [int(r[0]) for r in rows[1:]] == list(range(10))
    return np.array([float(r[1]) for r in rows[1:]])


@needs_sqlite3
def test_sql_scores_match_python(tmp_path: Path, sample_weight_path: Path,
                                 data_dir: Path) -> None:
    from net.mlp import predict
    from net.mnist import load_test_set

    weights = weightstore.load(sample_weight_path)
    weightstore.save(weights, tmp_path / "weights.csv")
    x, labels = load_test_set(data_dir, download=False)
    expected = predict(dict(weights), x)
    wrong = int(np.argmax(expected.argmax(axis=1) != labels))  # first misclassified image
    for index in (0, 1, wrong, 9999):
        label = write_image_csv(index, tmp_path / "image.csv", data_dir=data_dir)
        assert label == labels[index]
        scores = _sql_scores(tmp_path)
        assert np.max(np.abs(scores - expected[index])) <= 1e-5, index
        assert scores.argmax() == expected[index].argmax()
        assert abs(scores.sum() - 1) <= 1e-9


def test_write_image_csv(tmp_path: Path, data_dir: Path) -> None:
    from net.mnist import load_test_set

    images, labels = load_test_set(data_dir, normalize=False, download=False)
    path = tmp_path / "img.csv"
    assert write_image_csv(123, path, data_dir=data_dir) == labels[123]
    raw = path.read_bytes()
    assert raw.startswith(b"index,pixel\r\n0,") and raw.endswith(b"\r\n")
    rows = list(csv.reader(raw.decode().splitlines()))[1:]
    assert [int(i) for i, _ in rows] == list(range(784))
    assert [int(v) for _, v in rows] == images[123].reshape(-1).tolist()
    for bad in (-1, 10_000, True, 1.0, "3"):
        with pytest.raises(OptionError, match="image index"):
            write_image_csv(bad, tmp_path / "bad.csv", data_dir=data_dir)  # type: ignore[arg-type]
    assert not (tmp_path / "bad.csv").exists()


# --- pandas -------------------------------------------------------------------------------

def _pandas_corpus() -> Weights:
    rng = np.random.default_rng(11)
    return Weights({
        "W": rng.standard_normal((4, 3)).astype(np.float32),
        "g/b": np.array([True, False, True]),
        "i8": np.array([-128, 0, 127], np.int8),
        "u64": np.array([0, 2**64 - 1], np.uint64),
        "i64": np.array([-(2**63), 2**63 - 1], np.int64),
        "f16": np.array([0.1, np.inf, -np.inf, np.nan, -0.0], np.float16),
        "f64": np.array([5e-324, 1.7976931348623157e308, 0.1]),
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((3, 0), np.int16),
        "t3": np.arange(24, dtype=np.uint16).reshape(2, 3, 4),
    }, metadata={"source": "pandas test", "comma, \"quote\"": "x"})


@needs_pandas
def test_pandas_rebuilds_every_array_bit_for_bit(tmp_path: Path) -> None:
    w = _pandas_corpus()
    weightstore.save(w, tmp_path / "w.csv")
    done = _run([sys.executable, str(EXAMPLES / "pandas" / "load_csv.py"), str(tmp_path / "w.csv"),
                 str(tmp_path / "out.npz")])
    assert done.returncode == 0, done.stderr
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == list(w)
    with np.load(tmp_path / "out.npz") as back:
        assert list(back) == list(w)
        for name in w:
            assert arrays_identical(back[name], w[name]), name


@needs_pandas
def test_pandas_loads_the_books_weights(tmp_path: Path, sample_weight_path: Path) -> None:
    w = weightstore.load(sample_weight_path)
    weightstore.save(w, tmp_path / "book.csv")
    sys.path.insert(0, str(EXAMPLES / "pandas"))
    try:
        from load_csv import load_csv
    finally:
        sys.path.remove(str(EXAMPLES / "pandas"))
    arrays = load_csv(str(tmp_path / "book.csv"))
    assert list(arrays) == list(w)
    assert all(arrays_identical(arrays[k], w[k]) for k in w)
