"""The shared suite every registered codec runs: exact round trips and clean refusals.

A codec added to the registry is picked up here automatically. Checks that only
some codecs can pass are keyed on the codec's declared attributes
(``lossless``, ``supports_metadata``, ``checksums``, ``single_tensor``, ``writable``), never
on its name. A one-tensor format (``single_tensor``) round-trips each corpus tensor alone,
and its tensor is expected back under the file's name. A read-only codec (``writable =
False``) is checked on the first file with its first extension under ``tests/data`` (made
by the tool that writes the format) wherever a test would write one; tests of writing itself
are not generated for it (WRITERS).
"""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from corpus import corpus

import weightstore as ws
from weightstore import registry
from weightstore.codec import Codec
from weightstore.model import arrays_identical
from weightstore.testing import as_stored, same_content

CODECS = ws.formats()
IDS = [c.name for c in CODECS]
#: The codecs that write: a test of writing is not generated for a read-only codec.
WRITERS = [c for c in CODECS if c.writable]
WRITER_IDS = [c.name for c in WRITERS]


def _usable(cls: type[Codec]) -> type[Codec]:
    """Skip a codec whose optional package is missing (its extra is not installed)."""
    try:
        cls()
    except ws.MissingDependencyError as e:  # pragma: no cover - depends on extras
        pytest.skip(f"{cls.name}: {e}")
    return cls


def _path(tmp_path: Path, cls: type[Codec], stem: str = "w") -> Path:
    return tmp_path / f"{stem}{cls.extensions[0]}"


DATA = Path(__file__).resolve().parent / "data"


def _writable(cls: type[Codec]) -> bool:
    return cls.writable


def _sample(cls: type[Codec]) -> Path:
    """A file of a read-only codec's format, made by the tool that writes it."""
    found = sorted(DATA.rglob(f"*{cls.extensions[0]}"))
    assert found, f"{cls.name} is read only: tests/data needs a *{cls.extensions[0]} file"
    return found[0]



def _save(cls: type[Codec], weights: ws.Weights, path: Path) -> None:
    if not _writable(cls):
        # a read-only codec's sample stands for the file a test would write
        path.write_bytes(_sample(cls).read_bytes())
        return
    try:
        ws.save(weights, path, cls.name)
    except ws.MissingDependencyError as e:  # pragma: no cover - depends on extras
        pytest.skip(str(e))


def _corpus_for(cls: type[Codec]) -> ws.Weights:
    """The corpus as *cls* can hold it (a one-tensor format: a 2-D float tensor)."""
    tensors, metadata = corpus()
    if getattr(cls, "single_tensor", False):
        return ws.Weights({"w": tensors["dtypes/float64_random"]})
    return ws.Weights(tensors, metadata if cls.supports_metadata else None)


def _corpus_cases(cls: type[Codec]) -> list[ws.Weights]:
    """The round trips to make: the corpus whole, or each tensor alone for a one-tensor
    format."""
    if not getattr(cls, "single_tensor", False):
        return [_corpus_for(cls)]
    tensors, _ = corpus()
    return [ws.Weights({"w": array}) for array in tensors.values()]


def assert_identical(expected: ws.Weights | dict, got: ws.Weights) -> None:
    assert list(got) == list(expected), "tensor names or order differ"
    for name in expected:
        e, g = np.asarray(expected[name]), got[name]
        assert arrays_identical(e, g), f"{name}: {e.dtype}{e.shape} != {g.dtype}{g.shape}"


@pytest.fixture(scope="module")
def reference(data_dir: Path) -> dict[str, np.ndarray]:
    with open(data_dir / "sample_weight.pkl", "rb") as f:
        return pickle.load(f)  # the trusted reference file, read as the book does


# --- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("cls", WRITERS, ids=WRITER_IDS)
def test_corpus_round_trip_is_bit_exact(cls: type[Codec], tmp_path: Path) -> None:
    _usable(cls)
    for weights in _corpus_cases(cls):
        path = _path(tmp_path, cls)
        _save(cls, weights, path)
        got = ws.load(path)
        if cls.lossless:
            assert_identical(as_stored(cls, weights, path), got)
        if cls.supports_metadata:
            assert got.metadata == weights.metadata
        assert_identical(got, ws.load(path, cls.name))  # explicit format gives the same


