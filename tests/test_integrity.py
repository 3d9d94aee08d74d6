"""Checksums: every format that can carry them stores a CRC-32 of each tensor and of its
header; loading verifies them by default and names the damaged tensor; ``verify=False``
reads a damaged file anyway; files without checksums (older or foreign) still load.

The shared suites check the rest for every codec that declares ``checksums``: no random
change to a file goes unnoticed (tests/test_codecs.py, tests/test_fuzz.py).
"""

from __future__ import annotations

import inspect
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zstandard

import weightstore as ws
from weightstore.integrity import format_crc, header_crc32, tensor_crc32
from weightstore.testing import as_stored, for_codec, same_content

TARGET = np.full((3, 4), 1.25, dtype=np.float32)
W = ws.Weights({"first": np.arange(5, dtype=np.int16), "target": TARGET,
                "g/last": np.array(True)}, metadata={"source": "integrity test"})
#: 1.25 and 5.0 as float32 bytes, and as the shortest decimals the text formats write.
BYTES_BEFORE, BYTES_AFTER = struct.pack("<f", 1.25), struct.pack("<f", 5.0)
TEXT_BEFORE, TEXT_AFTER = b"1.25", b"5.0"


def _damage_one_value(data: bytes) -> bytes:
    """*data* with one stored 1.25 of TARGET changed to 5.0 (raw bytes or decimal text)."""
    for before, after in ((BYTES_BEFORE, BYTES_AFTER), (TEXT_BEFORE, TEXT_AFTER)):
        at = data.find(before)
        if at >= 0:
            return data[:at] + after + data[at + len(before):]
    raise AssertionError("the value's bytes are not in the file")


@pytest.mark.parametrize("ext", [".json", ".npz", ".h5", ".safetensors"])
def test_a_changed_value_is_a_checksum_error_naming_the_tensor(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"w{ext}"
    ws.save(W, path)
    assert ws.get_codec(ext).checksums
    path.write_bytes(_damage_one_value(path.read_bytes()))
    with pytest.raises(ws.ChecksumError, match="tensor 'target'") as e:
        ws.load(path)
    assert str(path) in str(e.value) and "verify=False" in str(e.value)
    got = ws.load(path, verify=False)  # salvage: everything else is intact
    changed = got["target"] != TARGET
    assert changed.sum() == 1 and got["target"][changed][0] == 5.0
    assert all(np.array_equal(got[k], W[k]) for k in ("first", "g/last"))


def test_wsc_takes_verify_from_load(tmp_path: Path) -> None:
    """wsc has its own verify option; load(..., verify=False) reaches it as well."""
    path = tmp_path / "w.wsc"
    noise = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    ws.save({"a": np.arange(3), "noise": noise}, path)  # mantissa planes stored raw
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack_from("<Q", data, len(data) - 16)
    data[len(data) - 16 - n - 1] ^= 0x01  # the last byte of the last raw plane
    path.write_bytes(bytes(data))
    with pytest.raises(ws.ChecksumError, match="tensor 'noise'"):
        ws.load(path)
    assert (ws.load(path, verify=False)["noise"] != noise).sum() == 1


def test_zstd_passes_verify_to_the_inner_codec(tmp_path: Path) -> None:
    inner = tmp_path / "w.json"
    ws.save(W, inner)
    path = tmp_path / "w.json.zst"  # a valid frame around a damaged JSON file
    path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(
        _damage_one_value(inner.read_bytes())))
    with pytest.raises(ws.ChecksumError, match="tensor 'target'"):
        ws.load(path)
    assert ws.load(path, verify=False)["target"].max() == 5.0


def test_zstd_frame_checksum_is_always_verified(tmp_path: Path) -> None:
    path = tmp_path / "w.json.zst"
    ws.save(W, path)
    data = bytearray(path.read_bytes())
    frames = int.from_bytes(data[-9:-5], "little")  # the seek table's frame count
    data[-(8 + 8 * frames + 9) - 1] ^= 0x01  # the last byte of the last frame's checksum
    path.write_bytes(bytes(data))
    for verify in (True, False):  # the zstandard binding has no switch for it
        with pytest.raises(ws.ChecksumError, match="zstd content"):
            ws.load(path, verify=verify)


def _json_edit(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))


