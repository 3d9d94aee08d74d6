"""Property-based fuzzing of every registered codec (hypothesis, derandomized).

Random tensor sets round-trip exactly; random damage to valid files (byte flips,
cuts, insertions, deletions, numbers in text headers and binary length fields
overwritten) either raises the library's own error or, where the format cannot
tell, loads; any other exception is a bug in the codec. Codecs that declare
``checksums`` must never give back changed content. A codec added to the
registry joins automatically. ``scripts/fuzz.py`` runs the same cases longer.
"""

from __future__ import annotations

import random
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from corpus import corpus
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_codecs import WRITER_IDS, WRITERS, _sample, _usable, _writable

import weightstore as ws
from weightstore import testing
from weightstore.codec import Codec
from weightstore.model import canonical_dtype

CODECS = ws.formats()
IDS = [c.name for c in CODECS]

#: Examples per codec: enough to find the classic mistakes, few enough for CI
#: (about one second per codec and test).
ROUND_TRIPS = 40
DAMAGES = 150
def fuzz_settings(max_examples: int) -> settings:
    """Seeded (the same examples every run), no example database, no per-example deadline."""
    return settings(derandomize=True, database=None, deadline=None, max_examples=max_examples,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])

#: Bit patterns that break text formats: NaN (quiet, signalling, with a payload,
#: negative), infinities, signed zeros, the smallest subnormal, the largest value.
SPECIAL_BITS = {
    "float16": [0x7E00, 0x7C01, 0xFE01, 0x7C00, 0xFC00, 0x0000, 0x8000, 0x0001, 0x7BFF],
    "bfloat16": [0x7FC0, 0x7F81, 0xFFC1, 0x7F80, 0xFF80, 0x0000, 0x8000, 0x0001, 0x7F7F],
    "float32": [0x7FC00000, 0x7F800001, 0xFFC00001, 0x7F800000, 0xFF800000, 0, 1 << 31, 1,
                0x7F7FFFFF, 0x3DCCCCCD],
    "float64": [0x7FF8000000000000, 0x7FF0000000000001, 0xFFF8000000000001,
                0x7FF0000000000000, 0xFFF0000000000000, 0, 1 << 63, 1, 0x7FEFFFFFFFFFFFFF],
}

name_parts = st.text(st.characters(blacklist_characters="/\x00",
                                   blacklist_categories=("Cs",)), min_size=1, max_size=8)
names = st.lists(name_parts, min_size=1, max_size=2).map("/".join)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@st.composite
def tensors(draw: st.DrawFn) -> np.ndarray:
    """One array of any supported dtype and shape (0-d and empty included), any bits."""
    name = draw(st.sampled_from(testing.all_dtypes()))
    dtype = canonical_dtype(name)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    if dtype.kind == "b":
        return draw(hnp.arrays(np.bool_, shape))
    top = (1 << (8 * dtype.itemsize)) - 1
    elements = st.integers(0, top)
    if name in SPECIAL_BITS:
        elements = st.one_of(st.sampled_from(SPECIAL_BITS[name]), elements)
    bits = draw(hnp.arrays(np.dtype(f"<u{dtype.itemsize}"), shape, elements=elements))
    return bits.view(dtype)


@st.composite
def weight_sets(draw: st.DrawFn, metadata: bool) -> ws.Weights:
    """Up to five uniquely named tensors, groups included, and optional metadata."""
    items = draw(st.lists(st.tuples(names, tensors()), max_size=5, unique_by=lambda t: t[0]))
    meta = draw(st.dictionaries(texts, texts, max_size=3)) if metadata else {}
    try:
        return ws.Weights(items, metadata=meta)
    except ws.WeightsError:  # a name that is also a group ("a" and "a/b")
        return ws.Weights([(k.replace("/", "|"), v) for k, v in items], metadata=meta)


@pytest.mark.parametrize("cls", WRITERS, ids=WRITER_IDS)
def test_random_weights_round_trip_exactly(cls: type[Codec]) -> None:
    _usable(cls)
    refused: Counter[str] = Counter()

    @fuzz_settings(ROUND_TRIPS)
    @given(weights=weight_sets(metadata=cls.supports_metadata))
    def check(weights: ws.Weights) -> None:
        weights = testing.for_codec(cls, weights)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / testing.file_name(cls, "w")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the regrouping warning of nested formats
                try:
                    ws.save(weights, path, cls.name)
                except ws.UnsupportedError as e:  # bfloat16 in npz, NUL in HDF5 metadata
                    refused[e.field or "?"] += 1
                    event("refused as unsupported")
                    return
            with testing.time_limit(30):
                got = ws.load(path, cls.name)
        expected = testing.as_stored(cls, weights, path)
        if cls.lossless:
            assert testing.same_content(expected, got), f"{expected!r} -> {got!r}"
        else:
            assert list(got) == list(expected)

    check()
    # Refusing everything would pass the loop above: most sets must be writable.
    assert sum(refused.values()) < ROUND_TRIPS // 2, refused