@pytest.mark.parametrize("cls", WRITERS, ids=WRITER_IDS)
def test_save_never_mutates_the_callers_arrays(cls: type[Codec], tmp_path: Path) -> None:
    tensors, _ = corpus()
    before = {k: (v.copy(), v.flags.c_contiguous, v.flags.f_contiguous, v.dtype.byteorder)
              for k, v in tensors.items()}
    for weights in ([ws.Weights({k: v}) for k, v in tensors.items()]
                    if getattr(cls, "single_tensor", False) else [ws.Weights(tensors)]):
        _save(_usable(cls), weights, _path(tmp_path, cls))
    for k, v in tensors.items():
        copy, c, f, order = before[k]
        assert arrays_identical(copy, v) and (c, f, order) == (
            v.flags.c_contiguous, v.flags.f_contiguous, v.dtype.byteorder)


@pytest.mark.parametrize("cls", WRITERS, ids=WRITER_IDS)
def test_reference_weights_through_the_cli_and_back_to_pickle(
    cls: type[Codec], tmp_path: Path, sample_weight_path: Path, reference: dict
) -> None:
    """Done-when of the core issue: pkl -> EXT -> pkl is bit-identical, and the final
    pickle loads with plain pickle.load as a dict of arrays."""
    from weightstore.cli.main import main

    _usable(cls)
    sources = [sample_weight_path]
    if getattr(cls, "single_tensor", False):  # one pickle per tensor, each through the codec
        sources = []
        for name, array in reference.items():
            one = tmp_path / f"{name}.pkl"
            one.write_bytes(pickle.dumps({name: array}))
            sources.append(one)
    plain: dict = {}
    for source in sources:
        mid = _path(tmp_path, cls, source.stem)
        back = tmp_path / "back.pkl"
        assert main(["convert", str(source), str(mid), "-q"]) == 0
        assert main(["convert", str(mid), str(back), "-q"]) == 0
        with open(back, "rb") as f:
            part = pickle.load(f)
        assert type(part) is dict
        plain.update(part)
    assert set(plain) == set(reference)
    for name, array in reference.items():
        assert type(plain[name]) is np.ndarray
        assert arrays_identical(array, plain[name]), name


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_content_beats_a_misleading_extension(cls: type[Codec], tmp_path: Path) -> None:
    weights = _corpus_for(_usable(cls))
    right = _path(tmp_path, cls)
    _save(cls, weights, right)
    other = ".csv" if cls.name != "csv" else ".json"
    wrong = tmp_path / f"misnamed{other}"
    wrong.write_bytes(right.read_bytes())
    got = ws.load(wrong)
    if not _writable(cls):
        assert_identical(ws.load(right, cls.name), got)
    elif cls.lossless:
        expected = as_stored(cls, weights, right)
        if cls.single_tensor:  # named after the file it is read from
            expected = ws.Weights({"misnamed": expected["w"]})
        assert_identical(expected, got)


# --- bad input ---------------------------------------------------------------------


def _valid_bytes(cls: type[Codec], tmp_path: Path) -> bytes:
    path = _path(tmp_path, cls, "valid")
    _save(cls, _corpus_for(_usable(cls)), path)
    return path.read_bytes()


