"""Damaged and foreign files refused with the field at fault: the CSV matrix manifest,
a compressed npz member whose zip CRC-32 is wrong, files of tools weightstore does not
read (the hint names the tool and what to do), and the report command's progress lines."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import orjson
import pytest

import weightstore as ws
from weightstore.cli import report as report_cmd
from weightstore.codecs import _matrix

# --- the CSV matrix layout's manifest ----------------------------------------------


def _matrix_file(path: Path, manifest: object, members: dict[str, bytes] | None = None,
                 raw_manifest: bytes | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(_matrix.MANIFEST, raw_manifest if raw_manifest is not None
                   else orjson.dumps(manifest))
        for name, data in (members or {}).items():
            z.writestr(name, data)
    return path


def _manifest(**changes: object) -> dict:
    doc = {"format": _matrix.FORMAT_ID, "version": _matrix.VERSION, "metadata": {"k": "v"},
           "tensors": [{"name": "W", "dtype": "float32", "shape": [2, 2], "file": "W.csv"}]}
    doc.update(changes)
    return doc


GOOD_MEMBER = {"W.csv": b"1,2\r\n3,4\r\n"}


def test_a_hand_made_matrix_file_reads(tmp_path: Path) -> None:
    got = ws.load(_matrix_file(tmp_path / "m.csv", _manifest(), GOOD_MEMBER))
    assert got.metadata == {"k": "v"}
    assert np.array_equal(got["W"], np.float32([[1, 2], [3, 4]]))


@pytest.mark.parametrize(("manifest", "members", "message"), [
    (_manifest(format="other"), GOOD_MEMBER, "manifest format: expected 'weightstore.csv-"),
    ([1, 2], GOOD_MEMBER, "manifest format: expected .*found \\[1, 2\\]"),
    (_manifest(version=2), GOOD_MEMBER, "manifest version: expected 1, found 2"),
    (_manifest(metadata={"k": 1}), GOOD_MEMBER, "manifest metadata: expected an object of "
                                                "strings"),
    (_manifest(tensors={"W": 1}), GOOD_MEMBER, "manifest tensors: expected a list"),
    (_manifest(tensors=[["W"]]), GOOD_MEMBER, "manifest tensors\\[0\\]: expected an object "
                                              "with keys"),
    (_manifest(tensors=[{"name": 1, "dtype": "float32", "shape": [1], "file": "W.csv"}]),
     GOOD_MEMBER, "string name and file"),
    (_manifest(tensors=[{"name": "W", "dtype": "complex64", "shape": [2, 2],
                         "file": "W.csv"}]), GOOD_MEMBER, "tensor 'W' dtype: expected a dtype"),
    (_manifest(tensors=[{"name": "W", "dtype": 5, "shape": [2, 2], "file": "W.csv"}]),
     GOOD_MEMBER, "tensor 'W' dtype: expected a dtype name, found 5"),
    (_manifest(tensors=[{"name": "W", "dtype": "float32", "shape": [2, 2], "file": "X.csv"}]),
     GOOD_MEMBER, "tensor 'W' file: expected a member of the archive, used once, found X.csv"),
    (_manifest(tensors=[{"name": n, "dtype": "float32", "shape": [2, 2], "file": "W.csv"}
                        for n in ("W", "V")]),
     GOOD_MEMBER, "tensor 'V' file: expected a member of the archive, used once"),
    (_manifest(tensors=[{"name": "W", "dtype": "float32", "shape": [0], "file": "W.csv"}]),
     {"W.csv": b"\r\n"}, "expected an empty member for an empty tensor, found 2 bytes"),
    (_manifest(), {"W.csv": "1,2\r\n3,4é\r\n".encode()}, "tensor 'W' file 'W.csv' line 2: "
                                                          "expected ASCII text, found byte 195"),
])
def test_damaged_manifests_name_the_field(tmp_path: Path, manifest: object,
                                          members: dict[str, bytes], message: str) -> None:
    path = _matrix_file(tmp_path / "m.csv", manifest, members)
    with pytest.raises(ws.FormatError, match=message) as e:
        ws.load(path, "csv")
    assert str(path) in str(e.value)


def test_a_matrix_file_without_its_manifest_or_with_broken_json(tmp_path: Path) -> None:
    with pytest.raises(ws.FormatError, match="manifest is not valid JSON"):
        ws.load(_matrix_file(tmp_path / "a.csv", None, GOOD_MEMBER, raw_manifest=b"{nope"),
                "csv")
    no_manifest = tmp_path / "b.csv"
    with zipfile.ZipFile(no_manifest, "w") as z:
        z.writestr("W.csv", GOOD_MEMBER["W.csv"])
    with pytest.raises(ws.FormatError, match="manifest: expected weightstore-matrix.json, "
                                             "found none"):
        ws.load(no_manifest, "csv")


def test_a_manifest_larger_than_the_header_limit_is_refused_unread(tmp_path: Path) -> None:
    path = _matrix_file(tmp_path / "m.csv", _manifest(), GOOD_MEMBER)
    size = zipfile.ZipFile(path).getinfo(_matrix.MANIFEST).file_size
    with pytest.raises(ws.LimitError, match=f"manifest: expected at most 10 bytes, found {size}"):
        ws.load(path, "csv", limits=ws.Limits(max_header_bytes=10))
    with pytest.raises(ws.FormatError, match="manifest tensors: expected a list of at most 0"):
        ws.load(path, "csv", limits=ws.Limits(max_tensors=0))


def test_bool_matrix_values_other_than_0_and_1_are_refused(tmp_path: Path) -> None:
    manifest = _manifest(tensors=[{"name": "m", "dtype": "bool", "shape": [3],
                                   "file": "m.csv"}])
    ok = ws.load(_matrix_file(tmp_path / "ok.csv", manifest, {"m.csv": b"1,0,1\r\n"}))
    assert ok["m"].tolist() == [True, False, True]
    with pytest.raises(ws.FormatError, match="tensor 'm' value: expected 0 or 1, found 2"):
        ws.load(_matrix_file(tmp_path / "bad.csv", manifest, {"m.csv": b"1,2,1\r\n"}))


# --- npz: a compressed member's zip CRC-32 --------------------------------------------


def _central_entry(raw: bytes, name: bytes) -> int:
    i = 0
    while (i := raw.find(b"PK\x01\x02", i)) >= 0:
        (name_len,) = struct.unpack_from("<H", raw, i + 28)
        if raw[i + 46:i + 46 + name_len] == name:
            return i
        i += 4
    raise AssertionError(f"no central directory entry for {name!r}")


def test_a_wrong_crc_of_a_deflated_npz_member_is_a_checksum_error_naming_it(
        tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    w1 = np.random.default_rng(0).standard_normal((200, 50))
    ws.save({"W1": w1, "b": np.ones(3)}, path, compressed=True)
    raw = bytearray(path.read_bytes())
    entry = _central_entry(bytes(raw), b"W1.npy")
    (crc,) = struct.unpack_from("<I", raw, entry + 16)
    struct.pack_into("<I", raw, entry + 16, crc ^ 1)  # the data is intact, its CRC is not
    path.write_bytes(bytes(raw))
    with ws.open(path) as lazy:  # the header reads; the CRC is checked with the data
        assert np.array_equal(lazy["b"], np.ones(3))
        with pytest.raises(ws.ChecksumError, match=f"tensor 'W1': expected the zip CRC-32 "
                                                   f"{crc ^ 1:08x} of member 'W1.npy'"):
            lazy["W1"]
    with pytest.raises(ws.ChecksumError, match="W1"):
        ws.load(path)
    assert np.array_equal(ws.load(path, verify=False)["W1"], w1)  # as the hint says


# --- files of other tools: the hint says what they are --------------------------------


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("archive/data.pkl")
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
    return buf.getvalue()


@pytest.mark.parametrize(("name", "content", "hint"), [
    ("model.ckpt.index", b"\0" * 40, "TensorFlow checkpoint"),
    ("vars.dat", b"\0" * 40 + (0xDB4775248B80FB57).to_bytes(8, "little"),
     "TensorFlow checkpoint"),
    ("model.ckpt.data-00000-of-00001", b"\1" * 40, "TensorFlow checkpoint"),
    ("model.dat", b"\x1c\0\0\0TFL3" + b"\0" * 40, "TensorFlow Lite model"),
    ("graph.pb", b"\x0a\x05hello" * 3, "TensorFlow graph"),
    ("graph.pbtxt", b"node {}\n", "TensorFlow graph"),
    ("old.dat", _tar(), "tar archive .*unpack it, or load it with torch"),
    ("mystery.dat", b"\1\2\3\4" * 10, "pass format=NAME"),
])
def test_files_of_other_tools_get_a_hint_naming_them(tmp_path: Path, name: str,
                                                     content: bytes, hint: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ws.UnknownFormatError, match=hint) as e:
        ws.load(path)
    assert str(path) in str(e.value)


# --- the report command's progress lines ------------------------------------------------


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize("tty", [False, True])
def test_report_progress_lines(monkeypatch: pytest.MonkeyPatch, tty: bool) -> None:
    assert report_cmd._progress(quiet=True) is None
    stream = _Stream(tty)
    monkeypatch.setattr("sys.stderr", stream)
    show = report_cmd._progress(quiet=False)
    show(1, 2, "npz")
    show(2, 2, "json")
    if tty:  # one line, rewritten in place, ended when the last step is shown
        assert stream.getvalue() == "\r\x1b[2K[1/2] npz\r\x1b[2K[2/2] json\n"
    else:  # a log: one line per step
        assert stream.getvalue() == "[1/2] npz\n[2/2] json\n"
