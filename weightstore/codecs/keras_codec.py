"""Keras weight files, read through h5py (never through keras, nothing in them runs).

Three layouts, all HDF5 underneath, each read by the :mod:`~weightstore.codecs.hdf5`
reader (its checks: no links or storage outside the file, sizes within
:class:`~weightstore.codec.Limits`) and then named as Keras names the weights:

- **Keras 3** ``.weights.h5`` (``model.save_weights``): ``layers/<key>/vars/<i>``, nested
  models as ``layers/<key>/layers/<key>/...``, the model's own ``vars`` at the top, and
  ``optimizer/vars/<i>``. ``<key>`` is made from the layer's class (``dense_1``), and the
  ``name`` attribute of each ``vars`` group holds the name the user gave the layer. A
  weight is named like Keras's ``variable.path``: the model's name, the layers' names,
  then the variable's name where the layer's class fixes it (Dense and convolutions:
  kernel, bias; BatchNormalization with all four: gamma, beta, moving_mean,
  moving_variance; LayerNormalization with both: gamma, beta; Embedding: embeddings),
  else its index: ``small/dense/kernel``, ``small/block/inner_dense/bias``,
  ``small/custom/0``. The optimizer's keep their path (``optimizer/vars/0``). Order: the
  model's, which is the order Keras wrote the data in (each dataset's file offset).
- **.keras** (``model.save``): a zip holding ``metadata.json``, ``config.json`` and
  ``model.weights.h5`` (the layout above). The weights member is read in place when
  stored (Keras stores it), through zipfile when deflated; ``config.json`` and
  ``metadata.json`` become the metadata entries ``keras.config`` and ``keras.metadata``.
  :meth:`KerasCodec.sniff` claims a zip whose first member is one of those three, so a
  Keras archive is never taken for an npz.
- **Legacy (Keras 2) HDF5** (``model.save("x.h5")``, TF-Keras ``save_weights``):
  ``[model_weights/]<layer>/<weight path>`` with the attributes ``layer_names`` (the
  model's layer order) and ``weight_names`` (each layer's weights in order). A weight is
  named by its ``weight_names`` entry without TensorFlow's ``:0`` suffix
  (``dense/kernel:0`` -> ``dense/kernel``), layers in ``layer_names`` order; the
  optimizer's as ``optimizer_weights/<weight name>``.

Datasets a layout does not name keep their HDF5 path, after the others: nothing is
dropped. Metadata is what the HDF5 reader gives (root text attributes such as
``keras_version``, ``model_config``; ``hdf5.attrs:<path>`` entries for the others, so
``layer_names`` and ``weight_names`` travel with the weights). Reading only: to write
for Keras, write HDF5 with the ``hdf5`` codec from weights read as HDF5, or load the
weights in Keras. A ``.weights.h5`` name chooses this codec over plain HDF5 (declared
by :attr:`KerasCodec.refines`); a legacy ``.h5`` is read as Keras with ``--from keras``.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
from typing import IO, Any

import numpy as np

from ..codec import DEFAULT_LIMITS, Budget, Codec, Limits, TensorSource, read_through_open
from ..errors import FormatError, LimitError, UnsupportedError
from ..model import TensorInfo, Weights
from ..sniffing import is_keras_archive
from .hdf5 import ATTRS_PREFIX, SIGNATURE, Hdf5Codec

__all__ = ["KerasCodec", "keras_names"]

WEIGHTS_MEMBER = "model.weights.h5"
#: Variable names fixed by a layer's class, by how many variables it has.
_VARIABLES: dict[str, dict[int, tuple[str, ...]]] = {
    **{cls: {1: ("kernel",), 2: ("kernel", "bias")} for cls in (
        "dense", "conv1d", "conv2d", "conv3d", "conv1d_transpose", "conv2d_transpose",
        "conv3d_transpose")},
    "batch_normalization": {4: ("gamma", "beta", "moving_mean", "moving_variance")},
    "layer_normalization": {2: ("gamma", "beta")},
    "embedding": {1: ("embeddings",)},
}


def _attrs(metadata: dict[str, str], where: str) -> dict[str, Any]:
    text = metadata.get(ATTRS_PREFIX + where)
    return json.loads(text) if text is not None else {}


def _text_list(typed: dict[str, Any] | None) -> list[str] | None:
    """A typed string-array attribute as a list (Keras writes an empty float array for
    a layer without weights)."""
    if typed is None or "value" not in typed:
        return None
    value = typed["value"]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _legacy_names(names: list[str], metadata: dict[str, str],
                  path: str) -> list[tuple[str, str]] | None:
    """(Keras name, HDF5 name) in the model's order for the Keras 2 layout, else None."""
    for root in ("/model_weights", "/"):
        layers = _text_list(_attrs(metadata, root).get("layer_names"))
        if layers is not None:
            break
    else:
        return None
    prefix = root.strip("/")
    present = set(names)
    out: list[tuple[str, str]] = []
    groups = [(f"{prefix}/{layer}" if prefix else layer, "") for layer in layers]
    if "/optimizer_weights" in {k[len(ATTRS_PREFIX):] for k in metadata
                                if k.startswith(ATTRS_PREFIX)}:
        groups.append(("optimizer_weights", "optimizer_weights/"))
    for group, label in groups:
        weights = _text_list(_attrs(metadata, "/" + group).get("weight_names")) or []
        for weight in weights:
            stored = f"{group}/{weight}"
            if stored not in present:
                raise FormatError(path=path, field=f"weight_names of {group!r}",
                                  expected=f"a dataset {stored!r}", found="none")
            out.append((label + (weight[:-2] if weight.endswith(":0") else weight), stored))
    return out