@pytest.mark.parametrize(("old", "new"), [(b'"first"', b'"firsT"'), (b'"source"', b'"sourcE"'),
                                          (b'"integrity test"', b'"integrity tesT"')],
                         ids=["name", "metadata key", "metadata value"])
def test_json_header_checksum_covers_names_and_metadata(tmp_path: Path, old: bytes,
                                                               new: bytes) -> None:
    path = tmp_path / "w.json"
    ws.save(W, path)
    _json_edit(path, old, new)
    with pytest.raises(ws.ChecksumError, match="header"):
        ws.load(path)
    got = ws.load(path, verify=False)  # salvage: the edited text, every value intact
    renamed = {old.decode().strip('"'): new.decode().strip('"')}
    assert list(got) == [renamed.get(k, k) for k in W]
    assert list(got.metadata.items()) == [(renamed.get(k, k), renamed.get(v, v))
                                          for k, v in W.metadata.items()]
    assert all(np.array_equal(a, b) for a, b in zip(got.values(), W.values(), strict=True))


def test_npz_header_checksum_covers_the_metadata_comment(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    ws.save(W, path)
    _json_edit(path, b'"integrity test"', b'"integrity tesT"')
    with pytest.raises(ws.ChecksumError, match="header"):
        ws.load(path)
    assert ws.load(path, verify=False).metadata == {"source": "integrity tesT"}


@pytest.mark.parametrize("damage", ["prefix", "cut"])
def test_npz_damaged_comment_is_not_mistaken_for_a_foreign_one(tmp_path: Path,
                                                               damage: str) -> None:
    path = tmp_path / "w.npz"
    ws.save(W, path)
    data = path.read_bytes()
    if damage == "prefix":
        data = data.replace(b"weightstore:", b"weightst0re:")
    else:  # the end record's comment length says 6: the rest would be ignored
        eocd = data.rfind(b"PK\x05\x06")
        data = data[:eocd + 20] + struct.pack("<H", 6) + data[eocd + 22:]
    path.write_bytes(data)
    with pytest.raises(ws.FormatError, match="zip"):
        ws.load(path)


def test_hdf5_header_checksum_covers_metadata_changed_by_another_tool(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "w.h5"
    ws.save(W, path)
    with h5py.File(path, "r+") as f:  # h5py keeps HDF5's own checksums right
        f.attrs["source"] = np.array(b"edited", dtype="S6")
    with pytest.raises(ws.ChecksumError, match="header"):
        ws.load(path)
    assert ws.load(path, verify=False).metadata == {"source": "edited"}


def test_hdf5_object_headers_carry_the_librarys_checksums(tmp_path: Path) -> None:
    path = tmp_path / "w.h5"
    ws.save(W, path)
    data = bytearray(path.read_bytes())
    assert data[8] >= 2, "superblock version 2 or later: the 1.8 format, with checksums"
    at = data.find(b"OHDR", 64)  # a dataset's or group's object header
    data[at + 12] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ws.ChecksumError, match="checksum"):
        ws.load(path)


def test_hdf5_checksum_attributes_for_other_tools(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "w.h5"
    ws.save(W, path)
    with h5py.File(path, "r") as f:
        assert int(f["target"].attrs["weightstore.crc32"]) == tensor_crc32(TARGET)
        assert "weightstore.header_crc32" in f.attrs
    assert "weightstore.header_crc32" not in ws.load(path).metadata


def test_safetensors_checksums_live_in_reserved_metadata_keys(tmp_path: Path) -> None:
    import json

    path = tmp_path / "w.safetensors"
    ws.save(W, path)
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data)
    meta = json.loads(data[8:8 + n])["__metadata__"]
    assert json.loads(meta["weightstore.crc32"])["target"] == format_crc(tensor_crc32(TARGET))
    assert set(ws.load(path).metadata) == {"source"}
    with pytest.raises(ws.UnsupportedError, match="weightstore.crc32"):
        ws.save(ws.Weights({"a": TARGET}, metadata={"weightstore.crc32": "x"}), path)


def test_files_without_checksums_still_load(tmp_path: Path) -> None:
    """Written by numpy, h5py and the safetensors package themselves: nothing to verify."""
    import h5py
    import safetensors.numpy

    plain = {"first": W["first"], "target": TARGET}
    np.savez(tmp_path / "numpy.npz", **plain)
    with h5py.File(tmp_path / "h5py.h5", "w") as f:
        for k, v in plain.items():
            f[k] = v
    (tmp_path / "st.safetensors").write_bytes(safetensors.numpy.save(plain))
    for name in ("numpy.npz", "h5py.h5", "st.safetensors"):
        got = ws.load(tmp_path / name)
        assert all(np.array_equal(got[k], v) for k, v in plain.items()), name


def test_npz_member_crc_is_zips_own(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    ws.save(W, path)
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None  # the CRC-32 any unzip tool checks: no bad member
        assert sorted(zf.namelist()) == sorted(f"{k}.npy" for k in W)
        assert zf.comment.startswith(b"weightstore:{")


def test_tensor_checksum_is_of_the_canonical_bytes() -> None:
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert tensor_crc32(a) == tensor_crc32(np.asfortranarray(a)) == tensor_crc32(
        a.astype(">f8")) == tensor_crc32(a.copy())
    assert tensor_crc32(a[:, ::2]) == tensor_crc32(np.ascontiguousarray(a[:, ::2]))
    assert tensor_crc32(np.zeros((0, 3))) == 0
    assert tensor_crc32(np.array(True)) == 0xA505DF1B  # crc32(b"\x01")
    assert header_crc32([], {}) == header_crc32([], {}) != header_crc32([("a", "bool", ())], {})


def test_every_codec_reads_with_the_one_signature() -> None:
    """One read signature for every codec: ``read(fileobj, *, path, limits, verify, budget)``
    (and the same keywords for ``open``)."""
    for cls in ws.formats():
        for method in (cls.read, cls.open):
            params = inspect.signature(method).parameters
            assert [p for p in params if p != "self"] == [
                "fileobj", "path", "limits", "verify", "budget"], (cls, method)


def test_the_declared_codecs_carry_checksums_and_pickle_csv_do_not() -> None:
    declared = {c.name for c in ws.formats() if c.checksums}
    assert {"json", "npz", "hdf5", "safetensors", "zstd", "wsc"} <= declared
    assert not {"pickle", "csv"} & declared  # see docs/security.md for why


def test_checksummed_round_trip_of_every_codec(tmp_path: Path) -> None:
    for cls in [c for c in ws.formats() if c.writable]:
        path = tmp_path / f"w{cls.extensions[0]}"
        weights = for_codec(cls, W)  # a one-tensor format: the first tensor
        ws.save(weights, path, cls.name)
        assert same_content(ws.load(path), as_stored(cls, weights, path)), cls.name


def test_the_command_line_names_the_damage_and_can_salvage(tmp_path: Path, capsys) -> None:
    from weightstore.cli.main import main

    path = tmp_path / "w.json"
    ws.save(W, path)
    path.write_bytes(_damage_one_value(path.read_bytes()))
    # (inspect reads a JSON file's header alone since JSON opens lazily: a load finds it)
    assert main(["convert", str(path), str(tmp_path / "checked.npz"), "-q"]) == 1
    assert "tensor 'target'" in capsys.readouterr().err
    assert main(["convert", str(path), str(tmp_path / "saved.npz"), "--no-verify", "-q"]) == 0
    assert ws.load(tmp_path / "saved.npz")["target"].max() == 5.0
    assert main(["inspect", str(path), "--no-verify"]) == 0


def test_safetensors_reserved_key_with_a_damaged_name_is_refused(tmp_path: Path) -> None:
    """Renamed by damage, a checksum key would otherwise read as plain metadata (and two
    renamed keys would defeat the rule that both checksum keys come together)."""
    path = tmp_path / "w.safetensors"
    ws.save(W, path)
    data = path.read_bytes()
    for old, new in ((b"weightstore.crc32", b"weightstore.crc-0"),
                     (b"weightstore.header_crc32", b"weightstore.header-crc32")):
        data = data.replace(b'"' + old + b'"', b'"' + new + b'"')
    path.write_bytes(data)
    with pytest.raises(ws.FormatError, match="reserved keys"):
        ws.load(path)
    with pytest.raises(ws.UnsupportedError, match="reserves"):
        ws.save(ws.Weights({"a": TARGET}, metadata={"weightstore.orders": "x"}), path)
