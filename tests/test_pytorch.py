"""PyTorch checkpoints: files torch itself wrote (tests/data/pytorch, made by
make_pytorch.py with torch 2.13.0) read without torch, converted exactly, and refused
clearly when damaged or hostile.

These tests never import torch and always run. The checks that need torch itself
(torch.load of what we write) are in test_pytorch_torch.py, an optional group.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore.codecs.pytorch import ALIGNMENT, LEGACY_HEAD
from weightstore.model import arrays_identical, canonical_dtype
from weightstore.testing import as_stored

DATA = Path(__file__).resolve().parent / "data" / "pytorch"
BF16 = "@bfloat16"


def expected(name: str) -> dict[str, np.ndarray]:
    """What torch held when it wrote fixture *name* (saved beside it with numpy)."""
    with np.load(DATA / f"{name}.expected.npz") as z:
        names = [str(n) for n in z["names"]]
        out = {}
        for i, n in enumerate(names):
            array = z[f"t{i}"]
            if n.endswith(BF16):
                n, array = n[: -len(BF16)], array.view(canonical_dtype("bfloat16"))
            out[n] = array
    return out


def assert_same(want: dict[str, np.ndarray], got: ws.Weights | dict) -> None:
    assert list(got) == list(want)
    for k, v in want.items():
        assert arrays_identical(v, got[k]), k


FIXTURES = {
    "checkpoint": "checkpoint.pt",
    "legacy": "legacy.pt",
    "bigendian": "bigendian.pt",
    "sharded": "sharded/pytorch_model.bin.index.json",
    "uint16": "uint16.pt",
}


def test_fixtures_are_small_and_made_by_torch() -> None:
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total < 500_000
    with zipfile.ZipFile(DATA / "checkpoint.pt") as zf:  # torch's own records, untouched
        assert {"checkpoint/version", "checkpoint/byteorder",
                "checkpoint/.data/serialization_id"} <= set(zf.namelist())
    assert (DATA / "legacy.pt").read_bytes().startswith(LEGACY_HEAD)


@pytest.mark.parametrize("name", FIXTURES)
def test_torch_written_files_load_exactly(name: str) -> None:
    got = ws.load(DATA / FIXTURES[name])
    assert_same(expected(name), got)


@pytest.mark.parametrize("name", FIXTURES)
def test_open_maps_and_reads_the_same(name: str) -> None:
    want = expected(name)
    for mmap in (True, False):
        with ws.open(DATA / FIXTURES[name], mmap=mmap) as lazy:
            assert lazy.lazy and list(lazy) == list(want)
            for k, v in want.items():
                assert arrays_identical(v, lazy[k]), (k, mmap)


def test_nested_checkpoint_names_and_metadata() -> None:
    got = ws.load(DATA / "checkpoint.pt")
    assert got.metadata["epoch"] == "3"
    assert got.metadata["note"] == "made by make_pytorch.py"
    assert got.metadata["optimizer/param_groups/0/lr"] == "0.001"
    assert got.metadata["optimizer/param_groups/0/params/3"] == "3"
    assert "optimizer/state/0/exp_avg" in got and "optimizer/state/3/exp_avg_sq" in got
    assert got["model/fc2.weight"].dtype.name == "bfloat16"
    assert got["model/scale"].shape == ()
    # two views of one storage (arange(20)): the first half reshaped, the second at offset 10
    assert got["model/shared.first"].ravel().tolist() == list(range(10))
    assert got["model/shared.second"].tolist() == list(range(10, 20))
    # the transposed view is its base's transpose: the strided view takes from the same base
    assert arrays_identical(got["model/strided"], got["model/transposed"].T[::2, 1::2])


def test_the_torch_checkpoint_converts_to_safetensors_exactly(tmp_path: Path) -> None:
    """Done-when: shared-storage views, bfloat16 and a nested optimizer state."""
    out = tmp_path / "ckpt.safetensors"
    ws.convert(DATA / "checkpoint.pt", out)
    back = ws.load(out)
    assert_same(expected("checkpoint"), back)
    assert back.metadata == ws.load(DATA / "checkpoint.pt").metadata
    with open(out, "rb") as f:  # the header as any safetensors reader sees it
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    assert header["model/fc2.weight"]["dtype"] == "BF16"
    assert header["model/transposed"]["shape"] == [6, 4]


def test_inspect_reads_the_pickle_alone() -> None:
    info = ws.inspect(DATA / "checkpoint.pt")
    assert info.format == "pytorch"
    names = {t.name: t for t in info.tensors}
    assert names["model/transposed"].shape == (6, 4)
    assert names["model/fc2.weight"].dtype == "bfloat16"
    assert info.metadata["epoch"] == "3"


@pytest.mark.parametrize("target", [c for c in ws.formats()
                                    if c.name != "pytorch" and not c.single_tensor
                                    and c.writable],
                         ids=lambda c: c.name)
def test_converts_to_every_format_and_back_bit_exact(target: type, tmp_path: Path) -> None:
    source = DATA / "legacy.pt"
    want = ws.load(source)
    mid = tmp_path / f"mid{target.extensions[0]}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # regrouping in nested formats
        try:
            ws.convert(source, mid, to=target.name)
        except ws.UnsupportedError as e:  # npz cannot hold bfloat16: the rest must go
            assert "bfloat16" in str(e), e
            want = ws.Weights({k: v for k, v in want.items() if v.dtype.name != "bfloat16"})
            ws.save(want, mid, target.name)
        back = tmp_path / "back.pt"
        ws.convert(mid, back)
    got = ws.load(back)
    assert_same(dict(as_stored(target, want)), got)


def test_npy_and_gzip_convert_with_pytorch(tmp_path: Path) -> None:
    state = ws.load(DATA / "checkpoint.pt")
    one = tmp_path / "transposed.npy"
    ws.save({"transposed": state["model/transposed"]}, one)
    assert np.load(one).tolist() == state["model/transposed"].tolist()
    pt = tmp_path / "one.pt.gz"
    ws.convert(one, pt)
    assert arrays_identical(ws.load(pt)["transposed"], state["model/transposed"])
    ws.convert(DATA / "checkpoint.pt", tmp_path / "ckpt.pt.gz")
    assert ws.load(tmp_path / "ckpt.pt.gz").equal(state)


def test_writing_aligns_records_and_sniffs(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    ws.save(ws.load(DATA / "legacy.pt"), path, "pytorch")
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            head = path.read_bytes()[info.header_offset:info.header_offset + 30]
            start = info.header_offset + 30 + struct.unpack("<HH", head[26:30])[0] + \
                struct.unpack("<HH", head[26:30])[1]
            assert start % ALIGNMENT == 0, info.filename
        assert zf.namelist()[0] == "archive/data.pkl"
    misnamed = tmp_path / "w.csv"
    shutil.copy(path, misnamed)
    assert ws.load(misnamed).equal(ws.load(DATA / "legacy.pt"))


def test_dtype_we_cannot_hold_is_skipped_and_named() -> None:
    with pytest.warns(ws.SkippedEntriesWarning, match=r"'w8' \(a torch.float8_e4m3fn tensor"):
        got = ws.load(DATA / "float8.pt")
    assert "w8" not in got
    with pytest.raises(ws.UnsupportedError, match=r"entry 'w8'.*float8_e4m3fn") as info:
        ws.load(DATA / "float8.pt", strict=True)
    assert info.value.path == str(DATA / "float8.pt")


def test_sharded_index_opens_lazily() -> None:
    with ws.open(DATA / "sharded" / "pytorch_model.bin.index.json") as lazy:
        assert lazy.lazy and lazy.format == "pytorch"
        assert len(lazy.files) == 3


# --- damaged and hostile ----------------------------------------------------------------


def _rezip(src: Path, dst: Path, change: dict[str, bytes]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change.get(info.filename.split("/", 1)[1],
                                                    zin.read(info)))


def test_other_values_are_reported_not_dropped(tmp_path: Path) -> None:
    data = pickle.dumps({"w": None, "blob": b"\x00\x01", "tags": {1, 2}}, protocol=2)
    path = tmp_path / "odd.pt"
    _rezip(DATA / "uint16.pt", path, {"data.pkl": data})
    with pytest.warns(ws.SkippedEntriesWarning, match=r"'blob' \(a bytes\).*'tags' \(a set\)"):
        got = ws.load(path)
    assert len(got) == 0 and got.metadata == {"w": "None"}


def test_a_compressed_checkpoint_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "deflated.pt"
    with zipfile.ZipFile(DATA / "bigendian.pt") as zin, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    assert_same(expected("bigendian"), ws.load(path))


def test_storage_size_must_match_its_member(tmp_path: Path) -> None:
    path = tmp_path / "short.pt"
    with zipfile.ZipFile(DATA / "uint16.pt") as zf:
        member = next(n for n in zf.namelist() if "/data/" in n)
        _rezip(DATA / "uint16.pt", path, {member.split("/", 1)[1]: zf.read(member)[:-2]})
    with pytest.raises(ws.FormatError, match=r"8 bytes .*found 6 bytes"):
        ws.load(path)


def test_damaged_storage_fails_its_crc(tmp_path: Path) -> None:
    path = tmp_path / "zip.pt"
    ws.save(ws.load(DATA / "legacy.pt"), path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("archive/data/0")
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + 1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ws.ChecksumError, match="fc1.weight"):
        ws.load(path)
    assert ws.load(path, verify=False)["fc1.weight"].shape == (5, 3)


def test_unsafe_global_is_refused_before_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            import os

            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pt"
    _rezip(DATA / "uint16.pt", path, {"data.pkl": pickle.dumps({"w": Evil()}, protocol=2)})
    with pytest.raises(ws.UnsafeFileError, match=r"global (posix|os)\.system"):
        ws.load(path)
    assert not marker.exists()


def test_a_torchscript_archive_is_named_with_what_to_do() -> None:
    """torch.jit.save writes a zip too: it is not a checkpoint, and the error says so
    (however the file is read), never "expected only .npy members"."""
    for fmt in (None, "pytorch", "npz"):
        with pytest.raises(ws.WeightstoreError, match=r"TorchScript archive.*torch\.jit\.load"):
            ws.load(DATA / "scripted.pt", fmt)


def test_a_checkpoint_read_as_npz_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    shutil.copy(DATA / "checkpoint.pt", path)
    with pytest.raises(ws.FormatError, match=r"a PyTorch checkpoint .*format 'pytorch'") as e:
        ws.load(path, "npz")
    assert "only .npy members in an npz" not in str(e.value)
