"""The PyTorch codec on damaged legacy files (each of the leading pickles, the storage keys,
a cut) and on what it will not write; and the stored size of a shard set."""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws

LEGACY = Path(__file__).resolve().parent / "data" / "pytorch" / "legacy.pt"


def _legacy_parts() -> list[bytes]:
    """legacy.pt (made by torch) cut into its five pickles (magic number, protocol
    version, sys_info, the data, the storage keys) and the raw storages after them;
    found by walking the opcodes, nothing is unpickled."""
    raw = LEGACY.read_bytes()
    f = io.BytesIO(raw)
    ends = [0]
    for _ in range(5):
        for _op in pickletools.genops(f):
            pass
        ends.append(f.tell())
    return [raw[a:b] for a, b in zip(ends, ends[1:], strict=False)] + [raw[ends[-1]:]]


def test_a_file_without_the_magic_number_is_no_legacy_checkpoint(tmp_path: Path) -> None:
    parts = _legacy_parts()
    parts[0] = pickle.dumps(12345, protocol=2)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"".join(parts))
    with pytest.raises(ws.UnknownFormatError, match="expected a PyTorch checkpoint"):
        ws.load(bad, "pytorch")


def test_the_parts_put_back_together_read_as_the_file() -> None:
    parts = _legacy_parts()
    assert b"".join(parts) == LEGACY.read_bytes()
    assert pickle.loads(parts[1]) == 1001  # plain values: safe to unpickle in a test
    assert pickle.loads(parts[2])["little_endian"] is True


@pytest.mark.parametrize(("index", "value", "message"), [
    (1, 999, "protocol version: expected 1001, found 999"),
    (2, {"protocol_version": 1001, "type_sizes": {}}, "sys_info: expected a dict with "
                                                      "little_endian"),
    (2, "little", "sys_info: expected a dict with little_endian"),
    (4, ["1", "2"], "storage keys"),
])
def test_a_damaged_leading_pickle_is_named(tmp_path: Path, index: int, value: object,
                                           message: str) -> None:
    parts = _legacy_parts()
    parts[index] = pickle.dumps(value, protocol=2)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"".join(parts))
    with pytest.raises(ws.FormatError, match=message) as e:
        ws.load(bad)
    assert str(bad) in str(e.value)


def test_a_cut_or_extended_legacy_file_is_refused_naming_the_place(tmp_path: Path) -> None:
    data = LEGACY.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[:-10])
    with pytest.raises(ws.FormatError, match=f"found a file of {len(data) - 10:,} bytes "
                                             "\\(truncated\\)"):
        ws.load(bad)
    bad.write_bytes(data + b"\0" * 10)  # bytes after the last storage: not torch's file
    with pytest.raises(ws.FormatError, match=f"end of file: expected {len(data):,} bytes, "
                                             f"found {len(data) + 10:,}"):
        ws.load(bad)


def test_the_metadata_key_is_not_a_tensor_name_when_there_is_metadata(tmp_path: Path) -> None:
    weights = ws.Weights({"__metadata__": np.zeros(2)}, metadata={"k": "v"})
    with pytest.raises(ws.UnsupportedError, match="tensor '__metadata__'"):
        ws.save(weights, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_thousands_of_tensors_are_written_in_batches_torch_style(tmp_path: Path) -> None:
    """pickle writes dict items in batches of 1,000 (SETITEMS after each MARK); a file of
    2,500 tensors reads back whole, in order."""
    tensors = {f"t{i}": np.full(1, i, np.int32) for i in range(2_500)}
    out = tmp_path / "many.pt"
    ws.save(tensors, out)
    got = ws.load(out)
    assert list(got) == list(tensors)
    assert all(int(got[k][0]) == v[0] for k, v in tensors.items())


def test_stored_size_of_a_shard_set_counts_the_index_and_every_shard(tmp_path: Path) -> None:
    tensors = {f"w{i}": np.ones(50, np.float32) for i in range(6)}
    index = Path(ws.save(tensors, tmp_path / "m.npz", max_shard_size=500))
    files = list(tmp_path.iterdir())
    assert len(files) > 2 and index in files
    assert ws.api.stored_size(index) == sum(p.stat().st_size for p in files)
    single = tmp_path / "one.npz"
    ws.save(tensors, single)
    assert ws.api.stored_size(single) == single.stat().st_size
