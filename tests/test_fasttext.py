"""The text codecs' compiled paths (weightstore/codecs/_fasttext.py) against their general
code: the same bytes written, the same values read bit for bit, the same kind of error
(a FormatError naming the file) for damaged files; and the text formats' lazy open."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import orjson
import pytest
from corpus import corpus, damaged_csv

import weightstore as ws
from weightstore.codec import DEFAULT_LIMITS
from weightstore.codecs import _fasttext, json_codec
from weightstore.codecs.csv_codec import CsvCodec, _read_blocks, _read_fast, _rows
from weightstore.codecs.json_codec import JsonCodec

pytest.importorskip("pyarrow", reason="the compiled path needs the 'text' extra")


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled path for tensors of any size (it is used from MIN_VALUES values on)."""
    monkeypatch.setattr(_fasttext, "MIN_VALUES", 0)


def _weights(big_rows: int = 300, ints: int = 999) -> ws.Weights:
    tensors, metadata = corpus()
    rng = np.random.default_rng(5)
    tensors["big"] = (rng.standard_normal((big_rows, 70)) * 0.02).astype(np.float32)
    tensors["big16"] = tensors["big"][:40].astype(np.float16)
    tensors["ints"] = rng.integers(-2**40, 2**40, ints).astype(np.int64)
    tensors["wide"] = rng.integers(0, 2**64 - 1, 50, dtype=np.uint64)
    return ws.Weights(tensors, metadata)


def _outcome(read, data: bytes):
    """What reading gives: the tensors' names, dtypes, shapes and bytes, or the error."""
    try:
        got = read(data)
    except ws.WeightstoreError as e:
        return ("error", type(e).__name__, "'f'" in str(e) or "f:" in str(e) or " f " in str(e))
    if got is None:
        return None
    return ("ok", list(got), [(got[k].dtype.str, got[k].shape, got[k].tobytes()) for k in got],
            dict(got.metadata))


def _both(data: bytes, fast, general, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_fasttext, "MIN_VALUES", 0)
    a = _outcome(fast, data)
    monkeypatch.setattr(_fasttext, "MIN_VALUES", 1 << 62)
    b = _outcome(general, data)
    return a, b


def test_csv_rows_are_the_same_bytes_both_ways() -> None:
    rng = np.random.default_rng(2)
    from weightstore.codecs._text import value_text

    for values in (rng.standard_normal(1000).astype(np.float32), np.arange(-5, 5),
                   np.array([np.nan, np.inf, -0.0, 1e-45], np.float32), np.array([7.5]),
                   np.arange(2**40 - 20, 2**40 + 20, dtype=np.int64),
                   np.array([np.nan, 65504, -6e-8, 0.1], np.float16), np.array([True, False])):
        text = value_text(values)
        cache: dict = {}
        for start in (0, 7, 9_999_990, 2**40, 0, 7):  # the last two from the cache
            for prefix in (b"a/b,float32,9,", '"\u00e9,""x",float16,3x3,'.encode()):
                assert b"".join(_fasttext.csv_rows(prefix, start, text)) == \
                    b"".join(_fasttext.csv_rows(prefix, start, text, cache)) == \
                    _rows(prefix, start, text)


def test_csv_written_and_read_both_ways_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    weights = _weights()
    files = []
    for fast in (True, False):
        monkeypatch.setattr(_fasttext, "MIN_VALUES", 0 if fast else 1 << 62)
        buf = io.BytesIO()
        CsvCodec().write(weights, buf, path="f")
        files.append(buf.getvalue())
    assert files[0] == files[1]
    fast, general = _both(files[0], lambda d: CsvCodec().read(io.BytesIO(d), path="f"),
                          lambda d: CsvCodec().read(io.BytesIO(d), path="f"), monkeypatch)
    assert fast == general and fast[0] == "ok"
    got = CsvCodec().read(io.BytesIO(files[0]), path="f")
    assert got.equal(weights)


