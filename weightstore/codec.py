"""The codec interface: one small class per format.

A codec has a ``name``, the file ``extensions`` it claims, a ``sniff`` test on a
file's first bytes, and two methods: ``write(weights, fileobj, *, path)`` and
``read(fileobj, *, path, limits, verify, budget)`` (*budget*: the operation's
:class:`Budget`, charged before allocating, handed on to inner codecs). Everything
else a caller may ask of a codec is a class attribute declared on :class:`Codec` with
its default (``layer``, ``inner``, ``streams_writes``, ``detects_cut_between_tensors``,
...), never probed with ``getattr``. Options are constructor keywords declared as :class:`Option`
(name, type, default, help); they are validated once here and kept as public
attributes (each codec class annotates its own), so ``repr``, equality,
:meth:`Codec.get_config` and :meth:`Codec.from_config` are written once.

Two optional extensions serve large models. ``open(fileobj)`` returns a
:class:`TensorSource` that knows every tensor's name, dtype and shape from the
header and reads one tensor when asked; the default implementation reads the
whole file with ``read``, so every codec supports it. ``streams_writes = True``
declares that ``write`` takes the tensors one at a time from the mapping it is
given (a lazy mapping then keeps one tensor in memory, not the model).

A new built-in codec is one module in :mod:`weightstore.codecs` plus one line in
:data:`weightstore.registry.BUILTIN` (its name, class, extensions and content test, so
that the module is imported only when a file of its format is met). A third-party
codec is a class announced under the ``weightstore.codecs`` entry-point group, or
passed to :func:`weightstore.registry.register`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, ClassVar

import numpy as np

from .errors import LimitError, OptionError, SkippedEntriesWarning, UnsupportedError
from .model import TensorInfo, Weights, grouped_names, weights_from_file

__all__ = ["Codec", "Option", "Limits", "DEFAULT_LIMITS", "Budget", "warn_if_regrouped",
           "Skipped", "HELD", "report_skipped",
           "TensorSource", "LoadedSource", "read_all", "read_through_open"]

GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Bounds a reader checks before it allocates memory for what a file claims.

    The defaults admit any real model that fits this machine's memory while
    refusing small files that claim, or expand to, absurd sizes. Raise them with
    ``weightstore.load(path, limits=Limits(max_total_bytes=64 * GiB))``.
    """

    #: Largest single tensor, in bytes.
    max_tensor_bytes: int = 16 * GiB
    #: Largest sum of all tensors, in bytes (also the cap on decompressed output).
    max_total_bytes: int = 16 * GiB
    #: Most tensors in one file.
    max_tensors: int = 1_000_000
    #: Decompressed data may exceed this many bytes only within ``max_expansion`` x the
    #: compressed size; below it any ratio is allowed (zeros compress very well).
    expansion_free_bytes: int = 256 * MiB
    #: Largest ratio of decompressed to compressed size above ``expansion_free_bytes``.
    max_expansion: int = 1000
    #: Largest header (JSON document inside a binary format), in bytes.
    max_header_bytes: int = 100 * MiB
    #: Deepest nesting accepted in JSON and pickle structures.
    max_depth: int = 64
    #: Most memory one operation (a load, inspect or convert, all shards and layers) may
    #: take for what its files hold or claim: tensors, parser structures, scratch. None:
    #: twice ``max_total_bytes``. See :class:`Budget`.
    max_memory_bytes: int | None = None
    #: Most temporary disk one operation may fill (decompressed layers spooled to disk).
    #: None: ``max_total_bytes``.
    max_temp_bytes: int | None = None

    @property
    def memory_cap(self) -> int:
        """:attr:`max_memory_bytes`, or twice :attr:`max_total_bytes` when it is None."""
        return self.max_memory_bytes if self.max_memory_bytes is not None \
            else 2 * self.max_total_bytes

    @property
    def temp_cap(self) -> int:
        """:attr:`max_temp_bytes`, or :attr:`max_total_bytes` when it is None."""
        return self.max_temp_bytes if self.max_temp_bytes is not None else self.max_total_bytes

    def check_tensor(self, path: str, name: str, nbytes: int, total: int = 0) -> None:
        """Refuse a tensor of *nbytes* (with *total* bytes already read) beyond the limits."""
        if nbytes > self.max_tensor_bytes:
            raise LimitError(
                path=path, field=f"tensor {name!r}",
                expected=f"at most {self.max_tensor_bytes:,} bytes (Limits.max_tensor_bytes)",
                found=f"{nbytes:,} bytes",
            )
        if total + nbytes > self.max_total_bytes:
            raise LimitError(
                path=path, field=f"tensor {name!r}",
                expected=f"all tensors within {self.max_total_bytes:,} bytes "
                "(Limits.max_total_bytes)",
                found=f"{total + nbytes:,} bytes so far",
            )

    def max_output(self, compressed_size: int) -> int:
        """Largest decompressed size allowed for *compressed_size* input bytes."""
        by_ratio = max(self.expansion_free_bytes, compressed_size * self.max_expansion)
        return min(self.max_total_bytes, by_ratio)