def _bases(cls: type[Codec], folder: Path) -> list[tuple[bytes, ws.Weights]]:
    """Valid files of *cls* to damage: the shared corpus and a small random set (for a
    read-only codec, its sample file made by the format's own tool)."""
    if not _writable(cls):
        return [(_sample(cls).read_bytes(), ws.load(_sample(cls), cls.name))]
    tensors_, metadata = corpus()
    sets = [ws.Weights(tensors_, metadata if cls.supports_metadata else None)]
    sets.append(testing.random_weights(random.Random(f"fuzz-{cls.name}"),
                                       dtypes=["float32", "int8", "bool", "float64"],
                                       metadata=cls.supports_metadata))
    sets = [testing.for_codec(cls, w) for w in sets]
    out = []
    for i, weights in enumerate(sets):
        path = folder / testing.file_name(cls, f"base{i}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ws.save(weights, path, cls.name)
            except ws.UnsupportedError:
                ws.save(ws.Weights({k: v for k, v in weights.items()
                                    if v.dtype.name != "bfloat16"}, weights.metadata),
                        path, cls.name)
        out.append((path.read_bytes(), ws.load(path, cls.name)))
    return out


mutation = st.one_of(
    st.builds(lambda p, x: ("flip", lambda d: testing.flip(d, p, x)),
              st.integers(0, 1 << 32), st.integers(0, 254)),
    st.builds(lambda p, x: ("header flip", lambda d: testing.flip(d, p, x)),
              st.integers(0, 511), st.integers(0, 254)),
    st.builds(lambda p, x: ("trailer flip", lambda d: testing.flip(d, -1 - p, x)),
              st.integers(0, 511), st.integers(0, 254)),
    st.builds(lambda n: ("truncate", lambda d: testing.truncate(d, n)), st.integers(0, 1 << 32)),
    st.builds(lambda n: ("cut the end", lambda d: d[: max(0, len(d) - 1 - n)]),
              st.integers(0, 63)),
    st.builds(lambda p, c: ("insert", lambda d: testing.insert(d, p, c)),
              st.integers(0, 1 << 32), st.binary(min_size=1, max_size=16)),
    st.builds(lambda p, n: ("delete", lambda d: testing.delete(d, p, n)),
              st.integers(0, 1 << 32), st.integers(1, 16)),
    st.builds(lambda w, v: ("number", lambda d: testing.edit_number(d, w, v)),
              st.integers(0, 1 << 16), st.sampled_from(testing.INTERESTING_NUMBERS)),
    st.builds(lambda p, w, v: ("int field", lambda d: testing.set_int(d, p, w, v)),
              st.one_of(st.integers(0, 511), st.integers(0, 1 << 32)),
              st.sampled_from([2, 4, 8]), st.sampled_from(testing.INTERESTING_INTS)),
)


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_damaged_files_raise_only_the_librarys_errors(cls: type[Codec], tmp_path: Path) -> None:
    _usable(cls)
    bases = _bases(cls, tmp_path)
    outcomes: Counter[str] = Counter()

    @fuzz_settings(DAMAGES)
    @given(base=st.sampled_from(range(len(bases))),
           changes=st.lists(mutation, min_size=1, max_size=3))
    def check(base: int, changes: list) -> None:
        data, clean = bases[base]
        for _kind, change in changes:
            data = change(data)
        with testing.time_limit(30):
            result = testing.classify(cls, data, clean, tmp_path)
        outcomes[result.outcome.value] += 1
        event(result.outcome.value)
        kinds = "+".join(k for k, _ in changes)
        assert result.outcome is not testing.Outcome.CRASH, f"{kinds}: {result.detail}"
        if cls.checksums:
            assert result.outcome is not testing.Outcome.UNDETECTED, f"{kinds}: {result.detail}"

    check()
    # Counted, not failed, where the format has no checksum to notice (see docs/security.md).
    print(f"{cls.name}: {dict(outcomes)}")
    assert outcomes[testing.Outcome.REFUSED.value] > 0


def test_random_pickle_opcode_streams_raise_only_the_librarys_errors(tmp_path: Path) -> None:
    """Structure-aware pickle fuzzing: random opcode streams and opcodes spliced into valid
    files, with valid, lying and absurd arguments (``testing.random_pickle_ops``)."""
    cls = ws.get_codec("pickle")
    bases = _bases(cls, tmp_path)
    outcomes: Counter[str] = Counter()
    for case in range(400):
        rng = random.Random(f"pickle-ops/{case}")
        data, clean = bases[case % len(bases)]
        kind, data = testing.random_pickle_ops(rng, data)
        with testing.time_limit(30):
            result = testing.classify(cls, data, clean, tmp_path)
        outcomes[result.outcome.value] += 1
        assert result.outcome is not testing.Outcome.CRASH, f"case {case} {kind}: {result.detail}"
    print(f"pickle opcodes: {dict(outcomes)}")
    assert outcomes[testing.Outcome.REFUSED.value] > 0
