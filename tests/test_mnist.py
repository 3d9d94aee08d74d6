"""The IDX reader on files built here: good ones, raw and gzip, and every kind of malformed one."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from net.errors import FileAccessError, FormatError
from net.mnist import load_images, load_labels, load_test_set

RNG = np.random.default_rng(3)
PIXELS = RNG.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
LABELS = np.array([7, 0, 9], dtype=np.uint8)


def image_bytes(pixels=PIXELS, magic=2051, dims=None, tail=b""):
    dims = pixels.shape if dims is None else dims
    return struct.pack(f">{1 + len(dims)}I", magic, *dims) + pixels.tobytes() + tail


def label_bytes(labels=LABELS, magic=2049, count=None):
    return struct.pack(">II", magic, len(labels) if count is None else count) + labels.tobytes()


def write(tmp_path: Path, name: str, content: bytes, compress: bool) -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_good_files(tmp_path, compress):
    images = write(tmp_path, "img", image_bytes(), compress)
    labels = write(tmp_path, "lab", label_bytes(), compress)

    x = load_images(images)
    assert x.shape == (3, 784) and x.dtype == np.float32
    np.testing.assert_array_equal(x, PIXELS.reshape(3, 784).astype(np.float32) / 255.0)
    assert x.min() >= 0 and x.max() <= 1

    raw = load_images(images, normalize=False, flatten=False)
    assert raw.shape == (3, 1, 28, 28) and raw.dtype == np.uint8
    np.testing.assert_array_equal(raw[:, 0], PIXELS)
    raw[0, 0, 0, 0] = 1  # a writable array of its own

    t = load_labels(labels)
    assert t.dtype == np.uint8
    np.testing.assert_array_equal(t, LABELS)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    misnamed = write(tmp_path, "images.gz", image_bytes(), compress=False)
    hidden = write(tmp_path, "images.idx", image_bytes(), compress=True)
    np.testing.assert_array_equal(load_images(misnamed), load_images(hidden))


def test_empty_sets_are_valid(tmp_path):
    path = write(tmp_path, "img", image_bytes(np.zeros((0, 28, 28), np.uint8)), compress=True)
    assert load_images(path).shape == (0, 784)
    assert load_labels(write(tmp_path, "lab", label_bytes(LABELS[:0]), compress=False)).shape == (
        0,
    )


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(
    ("content", "loader", "message"),
    [
        (
            label_bytes(),
            load_images,
            "magic number: expected 2051 (0x00000803, an IDX image file), "
            "found 2049 (0x00000801) (an IDX label file)",
        ),
        (
            image_bytes(),
            load_labels,
            "magic number: expected 2049 (0x00000801, an IDX label file), "
            "found 2051 (0x00000803) (an IDX image file)",
        ),
        (b"\x00\x00\x08\x03\x00\x00", load_images, "header: expected 16 bytes, found 6 bytes"),
        (b"", load_labels, "header: expected 8 bytes, found 0 bytes"),
        (
            image_bytes(np.zeros((2, 32, 24), np.uint8)),
            load_images,
            "dimensions: expected 28 x 28 pixels, found 32 x 24",
        ),
        (
            image_bytes()[:-1],
            load_images,
            "payload: expected 2352 bytes for 3 images, found 2351 bytes",
        ),
        (
            image_bytes(tail=b"\x00\x00"),
            load_images,
            "payload: expected 2352 bytes for 3 images, found 2354 bytes",
        ),
        (
            image_bytes(dims=(4, 28, 28)),
            load_images,
            "payload: expected 3136 bytes for 4 images, found 2352 bytes",
        ),
        (
            label_bytes(count=2),
            load_labels,
            "payload: expected 2 bytes for 2 labels, found 3 bytes",
        ),
        (
            label_bytes(np.array([3, 10, 1], np.uint8)),
            load_labels,
            "labels[1]: expected a class 0-9, found 10",
        ),
    ],
    ids=[
        "labels-as-images",
        "images-as-labels",
        "short-header",
        "empty",
        "wrong-dims",
        "truncated",
        "extra-bytes",
        "count-too-large",
        "count-too-small",
        "label-out-of-range",
    ],
)
def test_malformed_files_name_file_field_expected_found(
    tmp_path, compress, content, loader, message
):
    path = write(tmp_path, "bad", content, compress)
    with pytest.raises(FormatError) as info:
        loader(path)
    assert str(info.value) == f"{path}: {message}"


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_absurd_count_is_refused_before_allocating(tmp_path, compress):
    content = image_bytes(dims=(0xFFFFFFFF, 28, 28))
    path = write(tmp_path, "huge", content, compress)
    with pytest.raises(FormatError) as info:
        load_images(path)
    message = str(info.value)
    expected_bytes = 0xFFFFFFFF * 784
    if compress:
        assert f"count: expected at most {path.stat().st_size * 1032} bytes" in message
    else:
        assert f"payload: expected {expected_bytes} bytes for 4294967295 images" in message
    assert f"{expected_bytes} bytes" in message


def test_corrupt_and_truncated_gzip(tmp_path):
    packed = gzip.compress(image_bytes())
    cut = tmp_path / "cut.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(FormatError, match=r"cut\.gz: gzip stream: corrupt or truncated gzip data"):
        load_images(cut)
    flipped = bytearray(packed)
    flipped[len(flipped) // 2] ^= 0xFF
    broken = tmp_path / "broken.gz"
    broken.write_bytes(bytes(flipped))
    with pytest.raises(FormatError, match=r"broken\.gz: gzip stream: corrupt or truncated"):
        load_images(broken)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileAccessError, match="nothing-here: cannot read images file"):
        load_images(tmp_path / "nothing-here")
    with pytest.raises(FileAccessError, match="cannot read labels file"):
        load_labels(tmp_path)


def test_the_real_test_set(data_dir):
    x, t = load_test_set(data_dir, download=False)
    assert x.shape == (10_000, 784) and x.dtype == np.float32
    assert t.shape == (10_000,) and t.dtype == np.uint8
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert np.bincount(t).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert t[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    x4, _ = load_test_set(data_dir, flatten=False, normalize=False, download=False)
    assert x4.shape == (10_000, 1, 28, 28) and x4.dtype == np.uint8
    np.testing.assert_array_equal(x4.reshape(10_000, 784).astype(np.float32) / 255.0, x)