DEFAULT_LIMITS = Limits()


def file_size(fileobj: IO[bytes]) -> int:
    """Bytes in a seekable *fileobj*, its position kept."""
    pos = fileobj.tell()
    try:
        return fileobj.seek(0, 2)
    finally:
        fileobj.seek(pos)


class Budget:
    """What one operation may still take: ONE per :func:`weightstore.load`, ``inspect``,
    ``convert`` or ``open``, shared by every shard and every layer it reads.

    Readers charge it BEFORE they allocate, for anything whose size a file decides:

    - :meth:`take` -- memory: tensors, parser containers (pickle memo entries, lists,
      dicts; parsed JSON), scratch (dequantization), names built from parts. Like
      decompression, memory is earned by input: at most ``min(memory_cap,
      max(expansion_free_bytes, input x max_expansion))``, where *input* is every byte
      the operation read from its files or decompressed (:meth:`add_input`), so a file of
      a few kilobytes never costs more than ``expansion_free_bytes`` (256 MiB by default)
      however it nests, shares or repeats; capped by :attr:`Limits.memory_cap`.
    - :meth:`expand` -- decompressed bytes (zstd layers, deflated npz members, filtered
      HDF5 datasets) against the compressed bytes they came from: the whole operation
      may produce at most ``min(max_total_bytes, max(expansion_free_bytes, compressed x
      max_expansion))``, where *compressed* sums every stream seen so far -- so the
      free allowance is granted once per operation, not once per shard or layer.
    - :meth:`spool` -- temporary disk (a zstd layer decompressed to a temporary file).
      Capped by :attr:`Limits.temp_cap`.

    Exhausting any of them raises :class:`~weightstore.errors.LimitError` naming the file,
    what was being read and the :class:`Limits` field. A codec receives it as the
    ``budget`` keyword of ``read``/``open`` (None when called directly: it then makes its
    own with :meth:`of`) and passes the same object to anything it reads in turn.

    It also carries the operation's :attr:`strict`: what a codec does with entries the
    library does not hold (:func:`report_skipped`).
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, *, strict: bool = False) -> None:
        self.limits = limits
        #: Whether a file with entries weightstore does not hold is refused (True) or read
        #: without them, with one :class:`~weightstore.errors.SkippedEntriesWarning`.
        self.strict = strict
        #: Bytes of memory charged so far.
        self.memory = 0
        #: Decompressed bytes produced so far, and the compressed bytes they came from.
        self.expanded = 0
        self.compressed = 0
        #: Bytes of temporary disk charged so far.
        self.temp = 0
        #: Bytes read from files or decompressed so far (what earns memory).
        self.input = 0

    @classmethod
    def of(cls, budget: Budget | None, limits: Limits,
           fileobj: IO[bytes] | None = None) -> Budget:
        """*budget* itself, or a new one for *limits* (a codec called on its own), which
        has read *fileobj* whole (its size earns memory, see :meth:`take`)."""
        if budget is not None:
            return budget
        new = cls(limits)
        if fileobj is not None:
            new.add_input(file_size(fileobj))
        return new

    def add_input(self, nbytes: int) -> None:
        """Register *nbytes* read from a file (its size, when opened whole)."""
        self.input += max(0, nbytes)

    def memory_allowance(self) -> int:
        """Memory the operation may take, given what it read so far."""
        lim = self.limits
        return min(lim.memory_cap, max(lim.expansion_free_bytes, self.input * lim.max_expansion))

    def take(self, nbytes: int, *, path: str | None, field: str) -> None:
        """Charge *nbytes* of memory for *field* of *path*, or raise LimitError."""
        cap = self.memory_allowance()
        self.memory = _charge(self.memory, nbytes, cap, path, field, lambda: (
            f"this load within {cap:,} bytes of memory for {self.input:,} bytes read "
            "(Limits.max_memory_bytes, Limits.max_expansion, Limits.expansion_free_bytes)"))

    def give_back(self, nbytes: int) -> None:
        """Return memory charged for scratch that has been freed."""
        self.memory = max(0, self.memory - nbytes)

    def allowance(self) -> int:
        """Decompressed bytes the whole operation may produce, given what it read."""
        lim = self.limits
        return min(lim.max_total_bytes,
                   max(lim.expansion_free_bytes, self.compressed * lim.max_expansion))

    def add_compressed(self, nbytes: int) -> None:
        """Register *nbytes* of compressed input (a stream about to be decompressed)."""
        self.compressed += max(0, nbytes)

    def expand(self, nbytes: int, *, path: str | None, field: str) -> None:
        """Charge *nbytes* of decompressed output for *field*, or raise LimitError."""
        allowed = self.allowance()
        self.expanded = _charge(self.expanded, nbytes, allowed, path, field, lambda: (
            f"at most {allowed:,} decompressed bytes in this load from {self.compressed:,} "
            "compressed (Limits.max_expansion, Limits.expansion_free_bytes, "
            "Limits.max_total_bytes)"))
        self.input += nbytes

    def spool(self, nbytes: int, *, path: str | None, field: str) -> None:
        """Charge *nbytes* of temporary disk, or raise LimitError."""
        cap = self.limits.temp_cap
        self.temp = _charge(self.temp, nbytes, cap, path, field, lambda: (
            f"this load within {cap:,} bytes of temporary disk (Limits.max_temp_bytes)"))


def _charge(used: int, nbytes: int, cap: int, path: str | None, field: str,
            expected: Callable[[], str]) -> int:
    """*used* + *nbytes*, or LimitError (saying *expected()*) when that passes *cap*."""
    if nbytes < 0 or used + nbytes > cap:
        raise LimitError(path=path, field=field, expected=expected(),
                         found=f"{used + nbytes:,} bytes needed")
    return used + nbytes


#: What weightstore holds, as a skipped entry's "expected" says it.
HELD = "a tensor of bool, (u)int8-64, float16/32/64 or bfloat16"


@dataclass(frozen=True)
class Skipped:
    """An entry of a file that a reader leaves out: its *name* as the file names it, and
    *found*, what it is (``"a complex128 array of shape (2, 3)"``)."""

    name: str
    found: str
    expected: str = HELD


#: The advice a strict refusal ends with (the command line says it with its flag).
STRICT_HINT = "without strict=True the rest loads, with a warning listing what is skipped"
#: Most skipped entries a warning names one by one.
_SHOWN = 20


def report_skipped(path: str, skipped: Sequence[Skipped], budget: Budget | None) -> None:
    """What a reader does once per file with the entries it leaves out: nothing when
    there are none; with a strict *budget*, :class:`~weightstore.errors.UnsupportedError`
    naming the file, the first entry, what was expected and what it is; otherwise one
    :class:`~weightstore.errors.SkippedEntriesWarning` listing each entry and why."""
    if not skipped:
        return
    if budget is not None and budget.strict:
        first = skipped[0]
        more = f", nor are {len(skipped) - 1} more entries" if len(skipped) > 1 else ""
        raise UnsupportedError(f"not held by weightstore{more}", path=path,
                               field=f"entry {first.name!r}", expected=first.expected,
                               found=first.found, hint=STRICT_HINT)
    shown = "; ".join(f"{s.name!r} ({s.found})" for s in skipped[:_SHOWN])
    if len(skipped) > _SHOWN:
        shown += f"; and {len(skipped) - _SHOWN} more"
    n = len(skipped)
    warnings.warn(SkippedEntriesWarning(
        f"{path}: skipped {n} {'entry' if n == 1 else 'entries'} weightstore does not hold: "
        f"{shown}; strict=True refuses such a file instead", path,
        tuple((s.name, s.found) for s in skipped)), stacklevel=3)


def warn_if_regrouped(weights: Mapping[str, Any], path: str, codec: str) -> None:
    """Warn that a nesting format will give *weights* back in their grouped order."""
    if list(weights) != grouped_names(weights):
        warnings.warn(
            f"{path}: {codec} stores each group's tensors together, so they will read back "
            "in grouped order, not the order given", stacklevel=4,
        )


class TensorSource:
    """A file's tensors, described up front and read one at a time (what :meth:`Codec.open`
    returns). Subclasses fill :attr:`tensors` and :attr:`metadata` and implement :meth:`read`.
    """

    #: True when opening read only the header, so that tensors are read on access.
    lazy: bool = False

    def __init__(self, tensors: Sequence[TensorInfo], metadata: dict[str, str]) -> None:
        #: The tensors in the file's order.
        self.tensors: list[TensorInfo] = list(tensors)
        #: The file's string metadata.
        self.metadata: dict[str, str] = dict(metadata)

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        """Tensor *name* as a new array, or with *mmap* a read-only memory map of the file
        where the format stores the raw bytes (an ordinary array elsewhere)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds (the file object itself belongs to the caller)."""


class LoadedSource(TensorSource):
    """The default source: a file read whole with :meth:`Codec.read`."""

    def __init__(self, weights: Weights) -> None:
        super().__init__([TensorInfo.of(k, v) for k, v in weights.items()],
                         weights.metadata)
        self._weights: Weights | None = weights

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        if self._weights is None:
            raise ValueError("the source is closed")
        return self._weights[name]

    def close(self) -> None:
        self._weights = None


def read_through_open(self: Codec, fileobj: IO[bytes], *, path: str,
                      limits: Limits = DEFAULT_LIMITS, verify: bool = True,
                      budget: Budget | None = None) -> Weights:
    """``Codec.read`` for codecs whose :meth:`~Codec.open` reads tensors one by one:
    every tensor through the same source (``read = read_through_open`` in the class)."""
    budget = Budget.of(budget, limits, fileobj)
    source = self.open(fileobj, path=path, limits=limits, verify=verify, budget=budget)
    try:
        return read_all(source, path, limits, budget)
    finally:
        source.close()


def read_all(source: TensorSource, path: str, limits: Limits,
             budget: Budget | None = None) -> Weights:
    """Every tensor of *source* in memory, checking the total against *limits* and
    charging it to *budget* first."""
    total = 0
    for meta in source.tensors:
        limits.check_tensor(path, meta.name, meta.nbytes, total)
        total += meta.nbytes
    Budget.of(budget, limits).take(total, path=path, field="tensors")
    tensors = [(meta.name, source.read(meta.name)) for meta in source.tensors]
    return weights_from_file(tensors, source.metadata, path)


@dataclass(frozen=True)
class Option:
    """A codec option: a constructor keyword with a type, a default and a help line."""

    name: str
    type: type
    default: Any
    help: str
    choices: Sequence[Any] | None = None
    min: float | None = None
    max: float | None = None

    def validate(self, codec: str, value: Any) -> Any:
        """*value* converted to the option's type, or :class:`OptionError`."""
        if value is None and self.default is None:
            return None
        if isinstance(value, str) and self.type is not str:
            value = self.parse(codec, value)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise OptionError(
                field=f"{codec} option {self.name!r}",
                expected=self.type.__name__, found=value,
            )
        if self.choices is not None and value not in self.choices:
            raise OptionError(
                field=f"{codec} option {self.name!r}",
                expected=f"one of {', '.join(map(str, self.choices))}", found=value,
            )
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            raise OptionError(
                field=f"{codec} option {self.name!r}",
                expected=f"a value from {self.min} to {self.max}", found=value,
            )
        return value

    def parse(self, codec: str, text: str) -> Any:
        """Parse the command line's text form of the option."""
        if self.type is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        else:
            if text.strip().lower() in ("none", "") and self.default is None:
                return None
            try:
                return self.type(text)
            except ValueError:
                pass
        raise OptionError(
            field=f"{codec} option {self.name!r}", expected=self.type.__name__, found=text
        )

    def describe(self) -> dict[str, Any]:
        """The option as plain data, for ``weightstore formats --json``."""
        d = dataclasses.asdict(self)
        d["type"] = self.type.__name__
        d["choices"] = list(self.choices) if self.choices is not None else None
        return d