def test_csv_block_reader_agrees_with_the_run_reader_on_damaged_files(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The block reader with the compiled path gives what the run reader gives without it,
    on files with rows shuffled, duplicated, blanked or given odd values and line ends;
    Arrow parses the blocks in pieces of a few lines (each counted on its own)."""
    from weightstore.codecs import csv_codec

    monkeypatch.setattr(csv_codec, "_PIECE_BYTES", 300)
    # Smaller than the other tests' tensors: each damaged copy is read twice, and the
    # bigger ones (23,000 rows) only made most damage land in one long float block.
    weights = _weights(big_rows=40, ints=200)
    plain = ws.Weights({k: v for k, v in weights.items() if not any(c in k for c in ',"')})
    files = []
    for w in (weights, plain):
        buf = io.BytesIO()
        CsvCodec().write(w, buf, path="f")
        files.append(buf.getvalue())
    r = random.Random(7)
    edits = [b"x", b"e5", b".5", b"0", b" ", b",", b"-0", b"1e400", b"NaN", b"+1", b"1.0",
             b"99999999999999999999", b"nan", b"-nan", b"inf", b"0x10", b"1e", b"01"]
    compared = 0
    for _ in range(150):
        op, data = damaged_csv(files, r, edits, shuffle_all=False)
        fast, general = _both(data, lambda d: _read_blocks(d, "f", DEFAULT_LIMITS),
                              lambda d: _read_fast(d, "f", DEFAULT_LIMITS), monkeypatch)
        if fast is not None and general is not None:
            compared += 1
            assert fast == general, (op, data[:300])
    assert compared > 100


def test_csv_blocks_parsed_ahead_are_added_in_the_files_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole-file reader hands the next float blocks to Arrow before it adds the ones
    before them; the tensors still come in the file's order, and a damaged block found
    while later ones are being parsed is read as text from there, as the run reader reads
    it."""
    from weightstore.codecs import csv_codec

    monkeypatch.setattr(csv_codec, "_PIECE_BYTES", 150)
    monkeypatch.setattr(csv_codec, "_AHEAD", 12)  # pieces: each float block has 4
    monkeypatch.setattr(csv_codec, "_STEPS", 5)
    rng = np.random.default_rng(11)
    tensors: dict[str, np.ndarray] = {}
    for i in range(8):
        tensors[f"f{i}"] = (rng.standard_normal((4, 6)) * 0.02).astype(
            np.float32 if i % 2 else np.float16)
        tensors[f"i{i}"] = rng.integers(-9, 9, 5)
        tensors[f"e{i}"] = np.zeros((0, 3), np.float32)
    buf = io.BytesIO()
    CsvCodec().write(ws.Weights(tensors, {"k": "v"}), buf, path="f")
    data = buf.getvalue()
    log: list[str] = []
    parse_block, add_chunk = csv_codec._parse_block, csv_codec._Rows.add_chunk

    def logged_parse(pool, data, p, end, count, prefix, fields, *rest):
        log.append(f"parse {fields[0]}")
        return parse_block(pool, data, p, end, count, prefix, fields, *rest)

    def logged_add(self, name, *rest):
        log.append(f"add {name}")
        return add_chunk(self, name, *rest)

    monkeypatch.setattr(csv_codec, "_parse_block", logged_parse)
    monkeypatch.setattr(csv_codec._Rows, "add_chunk", logged_add)
    fast, general = _both(data, lambda d: _read_blocks(d, "f", DEFAULT_LIMITS),
                          lambda d: _read_fast(d, "f", DEFAULT_LIMITS), monkeypatch)
    assert fast == general and fast[0] == "ok" and fast[1] == list(tensors)
    assert log.index("parse f1") < log.index("add f0") < log.index("parse f2")  # ahead,
    # by at most five blocks and rows
    lines = data.split(b"\r\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(b"f5,"))
    for damaged in (lines[:at + 3] + [lines[at + 4], lines[at + 3]] + lines[at + 5:],  # order
                    lines[:at + 2] + [lines[at + 2].replace(b",f", b",F")] + lines[at + 3:],
                    lines[:at + 2] + [lines[at + 2] + b"x"] + lines[at + 3:]):
        fast, general = _both(b"\r\n".join(damaged), lambda d: _read_blocks(d, "f", DEFAULT_LIMITS),
                              lambda d: _read_fast(d, "f", DEFAULT_LIMITS), monkeypatch)
        assert fast == general and fast is not None


@pytest.mark.parametrize("layout", ["short-then-long", "long-then-short"])
def test_csv_block_end_is_found_however_far_off_the_guess(
        layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The search for a block's last line starts near where its first lines' lengths put
    it: values much shorter or longer after the first lines move the guess far below or
    beyond the last line, and the end found is still the right one; a copy of the last
    line further on is refused as before (read as text, as the run reader reads it)."""
    from weightstore.codecs import csv_codec

    monkeypatch.setattr(csv_codec, "_SAMPLE_BYTES", 2000)
    rng = np.random.default_rng(4)
    values = (rng.standard_normal(200_000) * 0.02).astype(np.float32)
    values[:1000 if layout == "short-then-long" else 1000:] = 0  # "0" against "-0.012..."
    tensors = {"a": values, "b": np.arange(5, dtype=np.float32)}
    buf = io.BytesIO()
    CsvCodec().write(ws.Weights(tensors), buf, path="f")
    data = buf.getvalue()
    first = data.index(b"\r\n") + 2
    prefix = b"a,float32,200000,"
    end = data.index(b"\r\nb,") + 2
    guess = csv_codec._last_line_guess(data, first, prefix, 200_000)
    last = data.rindex(b"\r\n", 0, end - 2) + 2
    assert abs(guess - last) > (guess - first) // 32 + (1 << 20)  # beyond the slack
    assert csv_codec._block_end(data, first, prefix, 200_000) == end
    got = CsvCodec().read(io.BytesIO(data), path="f")
    assert got.equal(ws.Weights(tensors))
    copied = data + data[last:end]  # the last line again, after the other tensor
    fast, general = _both(copied, lambda d: _read_blocks(d, "f", DEFAULT_LIMITS),
                          lambda d: _read_fast(d, "f", DEFAULT_LIMITS), monkeypatch)
    assert fast == general


def _lines(indexes: list[bytes]) -> memoryview:
    return memoryview(b"".join(b"t,float32,9," + i + b",0.5\r\n" for i in indexes))


@pytest.mark.parametrize("bound", [1 << 22, 4], ids=["digits-compared", "beyond-the-bound"])
def test_csv_lines_take_only_the_plain_decimals_of_consecutive_indexes(
        bound: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A piece's index texts are checked against the plain decimals of 0, 1, 2, ... (or,
    beyond IndexDigits' bound, parsed): any other spelling of the same numbers -- a
    leading zero or plus, a space, hexadecimal, or the digits of 9, 10 split as 91, 0 --
    leaves the piece to the general reader."""
    monkeypatch.setattr(_fasttext, "INDEX_DIGITS_MAX", bound)
    digits = _fasttext.IndexDigits()
    plain = [b"%d" % i for i in range(7, 13)]  # across a power of ten
    got = _fasttext.csv_lines(_lines(plain), "float32", 6, digits)
    assert got is not None and got[0] == range(7, 13) and list(got[1]) == [0.5] * 6
    for damaged in ([b"07", *plain[1:]], [b"+7", *plain[1:]], [*plain[:2], b" 9", *plain[3:]],
                    [*plain[:3], b"0xa", *plain[4:]], [b"7", b"8", b"91", b"0", b"11", b"12"],
                    [b"7", b"8", b"9", b"10", b"12", b"11"], [b"-7", *plain[1:]],
                    [b"7", b"8", b"9", b"1", b"011", b"12"]):
        assert _fasttext.csv_lines(_lines(damaged), "float32", 6, digits) is None, damaged
    without = _fasttext.csv_lines(_lines(plain), "float32", 6)  # no digits: parsed
    assert without is not None and without[0] == got[0] and list(without[1]) == [0.5] * 6


def test_index_digits_are_made_once_at_the_size_asked_for() -> None:
    digits = _fasttext.IndexDigits()
    digits.want(120_000)
    text = digits.text(10)
    assert text is not None and len(text) == _fasttext.digits_before(120_000)
    assert text[:12].tobytes() == b"012345678910"
    assert digits.text(100_000) is text  # already made: the same array
    assert digits.text(_fasttext.INDEX_DIGITS_MAX + 1) is None


@pytest.mark.parametrize("name", ["w", "float32", "3x4", "'=x"])
def test_csv_block_fields_checked_by_arrow_as_the_run_reader_reads_them(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrow checks a float block's first three fields itself (the name as its null text,
    the dtype as its true text, the shape as its false text): a row whose name,
    dtype or shape differs, or has them swapped, or a bare CR, gives what the run reader
    gives; tensors named like a dtype or a shape included."""
    from weightstore.codecs import csv_codec

    monkeypatch.setattr(csv_codec, "_PIECE_BYTES", 200)
    rng = np.random.default_rng(3)
    weights = ws.Weights({name: (rng.standard_normal((3, 4)) * 0.02).astype(np.float32),
                          "b": np.arange(12, dtype=np.float32).reshape(3, 4)})
    buf = io.BytesIO()
    CsvCodec().write(weights, buf, path="f")
    data = buf.getvalue()
    lines = data.split(b"\r\n")
    written = lines[1].split(b",")[0]
    damaged = [data]
    for i in (1, 2, 7, 12):
        for change in ([written, b"float32", b"3x4"], [b"float32", written, b"3x4"],
                       [written, b"3x4", b"float32"], [b"3x4", b"float32", written],
                       [b"b", b"float32", b"3x4"], [written, b"float64", b"3x4"],
                       [written, b"float32", b"4x3"], [written, b"float32", b"3x4 "],
                       [written, b"", b"3x4"], [written, written, b"3x4"],
                       [written, b"3x4", b"3x4"], [written, b"float32", b"float32"],
                       [written, b"float32", written],
                       [written + b"\r" + written, b"float32", b"3x4"]):
            edited = list(lines)
            edited[i] = b",".join(change + edited[i].split(b",")[3:])
            damaged.append(b"\r\n".join(edited))
    for data in damaged:
        fast, general = _both(data, lambda d: _read_blocks(d, "f", DEFAULT_LIMITS),
                              lambda d: _read_fast(d, "f", DEFAULT_LIMITS), monkeypatch)
        assert fast == general, data
    assert _both(damaged[0], lambda d: _read_blocks(d, "f", DEFAULT_LIMITS),
                 lambda d: _read_fast(d, "f", DEFAULT_LIMITS), monkeypatch)[0][0] == "ok"


def test_csv_falls_back_without_pyarrow(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(_fasttext, "MIN_VALUES", 0)
    monkeypatch.setattr(_fasttext, "_pyarrow", lambda: None)
    assert not _fasttext.enabled(10**9)
    weights = _weights()
    ws.save(weights, tmp_path / "w.csv")
    assert ws.load(tmp_path / "w.csv").equal(weights)


def _json_general(data: bytes) -> ws.Weights:
    original = json_codec._read_compact
    json_codec._read_compact = lambda *a: None
    try:
        return JsonCodec().read(io.BytesIO(data), path="f")
    finally:
        json_codec._read_compact = original


def _json_compact(data: bytes) -> ws.Weights | None:
    return json_codec._read_compact(data, "f", DEFAULT_LIMITS, True)


@pytest.fixture(params=["simdjson", "orjson"])
def json_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The compact JSON reader's number parser: pysimdjson (the 'text' extra) or, without
    it, orjson's flat lists."""
    if request.param == "simdjson":
        pytest.importorskip("simdjson", reason="the compiled JSON path needs the 'text' extra")
    else:
        monkeypatch.setattr(_fasttext, "_simdjson", lambda: None)
    return request.param


def test_json_compact_reader_agrees_with_the_whole_document_reader(
        monkeypatch: pytest.MonkeyPatch, json_parser: str) -> None:
    weights = _weights()
    buf = io.BytesIO()
    JsonCodec().write(weights, buf, path="f")
    data = buf.getvalue()
    assert _json_compact(data) is not None  # the writer's layout is the compact one
    fast, general = _both(data, _json_compact, _json_general, monkeypatch)
    assert fast == general and fast[0] == "ok"
    # in slices: each slice of the numbers parsed on its own
    monkeypatch.setattr(_fasttext, "JSON_SLICE_BYTES", 64)
    assert _outcome(_json_compact, data) == general


def test_json_compact_reader_agrees_on_damaged_documents(
        monkeypatch: pytest.MonkeyPatch, json_parser: str) -> None:
    rng = np.random.default_rng(9)
    weights = ws.Weights({"a": (rng.standard_normal((20, 30)) * 0.02).astype(np.float32),
                          "i": np.arange(-50, 50, dtype=np.int8),
                          "h": np.array([0.5, np.nan, 2.0], np.float16)}, {"k": "v"})
    buf = io.BytesIO()
    JsonCodec().write(weights, buf, path="f")
    data = buf.getvalue()
    r = random.Random(3)
    edits = [b"01", b"-0", b".5", b"5.", b"+1", b"1e400", b"1e5", b" 1", b'"NaN"', b"[1]",
             b"1,2", b"", b"true", b"300", b"-129", b"1.5", b"]", b"[", b"0x1", b"1E-5"]
    monkeypatch.setattr(_fasttext, "JSON_SLICE_BYTES", 200)
    compared = 0
    for _ in range(200):
        at = [m for m in range(len(data)) if data[m:m + 1] in (b",", b"[")]
        i = r.choice(at) + 1
        j = i
        while data[j:j + 1] not in (b",", b"]"):
            j += 1
        damaged = data[:i] + r.choice(edits) + data[j:]
        fast, general = _outcome(_json_compact, damaged), _outcome(_json_general, damaged)
        if fast is None:
            continue  # not the compact layout: the whole-document reader reads it
        compared += 1
        if general[0] == "error":
            assert fast[0] == "error" and fast[1] == general[1], damaged
        else:
            assert fast == general, damaged
    assert compared > 100


def test_json_read_holds_one_tensors_python_objects_at_a_time(
        tmp_path, monkeypatch: pytest.MonkeyPatch, json_parser: str) -> None:
    """The compact reader parses the numbers of one slice of one tensor at a time (by
    simdjson into a buffer, or by orjson into a flat list); a slice is cut between two
    elements of the outermost list."""
    seen = []
    if json_parser == "simdjson":
        simdjson = _fasttext._simdjson()

        class Parser:
            def __init__(self) -> None:
                self.inner = simdjson.Parser()

            def parse(self, text):
                seen.append(len(text))
                return self.inner.parse(text)

        monkeypatch.setattr(_fasttext, "_simdjson", lambda: type("S", (), {"Parser": Parser}))
    else:
        original = orjson.loads

        def counting(text, *a):
            seen.append(len(text))
            return original(text, *a)

        monkeypatch.setattr(_fasttext, "orjson", type("O", (), {"loads": staticmethod(counting)}))
    weights = ws.Weights({f"t{i}": np.arange(5000, dtype=np.float32) / 7 for i in range(4)}
                         | {"m": np.arange(6000, dtype=np.float32).reshape(20, 30, 10) / 3})
    ws.save(weights, tmp_path / "w.json")
    size = (tmp_path / "w.json").stat().st_size
    assert ws.load(tmp_path / "w.json").equal(weights)
    assert len(seen) == 5 and max(seen) < size / 3
    seen.clear()
    monkeypatch.setattr(_fasttext, "JSON_SLICE_BYTES", 3000)
    assert ws.load(tmp_path / "w.json").equal(weights)
    assert len(seen) > size // 4000 and max(seen) <= 3002  # a slice and two brackets


# --- safetensors, streamed -------------------------------------------------------------


def test_streamed_safetensors_is_read_by_the_library(tmp_path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    tensors, metadata = corpus()
    tensors = {k: v for k, v in tensors.items() if "bfloat16" not in k}
    weights = ws.Weights(tensors, metadata)
    path = tmp_path / "w.safetensors"
    ws.save(weights, path)
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    assert length % 8 == 0
    header = json.loads(raw[8:8 + length])
    crcs = json.loads(header["__metadata__"]["weightstore.crc32"])
    from weightstore.integrity import tensor_crc32

    assert crcs == {k: f"{tensor_crc32(v):08x}" for k, v in weights.items()}
    loaded = st.load_file(str(path))
    for name, array in weights.items():
        np.testing.assert_array_equal(loaded[name], array)
    assert ws.load(path).equal(weights)  # checksums verified


# --- lazy open of the text formats -------------------------------------------------------


def _lazy_outcome(path):
    try:
        with ws.open(path) as lazy:
            got = ws.Weights({k: np.array(lazy[k]) for k in lazy}, dict(lazy.metadata))
    except ws.WeightstoreError as e:
        return ("error", type(e).__name__)
    return ("ok", list(got), [(got[k].dtype.str, got[k].shape, got[k].tobytes()) for k in got],
            dict(got.metadata))


def _load_outcome(path):
    try:
        got = ws.load(path)
    except ws.WeightstoreError as e:
        return ("error", type(e).__name__)
    return ("ok", list(got), [(got[k].dtype.str, got[k].shape, got[k].tobytes()) for k in got],
            dict(got.metadata))


@pytest.mark.parametrize("ext", [".csv", ".json"])
def test_lazy_open_reads_what_load_reads_on_damaged_files(ext: str, tmp_path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """open() reads each tensor from its own text (in slices: small ones here); it gives what
    load gives, or an error of the same kind, on files with values, rows or shapes edited."""
    from weightstore.codecs import csv_codec, json_codec

    monkeypatch.setattr(csv_codec, "_SLICE_BYTES", 300)
    monkeypatch.setattr(_fasttext, "JSON_SLICE_BYTES", 300)
    monkeypatch.setattr(_fasttext, "MIN_VALUES", 0)
    rng = np.random.default_rng(4)
    weights = ws.Weights({"a": (rng.standard_normal((20, 30)) * 0.02).astype(np.float32),
                          "i": np.arange(-50, 50, dtype=np.int8),
                          "h": np.array([0.5, np.nan, 2.0], np.float16),
                          "e": np.zeros((0, 3), np.float32)}, {"k": "v"})
    path = tmp_path / f"w{ext}"
    ws.save(weights, path)
    data = path.read_bytes()
    assert isinstance(ws.open(path)._source, (csv_codec._CsvSource, json_codec._CompactSource))
    assert _lazy_outcome(path) == _load_outcome(path) == _load_outcome(path)
    r = random.Random(11)
    edits = [b"1.5", b"-0", b"x", b"NaN", b"300", b"99999999999999999999", b"", b"1e400",
             b"7", b"0,1", b"2x2"]
    for _ in range(60):
        cut = r.choice([m for m in range(len(data)) if data[m:m + 1] == b","]) + 1
        stop = cut
        while data[stop:stop + 1] not in (b",", b"\r", b"]"):
            stop += 1
        path.write_bytes(data[:cut] + r.choice(edits) + data[stop:])
        lazy, loaded = _lazy_outcome(path), _load_outcome(path)
        if loaded[0] == "ok":
            assert lazy == loaded
        else:
            assert lazy[0] == "error", (lazy, loaded)


def test_lazy_csv_reads_from_threads_each_into_its_own_buffer(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open() reads a CSV tensor's rows a slice at a time into a buffer it reuses (no fresh
    pages per slice): each thread has its own, so tensors read side by side from two threads
    come out whole; a file cut short after open() is an error naming it, not stale bytes."""
    import threading

    from weightstore.codecs import csv_codec

    monkeypatch.setattr(csv_codec, "_SLICE_BYTES", 4000)
    monkeypatch.setattr(_fasttext, "MIN_VALUES", 0)
    rng = np.random.default_rng(9)
    weights = ws.Weights({f"t{i}": (rng.standard_normal((60, 40)) * 0.02).astype(np.float32)
                          for i in range(6)})
    path = tmp_path / "w.csv"
    ws.save(weights, path)
    got: dict[str, np.ndarray] = {}
    with ws.open(path) as w:
        assert isinstance(w._source, csv_codec._CsvSource)

        def read(names: list[str]) -> None:
            for _ in range(3):
                for name in names:
                    got[name] = w[name]

        threads = [threading.Thread(target=read, args=(names,))
                   for names in (["t0", "t2", "t4"], ["t1", "t3", "t5"])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(got) == sorted(weights)
    for name, array in weights.items():
        assert got[name].tobytes() == array.tobytes(), name
    with ws.open(path) as w:
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
        with pytest.raises(ws.FormatError, match="w.csv.*EOF"):
            w["t5"]


def test_csv_read_from_disk_through_a_memory_map_agrees_with_a_stream(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file on disk is parsed through a memory map (csv_codec._Mapped, counted in small
    windows here so that lines straddle them); a stream is read into memory: the same
    tensors or the same kind of error, on whole and damaged files."""
    from weightstore.codecs import csv_codec

    monkeypatch.setattr(csv_codec, "_COUNT_WINDOW", 97)
    monkeypatch.setattr(_fasttext, "MIN_VALUES", 0)
    buf = io.BytesIO()
    CsvCodec().write(_weights(), buf, path="f")
    r = random.Random(11)
    files = [buf.getvalue()] + [damaged_csv([buf.getvalue()], r, [b"x", b"NaN", b"1e400"],
                                            shuffle_all=False)[1] for _ in range(12)]
    mapped = []
    for i, data in enumerate(files):
        (tmp_path / f"{i}.csv").write_bytes(data)
        with open(tmp_path / f"{i}.csv", "rb") as f:
            view = csv_codec._read_text_bounded(f)
            assert isinstance(view, csv_codec._Mapped)
            mapped.append(view.count(b"\n") == data.count(b"\n")
                          and view.count(b",0,", 5, len(data) - 3) == data.count(b",0,", 5,
                                                                              len(data) - 3)
                          and view.startswith(data[7:300], 7))
            view.close()
            on_disk = _outcome(lambda d, f=f: CsvCodec().read(f, path="f"), data)
        in_memory = _outcome(lambda d: CsvCodec().read(io.BytesIO(d), path="f"), data)
        assert on_disk == in_memory, i
    assert all(mapped)


def test_csv_write_flushes_to_disk_as_it_goes(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CSV writer sends a regular file to its disk on a thread as it writes
    (csv_codec._Writeback): the file is the same; a flush that fails fails the save with
    the atomic write's error (here ENOSPC) and leaves nothing behind."""
    import errno
    import os

    from weightstore.codecs import csv_codec

    weights = _weights()
    buf = io.BytesIO()
    CsvCodec().write(weights, buf, path="f")
    monkeypatch.setattr(csv_codec, "_FLUSH_BYTES", 1)
    synced = []
    real = getattr(os, "fdatasync", os.fsync)
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd) or real(fd))
    ws.save(weights, tmp_path / "w.csv")
    assert (tmp_path / "w.csv").read_bytes() == buf.getvalue() and synced

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    with pytest.raises(ws.WeightstoreError, match="space"):
        ws.save(weights, tmp_path / "x.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.csv"]