def _load_bytes(cls: type[Codec], tmp_path: Path, data: bytes, name: str = "bad") -> ws.Weights:
    path = _path(tmp_path, cls, name)
    path.write_bytes(data)
    return ws.load(path, cls.name)


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_empty_file_is_refused(cls: type[Codec], tmp_path: Path) -> None:
    path = _path(tmp_path, cls, "empty")
    path.write_bytes(b"")
    with pytest.raises(ws.FormatError, match="empty|0 bytes") as e:
        ws.load(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
@pytest.mark.parametrize("fraction", [0.0001, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_refused(cls: type[Codec], tmp_path: Path, fraction: float) -> None:
    data = _valid_bytes(cls, tmp_path)
    cut = max(1, int(len(data) * fraction))
    if not cls.detects_cut_between_tensors:
        # A text format without a trailer cannot tell a cut between two tensors from a
        # file with fewer tensors: it must then give back exactly the tensors before it.
        try:
            got = _load_bytes(cls, tmp_path, data[:cut])
        except ws.WeightstoreError as e:
            assert "bad" in str(e)
            return
        full = _load_bytes(cls, tmp_path, data, "full")
        assert 0 < len(got) < len(full) and list(got) == list(full)[: len(got)]
        assert_identical({k: full[k] for k in got}, got)
        return
    with pytest.raises(ws.WeightstoreError) as e:
        _load_bytes(cls, tmp_path, data[:cut])
    assert "bad" in str(e.value)  # the message names the file


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_wrong_magic_is_refused(cls: type[Codec], tmp_path: Path) -> None:
    data = _valid_bytes(cls, tmp_path)
    with pytest.raises(ws.WeightstoreError) as e:
        _load_bytes(cls, tmp_path, b"\x00GARBAGE" + data[8:])
    assert "bad" in str(e.value)


def test_unrecognisable_content_without_format_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ws.UnknownFormatError, match="noise.bin"):
        ws.load(path)


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_noise_named_as_the_codecs_file_is_its_format_error(cls: type[Codec],
                                                            tmp_path: Path) -> None:
    """By extension or by explicit format, the codec itself refuses the bytes, naming
    the file."""
    _usable(cls)
    noise = bytes(range(256)) * 4
    by_extension = _path(tmp_path, cls, "noise")
    by_extension.write_bytes(noise)
    plain = tmp_path / "noise.bin"
    plain.write_bytes(noise)
    for path, fmt in ((by_extension, None), (plain, cls.name)):
        with pytest.raises((ws.FormatError, ws.UnknownFormatError)) as e:
            ws.load(path, fmt)
        assert str(path) in str(e.value)


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_corrupted_bytes_never_escape_as_other_exceptions(cls: type[Codec], tmp_path: Path) -> None:
    """Random byte changes either raise the library's error or load; nothing else.
    Codecs that carry checksums must detect every change."""
    data = _valid_bytes(cls, tmp_path)
    clean = _load_bytes(cls, tmp_path, data, "clean")
    rng = random.Random(f"corrupt-{cls.name}")
    undetected = 0
    for i in range(40):
        damaged = bytearray(data)
        pos = rng.randrange(len(damaged))
        damaged[pos] ^= rng.randrange(1, 256)
        try:
            got = _load_bytes(cls, tmp_path, bytes(damaged), f"bad{i}")
        except ws.WeightstoreError as e:
            assert f"bad{i}" in str(e)
        else:
            # A change to bytes that carry nothing (zip's "version made by", HDF5's free
            # space) loads the same content: not a change that went unnoticed.
            undetected += not same_content(got, clean)
    if getattr(cls, "checksums", False):
        assert undetected == 0


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_directory_and_missing_file_are_refused(cls: type[Codec], tmp_path: Path) -> None:
    folder = _path(tmp_path, cls, "folder")
    folder.mkdir()
    with pytest.raises(ws.FileAccessError, match="directory"):
        ws.load(folder)
    with pytest.raises(ws.FileAccessError, match="no such file"):
        ws.load(_path(tmp_path, cls, "missing"))
    with pytest.raises(ws.FileAccessError, match="directory"):
        ws.save({"a": np.zeros(1)}, folder, cls.name)


@pytest.mark.parametrize("cls", WRITERS, ids=WRITER_IDS)
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    cls: type[Codec], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _path(tmp_path, cls)
    _save(cls, ws.Weights({"old": np.arange(3.0)}), path)
    old = path.read_bytes()

    def failing_write(self: Codec, weights: ws.Weights, fileobj, *, path: str) -> None:
        fileobj.write(b"partial output")
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-write

    monkeypatch.setattr(cls, "write", failing_write)
    with pytest.raises(KeyboardInterrupt):
        ws.save({"new": np.arange(5.0)}, path, cls.name)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == [path.name]


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_codec_options_are_validated(cls: type[Codec]) -> None:
    with pytest.raises(ws.OptionError, match="no_such_option"):
        cls(no_such_option=1)
    codec = cls()
    assert codec == cls(**{k: v for k, v in codec.get_config().items() if k != "id"})
    assert cls.name in repr(codec) or type(codec).__name__ in repr(codec)


# --- registry ----------------------------------------------------------------------


def test_every_codec_module_is_registered() -> None:
    import pkgutil

    import weightstore.codecs as pkg

    modules = {m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")}
    registered = {c.__module__.rsplit(".", 1)[1] for c in CODECS}
    assert modules <= registered


def test_extensions_map_back_to_their_codec() -> None:
    from weightstore import registry

    for cls in CODECS:
        assert registry.get_codec(cls.name) is cls
        for ext in cls.extensions:
            found = registry.codec_for_path(f"w{ext}")
            assert found is not None and found[0] is cls


def test_unknown_format_name_lists_the_known_ones() -> None:
    with pytest.raises(ws.UnknownFormatError, match="json"):
        ws.get_codec("no-such-format")


def test_third_party_codecs_register_through_the_entry_point_group(monkeypatch) -> None:
    """A package announcing a Codec under 'weightstore.codecs' is found by name and extension."""
    from importlib import metadata

    from weightstore import registry

    class RawCodec(Codec):
        name = "thirdparty-raw"
        extensions = (".tpraw",)

    class FakeEntryPoint:
        name, value = "thirdparty-raw", "thirdparty:RawCodec"

        def load(self):
            return RawCodec

    monkeypatch.setattr(metadata, "entry_points",
                        lambda group: [FakeEntryPoint()] if group == "weightstore.codecs" else [])
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    monkeypatch.setattr(registry, "_CLASSES", dict(registry._CLASSES))
    assert registry.get_codec("thirdparty-raw") is RawCodec
    assert registry.codec_for_path("w.tpraw")[0] is RawCodec


def test_npz_member_pointing_past_the_end_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    ws.save({"a": np.zeros(1000)}, path)
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    # keep the central directory but drop most of the member's data
    eocd = data.rfind(b"PK\x05\x06")
    cd = data.rfind(b"PK\x01\x02")
    local_len = cd
    cut.write_bytes(data[:200] + data[cd:eocd] + data[eocd:])
    with pytest.raises(ws.FormatError, match="cut.npz"):
        ws.load(cut)
    assert local_len > 200


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_config_round_trips(cls: type[Codec]) -> None:
    """``from_config(get_config())`` rebuilds an equal codec, from the class and by id."""
    codec = cls()
    config = codec.get_config()
    assert config["id"] == cls.name
    assert cls.from_config(config) == codec
    assert registry.codec_from_config(config) == codec
    with pytest.raises(ws.OptionError):
        cls.from_config({**config, "id": "not-" + cls.name})


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_the_registry_entry_tells_the_format_as_the_codec_does(cls: type[Codec],
                                                               tmp_path: Path) -> None:
    """The registry tells a file's format without importing its codec: its content test
    must agree with the codec's own, on the codec's files and on every other codec's."""
    head = _valid_bytes(cls, tmp_path)[: registry.SNIFF_BYTES]
    entry = registry._ENTRIES[cls.name]
    assert entry.claims(head) and cls.sniff(head)
    assert registry.sniff(head) is cls
    for other in CODECS:
        if other is not cls:
            assert registry._ENTRIES[other.name].claims(head) == other.sniff(head)


def test_import_weightstore_imports_nothing_until_a_name_is_used() -> None:
    """Every public name resolves, from the module that defines it; none is imported by
    ``import weightstore`` itself (issue 19)."""
    code = ("import sys, weightstore as ws\n"
            "print(sorted(m for m in sys.modules if m.startswith('weightstore.')))\n"
            "missing = [n for n in ws.__all__ if getattr(ws, n, None) is None]\n"
            "print(missing, ws.open is ws.open_weights, ws.formats is ws.registry.codecs,"
            " set(ws.__all__) <= set(dir(ws)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["[]", "[] True True True"], out


def test_import_weightstore_imports_no_codec(tmp_path: Path) -> None:
    """``import weightstore`` loads no codec module and none of their libraries (nor the
    comparison, cluster, lab, CLI or net modules); opening a
    pickle imports the pickle codec alone."""
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps({"W": np.zeros(3, np.float32)}, protocol=4))
    code = ("import sys, weightstore as ws\n"
            "before = sorted(m for m in sys.modules if m.startswith('weightstore.codecs.')"
            " or m in ('h5py', 'safetensors', 'zstandard', 'weightstore.compare',"
            " 'weightstore.cluster', 'net', 'weightstore.lab', 'weightstore.cli'))\n"
            f"ws.load({str(path)!r})\n"
            "after = sorted(m for m in sys.modules if m.startswith('weightstore.codecs.')"
            " and not m.startswith('weightstore.codecs._'))\n"  # shared helpers are no codec
            "print(before, after)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[] ['weightstore.codecs.pickle_codec']", out