def _keras3_name(name: str, metadata: dict[str, str], counts: dict[str, int]) -> str | None:
    """The Keras name of dataset *name* in the Keras 3 layout, or None outside it."""
    parts = name.split("/")
    if len(parts) < 2 or parts[-2] != "vars" or not parts[-1].isdigit():
        return None
    if parts[0] != "layers" and len(parts) > 2:
        return name  # optimizer/vars/0 and the like keep their path
    model = _text_list(_attrs(metadata, "/vars").get("name"))
    out = [model[0]] if model else []
    at = ""
    keys = parts[:-2]
    for i in range(0, len(keys), 2):
        if keys[i] != "layers" or i + 1 >= len(keys):
            return None
        at = f"{at}/layers/{keys[i + 1]}"
        user = _text_list(_attrs(metadata, at + "/vars").get("name"))
        out.append(user[0] if user else keys[i + 1])
    group = name.rsplit("/", 1)[0]
    cls = re.sub(r"_\d+$", "", keys[-1]) if keys else ""
    known = _VARIABLES.get(cls, {}).get(counts.get(group, 0))
    index = int(parts[-1])
    out.append(known[index] if known and index < len(known) else parts[-1])
    return "/".join(out)


def keras_names(names: list[str], offsets: dict[str, int], metadata: dict[str, str],
                path: str) -> list[tuple[str, str]]:
    """(Keras name, HDF5 dataset name) of every dataset, in the model's order."""
    legacy = _legacy_names(names, metadata, path)
    if legacy is None:
        counts: dict[str, int] = {}
        for name in names:
            group = name.rsplit("/", 1)[0]
            counts[group] = counts.get(group, 0) + 1
        ordered = sorted(names, key=lambda n: (offsets.get(n, -1) < 0, offsets.get(n, -1), n))
        legacy = [(new, n) for n in ordered
                  if (new := _keras3_name(n, metadata, counts)) is not None]
    named = {stored for _, stored in legacy}
    out = legacy + [(n, n) for n in names if n not in named]
    seen: set[str] = set()
    for new, stored in out:
        if new in seen:
            raise FormatError(path=path, field=f"dataset {stored!r}",
                              expected="a Keras name no other weight has", found=new)
        seen.add(new)
    return out


class _Window(io.RawIOBase):
    """Bytes *start* to *start + size* of a file, as a file of their own (a stored member)."""

    def __init__(self, fileobj: IO[bytes], start: int, size: int) -> None:
        super().__init__()
        self._f, self._start, self._size, self._pos = fileobj, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        self._f.seek(self._start + self._pos)
        got = self._f.readinto(view[:n]) if n else 0
        self._pos += got or 0
        return got or 0


