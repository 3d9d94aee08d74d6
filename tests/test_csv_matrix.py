"""The CSV codec's matrix layout: one plain CSV per tensor in a zip, with a manifest."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import orjson
import pytest

import weightstore as ws
from weightstore.cli.main import main
from weightstore.codecs import _matrix
from weightstore.model import arrays_identical


def _weights() -> ws.Weights:
    rng = np.random.default_rng(0)
    return ws.Weights({
        "W1": rng.standard_normal((5, 3)).astype(np.float32),
        "g/b": np.float32([1, np.nan, -np.inf]),
        "s": np.float64(0.1),
        "conv": rng.standard_normal((2, 3, 4)).astype(np.float16),
        "empty": np.zeros((3, 0), np.int8),
        "big": np.array([2**63 + 5], np.uint64),
        "flag": np.array([True, False]),
    }, metadata={"source": "test"})


def test_round_trip_is_exact_and_found_by_content(tmp_path: Path) -> None:
    w = _weights()
    p = tmp_path / "m.csv"
    ws.save(w, p, layout="matrix")
    other = tmp_path / "m.bin"
    other.write_bytes(p.read_bytes())
    for path in (p, other):
        back = ws.load(path)
        assert list(back) == list(w) and back.metadata == w.metadata
        assert all(arrays_identical(w[k], back[k]) for k in w)
    z = zipfile.ZipFile(p)
    assert z.namelist()[0] == "weightstore-matrix.json"
    manifest = orjson.loads(z.read("weightstore-matrix.json"))
    assert [t["file"] for t in manifest["tensors"]][:2] == ["W1.csv", "g_b.csv"]


def test_other_tools_read_a_member_as_the_matrix(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    w = _weights()
    p = tmp_path / "m.csv"
    assert main(["convert", "-q", "--to", "csv", "-o", "layout=matrix",
                 str(_save_npz(w, tmp_path)), str(p)]) == 0
    z = zipfile.ZipFile(p)
    text = z.read("W1.csv").decode()
    got = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64).astype(np.float32)
    assert np.array_equal(got, w["W1"])
    frame = pd.read_csv(io.StringIO(text), header=None)
    assert np.array_equal(frame.to_numpy().astype(np.float32), w["W1"])
    conv = np.loadtxt(io.StringIO(z.read("conv.csv").decode()), delimiter=",", ndmin=2)
    assert conv.shape == (2, 12)
    assert np.array_equal(conv.astype(np.float16).reshape(2, 3, 4), w["conv"])
    assert np.isnan(np.loadtxt(io.StringIO(z.read("g_b.csv").decode()), delimiter=",")[1])


def _save_npz(w: ws.Weights, folder: Path) -> Path:
    p = folder / "src.npz"
    ws.save(w, p)
    return p


def test_member_names_are_safe_and_unique() -> None:
    taken: set[str] = set()
    assert _matrix.member_name("a/b", taken) == "a_b.csv"
    assert _matrix.member_name("a_b", taken) == "a_b~2.csv"
    assert _matrix.member_name("../x", taken) == "_x.csv"
    assert _matrix.member_name("weightstore-matrix.json"[:-4] + "json", taken) != \
        "weightstore-matrix.json"


def _rewrite(src: Path, dst: Path, change) -> None:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = change(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)


@pytest.mark.parametrize(("what", "change", "message"), [
    ("a line short", lambda n, d: d[: d.rfind(b"\r\n", 0, len(d) - 2) + 2]
     if n == "W1.csv" else d, "5 lines"),
    ("a value short", lambda n, d: d.replace(b",", b"", 1) if n == "W1.csv" else d,
     "3 values"),
    ("a member missing", lambda n, d: None if n == "W1.csv" else d, "member"),
    ("a word for a number", lambda n, d: b"x," + d[d.find(b",") + 1:] if n == "W1.csv"
     else d, "W1"),
    ("no final line break", lambda n, d: d[:-2] if n == "W1.csv" else d, "CRLF"),
])
def test_damaged_archives_are_format_errors_naming_the_tensor(tmp_path: Path, what, change,
                                                             message) -> None:
    good = tmp_path / "good.csv"
    ws.save(_weights(), good, layout="matrix")
    bad = tmp_path / "bad.csv"
    _rewrite(good, bad, change)
    with pytest.raises(ws.FormatError, match=message):
        ws.load(bad)


def test_a_member_larger_than_its_values_allow_is_refused_before_reading(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    ws.save({"x": np.float32([1.0])}, good, layout="matrix")
    bad = tmp_path / "bad.csv"
    _rewrite(good, bad, lambda n, d: d + b"0" * 10_000 if n == "x.csv" else d)
    with pytest.raises(ws.FormatError, match="at most"):
        ws.load(bad)


def test_numpys_parser_and_the_careful_one_read_the_same(tmp_path: Path, monkeypatch) -> None:
    w = _weights()
    p = tmp_path / "m.csv"
    ws.save(w, p, layout="matrix")
    calls: list[bool] = []
    fast = _matrix._parse_fast

    def spy(*args):  # type: ignore[no-untyped-def]
        out = fast(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(_matrix, "_parse_fast", spy)
    quick = ws.load(p)
    assert any(calls)  # numpy's parser read most tensors
    monkeypatch.setattr(_matrix, "_parse_fast", lambda *a: None)
    careful = ws.load(p)
    assert all(arrays_identical(quick[k], careful[k]) and arrays_identical(quick[k], w[k])
               for k in w)


def test_matrix_layout_reads_tensor_by_tensor_within_the_memory_budget(
        tmp_path: Path, monkeypatch) -> None:
    """A budget below the model's total but above its largest tensor plus one batch of
    lines: open() reads every tensor, one at a time; load() (the whole model) is refused
    before allocating; convert streams through."""
    monkeypatch.setattr(_matrix, "_BATCH_VALUES", 1024)  # 16 lines of 64 values a batch
    rng = np.random.default_rng(3)
    w = ws.Weights({f"layer{i}/W": rng.standard_normal((256, 64)).astype(np.float32)
                    for i in range(8)})
    largest = max(a.nbytes for a in w.values())
    path = tmp_path / "m.csv"
    ws.save(w, path, layout="matrix")
    cap = 3 * largest
    assert w.nbytes > cap
    limits = ws.Limits(max_memory_bytes=cap)
    with pytest.raises(ws.LimitError, match="max_memory_bytes"):
        ws.load(path, limits=limits)
    with ws.open(path, limits=limits) as lazy:
        assert lazy.lazy and list(lazy) == list(w)
        for name in lazy:
            assert arrays_identical(lazy[name], w[name]), name
    out = tmp_path / "m.npz"
    ws.convert(path, out, limits=limits)
    assert ws.load(out).equal(w)


def test_a_batch_beyond_the_budget_is_refused_before_it_is_read(tmp_path: Path) -> None:
    w = {"W": np.ones((64, 64), np.float32)}
    path = tmp_path / "m.csv"
    ws.save(w, path, layout="matrix")
    with ws.open(path, limits=ws.Limits(max_memory_bytes=20_000)) as lazy, \
            pytest.raises(ws.LimitError, match=r"tensor 'W' file 'W.csv' \(a batch of lines\)"):
        lazy["W"]