class Codec:
    """Base class of every codec. Subclasses set the class attributes and implement
    :meth:`write` and :meth:`read` (and usually :meth:`sniff`)."""

    #: Registry key, e.g. ``"json"``.
    name: ClassVar[str]
    #: File name endings it claims, most usual first, e.g. ``(".h5", ".hdf5")``.
    extensions: ClassVar[tuple[str, ...]] = ()
    #: One line for ``weightstore formats``.
    description: ClassVar[str] = ""
    #: Whether every supported value round-trips bit for bit.
    lossless: ClassVar[bool] = True
    #: Whether the metadata map is stored.
    supports_metadata: ClassVar[bool] = True
    #: Whether tensors of one group come back together, in :meth:`Weights.grouped_order`
    #: (formats that nest groups: a dict of dicts, HDF5 groups); the writer warns when
    #: that changes the order.
    groups_together: ClassVar[bool] = False
    #: Whether the format stores a checksum of every tensor (and of its header, if it has
    #: one) that :meth:`read` verifies unless given ``verify=False``.
    checksums: ClassVar[bool] = False
    #: Whether :meth:`write` needs a seekable file (a zstd layer then spools it).
    needs_seekable_output: ClassVar[bool] = False
    #: The options it takes.
    options: ClassVar[tuple[Option, ...]] = ()
    #: Whether a file holds exactly one tensor, named after the file's stem (``.npy``):
    #: :meth:`write` refuses several, and the name it is given is not stored.
    single_tensor: ClassVar[bool] = False
    #: Whether :meth:`write` takes one tensor at a time from the mapping it is given, so
    #: that writing from a lazy mapping holds one tensor in memory (False: all of them).
    #: A layer sets it per instance, from the codec inside it.
    streams_writes: bool = False
    #: Whether the codec wraps another codec's file (zstd: ``w.json.zst``); the inner
    #: codec's name is then :attr:`inner`, taken from the file name when not given.
    layer: ClassVar[bool] = False
    #: A layer's inner codec name (None: from the file's name or content).
    inner: str | None = None
    #: The pip extra the codec needs beyond weightstore's own dependencies (its optional
    #: package is imported on first use and a missing one raises MissingDependencyError
    #: naming the extra), or None.
    extra: ClassVar[str | None] = None
    #: Whether a file cut exactly between two tensors is detected as damaged (False for a
    #: format with no count or trailer, such as CSV: the cut file reads as fewer tensors).
    detects_cut_between_tensors: ClassVar[bool] = True
    #: Whether :meth:`write` exists (False: a format read from other tools' files only,
    #: like Keras and ONNX; writing raises UnsupportedError).
    writable: ClassVar[bool] = True
    #: The name of a format this one is a layout of (Keras weights are HDF5): a file whose
    #: content that format's test claims is read by this codec when its name carries one
    #: of :attr:`extensions` (``x.weights.h5``), by that format otherwise.
    refines: ClassVar[str | None] = None

    def __init__(self, **options: Any) -> None:
        known = {opt.name: opt for opt in self.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            names = ", ".join(known) or "none"
            raise OptionError(
                field=f"{self.name} option {unknown[0]!r}",
                expected=f"one of the {self.name} options ({names})", found=unknown[0],
            )
        for opt in self.options:
            value = options.get(opt.name, opt.default)
            setattr(self, opt.name, opt.validate(self.name, value))

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """True if a file starting with *head* (up to 512 bytes) is of this format."""
        return False

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        """Write *weights* to the binary file object. *path* is for messages only."""
        raise NotImplementedError

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> Weights:
        """Read a file object positioned at the start. *path* is for messages only.

        A codec that stores checksums verifies them unless *verify* is false; one that
        stores none ignores it. *budget* is the operation's :class:`Budget` (None: the
        codec makes one from *limits* with ``Budget.of``): charge it before allocating
        what the file decides, and hand it on to any codec read inside.
        """
        raise NotImplementedError

    def open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> TensorSource:
        """The file's tensors, to be read one at a time. *fileobj* must stay open until the
        source is closed. This default reads the whole file with :meth:`read`; codecs whose
        header tells where each tensor lies override it to read only the header (checking
        the header's checksum on opening, each tensor's as it is read, unless *verify* is
        false)."""
        return LoadedSource(self.read(fileobj, path=path, limits=limits, verify=verify,
                                      budget=budget))

    @classmethod
    def opens_lazily(cls) -> bool:
        """Whether :meth:`open` reads only the header (it is overridden), so that tensors are
        read on access; a layer's answer depends on its inner codec."""
        return cls.open is not Codec.open

    @property
    def label(self) -> str:
        """The name shown to people: ``"npz"``, or a layer with its inner codec
        ``"zstd(json)"``."""
        return f"{self.name}({self.inner})" if self.layer and self.inner else self.name

    def get_config(self) -> dict[str, Any]:
        """The codec's name under ``"id"`` and its option values, as plain data:
        :meth:`from_config` rebuilds an equal codec from it."""
        return {"id": self.name, **{opt.name: getattr(self, opt.name) for opt in self.options}}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Codec:
        """The codec :meth:`get_config` described (``config["id"]`` must be this codec's
        name; :func:`weightstore.registry.codec_from_config` finds the class by it)."""
        options = dict(config)
        found = options.pop("id", cls.name)
        if found != cls.name:
            raise OptionError(field="codec config 'id'", expected=repr(cls.name), found=found)
        return cls(**options)

    def __repr__(self) -> str:
        args = ", ".join(f"{opt.name}={getattr(self, opt.name)!r}" for opt in self.options)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codec) and type(other) is type(self) \
            and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.get_config().items())))