def _weights_member(fileobj: IO[bytes], path: str,
                    limits: Limits) -> tuple[IO[bytes], dict[str, str], Any]:
    """The .keras archive's weights as a file, its JSON members as metadata, the zip."""
    try:
        zf = zipfile.ZipFile(fileobj)
        members = {i.filename: i for i in zf.infolist()}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise FormatError(f"not a readable zip archive ({e})", path=path) from e
    if WEIGHTS_MEMBER not in members:
        raise FormatError(path=path, field="archive members",
                          expected=f"{WEIGHTS_MEMBER!r} (a Keras archive)",
                          found=sorted(members)[:5])
    metadata: dict[str, str] = {}
    try:
        for member, key in (("metadata.json", "keras.metadata"), ("config.json", "keras.config")):
            info = members.get(member)
            if info is None:
                continue
            if info.file_size > limits.max_header_bytes:
                raise LimitError(path=path, field=f"member {member!r}",
                                 expected=f"at most {limits.max_header_bytes:,} bytes "
                                 "(Limits.max_header_bytes)", found=f"{info.file_size:,} bytes")
            with zf.open(info) as f:
                metadata[key] = f.read(limits.max_header_bytes + 1).decode("utf-8")
        info = members[WEIGHTS_MEMBER]
        if info.compress_type == zipfile.ZIP_STORED:
            fileobj.seek(info.header_offset)
            local = fileobj.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise FormatError(path=path, field=f"member {WEIGHTS_MEMBER!r}",
                                  expected="a local file header", found=local[:4])
            name_len, extra_len = struct.unpack_from("<HH", local, 26)
            start = info.header_offset + 30 + name_len + extra_len
            end = fileobj.seek(0, io.SEEK_END)
            if start + info.file_size > end:
                raise FormatError(path=path, field=f"member {WEIGHTS_MEMBER!r}",
                                  expected=f"{info.file_size:,} bytes at offset {start:,}",
                                  found=f"{max(0, end - start):,} (the file ends there)")
            return io.BufferedReader(_Window(fileobj, start, info.file_size)), metadata, zf
        if info.file_size > limits.max_output(info.compress_size):
            raise LimitError(path=path, field=f"member {WEIGHTS_MEMBER!r}",
                             expected=f"at most {limits.max_output(info.compress_size):,} "
                             "bytes (Limits.max_expansion)", found=f"{info.file_size:,} bytes")
        return zf.open(info), metadata, zf  # type: ignore[return-value]
    except (zipfile.BadZipFile, UnicodeDecodeError, EOFError, OSError,
            NotImplementedError) as e:
        raise FormatError(f"damaged Keras archive ({e})", path=path) from e


class KerasSource(TensorSource):
    """An HDF5 source whose datasets are named and ordered as Keras names them."""

    lazy = True

    def __init__(self, inner: TensorSource, offsets: dict[str, int], metadata: dict[str, str],
                 path: str, closing: tuple[Any, ...] = ()) -> None:
        self._inner, self._closing = inner, closing
        metas = {m.name: m for m in inner.tensors}
        pairs = keras_names([m.name for m in inner.tensors], offsets, inner.metadata, path)
        self._stored = dict(pairs)
        super().__init__([TensorInfo(new, metas[old].dtype, metas[old].shape)
                          for new, old in pairs], {**inner.metadata, **metadata})

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        return self._inner.read(self._stored[name], mmap=mmap)

    def close(self) -> None:
        self._inner.close()
        for thing in self._closing:
            thing.close()


class KerasCodec(Codec):
    """Keras 3 .weights.h5 and .keras, and the legacy Keras 2 HDF5 layout; read only."""

    name = "keras"
    extensions = (".keras", ".weights.h5")
    description = "Keras weights (.weights.h5, .keras archive, legacy HDF5): read only"
    writable = False
    refines = "hdf5"  # HDF5 content is read as Keras when the name says so (.weights.h5)

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return is_keras_archive(head)

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        raise UnsupportedError(path=path, field="format", expected="a format weightstore "
                               "writes (keras is read only: write hdf5 for Keras's loaders)",
                               found="keras")

    read = read_through_open

    def open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> TensorSource:
        """The HDF5 structure and Keras's names; datasets are read on access."""
        head = fileobj.read(8)
        fileobj.seek(0)
        closing: tuple[Any, ...] = ()
        metadata: dict[str, str] = {}
        target = fileobj
        if not head.startswith(SIGNATURE):
            if not head.startswith(b"PK"):
                raise FormatError(path=path, field="content",
                                  expected="an HDF5 file or a .keras zip archive", found=head)
            target, metadata, zf = _weights_member(fileobj, path, limits)
            closing = (target, zf)
        try:
            inner = Hdf5Codec().open(target, path=path, limits=limits, verify=verify,
                                     budget=budget)
            try:
                offsets = {m.name: inner.data_offset(m.name)  # type: ignore[attr-defined]
                           for m in inner.tensors}
                return KerasSource(inner, offsets, metadata, path, closing)
            except BaseException:
                inner.close()
                raise
        except BaseException:
            for thing in closing:
                thing.close()
            raise
