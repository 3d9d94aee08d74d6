"""HDF5 files made by h5py that the codec must refuse, read, or carry through HDF5 -> HDF5:
external storage, empty dataspaces, h5py's bool enum, complex data, empty and compound
attributes; names and metadata keys HDF5 cannot take."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import weightstore as ws
from weightstore.codecs.hdf5 import ATTRS_PREFIX, HEADER_ATTR


def _h5(path: Path, build) -> Path:  # type: ignore[no-untyped-def]
    with h5py.File(path, "w") as f:
        build(f)
    return path


def test_external_storage_is_refused_unread(tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"\0" * 16)
    path = _h5(tmp_path / "x.h5", lambda f: f.create_dataset(
        "x", shape=(4,), dtype="f4", external=[(str(outside), 0, 16)]))
    with pytest.raises(ws.UnsafeFileError, match="dataset 'x': expected data stored in this "
                                                 "file, found external storage"):
        ws.load(path)


def test_an_empty_dataspace_is_refused(tmp_path: Path) -> None:
    path = _h5(tmp_path / "x.h5", lambda f: f.create_dataset("x", data=h5py.Empty("f4")))
    with pytest.raises(ws.FormatError, match="dataset 'x': expected an array, found an empty "
                                             "dataspace"):
        ws.load(path)


def test_complex_data_is_skipped_with_a_warning_or_refused_when_strict(tmp_path: Path) -> None:
    def build(f) -> None:  # type: ignore[no-untyped-def]
        f["c"] = np.array([1 + 2j])
        f["x"] = np.zeros(2)

    path = _h5(tmp_path / "x.h5", build)
    with pytest.warns(UserWarning, match="skipped 1 entry .*'c' \\(a complex128 dataset"):
        assert list(ws.load(path)) == ["x"]
    with pytest.raises(ws.UnsupportedError, match="entry 'c': not held by weightstore"):
        ws.load(path, strict=True)


def test_h5pys_bool_enum_reads_as_bool_and_other_enums_as_their_integers(
        tmp_path: Path) -> None:
    def build(f) -> None:  # type: ignore[no-untyped-def]
        f.create_dataset("m", data=np.array([True, False]))  # h5py: enum FALSE=0, TRUE=1
        f.create_dataset("n", data=np.int8([1, 0]),
                         dtype=h5py.enum_dtype({"OFF": 0, "ON": 1}, basetype="i1"))

    path = _h5(tmp_path / "m.h5", build)
    with h5py.File(path) as f:
        assert f["m"].id.get_type().get_class() == h5py.h5t.ENUM
    got = ws.load(path)
    assert got["m"].dtype == np.bool_ and got["m"].tolist() == [True, False]
    assert got["n"].dtype == np.int8 and got["n"].tolist() == [1, 0]


def _attributes(f) -> None:  # type: ignore[no-untyped-def]
    f["x"] = np.arange(2.0)
    f.attrs["empty"] = h5py.Empty("f8")
    f.attrs["pair"] = np.zeros(1, dtype=[("a", "i4"), ("b", "f4")])  # compound: no JSON form
    f.create_group("g").attrs["only"] = np.zeros(1, dtype=[("a", "i4")])


def test_empty_and_compound_attributes_through_hdf5_and_back(tmp_path: Path) -> None:
    src = _h5(tmp_path / "a.h5", _attributes)
    with pytest.warns(UserWarning, match="attribute 'pair' of the root group: kept as a note "
                                         "only"):
        weights = ws.load(src)
    root = weights.metadata[ATTRS_PREFIX + "/"]
    assert '"empty":{"dtype":"empty","shape":null,"value":null}' in root
    assert '"pair":{"unsupported"' in root
    out = tmp_path / "b.h5"
    with pytest.warns(UserWarning, match="\\['pair'\\]: not written"):
        ws.save(weights, out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left to warn about
        again = ws.load(out)  # and its header checksum holds (it covers what was written)
    assert again.metadata == {ATTRS_PREFIX + "/": '{"empty":{"dtype":"empty","shape":null,'
                                                  '"value":null}}'}
    with h5py.File(out) as f:
        assert isinstance(f.attrs["empty"], h5py.Empty) and "pair" not in f.attrs
        assert "g" not in f  # a group that held only the unwritable attribute
    assert np.array_equal(again["x"], [0.0, 1.0])


def test_names_and_keys_hdf5_cannot_take_are_refused_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    with pytest.raises(ws.UnsupportedError, match="tensor 'a/./b': expected no part '.'"):
        ws.save({"a/./b": np.zeros(1)}, out)
    with pytest.raises(ws.UnsupportedError, match=f"metadata key '{HEADER_ATTR}'"):
        ws.save(ws.Weights({"x": np.zeros(1)}, metadata={HEADER_ATTR: "1"}), out)
    with pytest.raises(ws.UnsupportedError, match="a root attribute name not also plain "
                                                  "metadata or reserved"):
        ws.save(ws.Weights({"x": np.zeros(1)}, metadata={
            "k": "v", ATTRS_PREFIX + "/": '{"k":{"dtype":"int64","shape":[],"value":1}}'}), out)
    with pytest.raises(ws.UnsupportedError, match="a JSON object of typed attributes"):
        ws.save(ws.Weights({"x": np.zeros(1)}, metadata={ATTRS_PREFIX + "/": "{nope"}), out)
    assert not out.exists()


@pytest.mark.parametrize("reopen", ["by /proc/self/fd", "as a file object"])
def test_open_reads_the_file_it_was_given_when_its_name_now_holds_another(
        tmp_path: Path, reopen: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The HDF5 library opens the file again through /proc/self/fd (its reads then in C)
    or, where that is refused, reads through weightstore's own file object: either way
    the file that was opened, not whatever file its name holds later."""
    from weightstore.codecs import hdf5

    if reopen == "by /proc/self/fd" and not hdf5._PROC_FD:
        pytest.skip("no /proc/self/fd on this system")  # the other case covers the rest
    if reopen == "as a file object":
        real = h5py.File

        def no_paths(target, *args, **kwargs):  # type: ignore[no-untyped-def]
            if isinstance(target, str):
                raise OSError("refused")
            return real(target, *args, **kwargs)

        monkeypatch.setattr(hdf5.h5py, "File", no_paths)
    path = tmp_path / "w.h5"
    old = {"a": np.arange(6, dtype=np.float32), "b/c": np.ones((2, 3), np.int16)}
    ws.save(ws.Weights(old), path)
    with ws.open(path, mmap=False) as w:
        ws.save(ws.Weights({"a": -np.arange(6, dtype=np.float32)}), path)  # a new file there
        assert w._source._f.filename.startswith("/proc/self/fd/") == (
            reopen == "by /proc/self/fd")
        assert sorted(w) == sorted(old)
        for name, array in old.items():
            np.testing.assert_array_equal(w[name], array)
