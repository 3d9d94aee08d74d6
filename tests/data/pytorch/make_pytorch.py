"""Make the PyTorch fixtures in this folder WITH REAL TORCH (tests read them without it).

Run from a private venv holding torch 2.13.0 (CPU) and numpy::

    python -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch==2.13.0 numpy
    /work/venv-torch/bin/python tests/data/pytorch/make_pytorch.py

Every file is written by ``torch.save``. Beside each one, ``<name>.expected.npz`` holds
what the test must read from it (written with numpy from the same tensors, viewed as
raw integers for bfloat16, which numpy lacks): the tests compare against that, so they
need neither torch nor the script. ``expected.json`` lists the metadata each file gives.

- ``checkpoint.pt``: zip format. A model state dict (float32, float16, bfloat16, int8,
  bool, int64, a 0-d tensor, a transposed (non-contiguous) view, two views sharing one
  storage, a slice at a storage offset), an Adam optimizer's state after one step
  (nested dicts with integer keys, a list of param groups) and ``epoch = 3``.
- ``legacy.pt``: the same model state in the legacy format
  (``_use_new_zipfile_serialization=False``).
- ``bigendian.pt``: torch cannot write big-endian on a little-endian machine, so this
  is ``checkpoint.pt``'s model state re-packed by this script: every storage
  byte-swapped and ``byteorder`` set to ``big`` (what torch writes on a big-endian
  host; torch.load reads it back swapped, checked below).
- ``sharded/pytorch_model-0000N-of-00002.bin`` + ``pytorch_model.bin.index.json``: the
  model state split over two torch.save files with a Hugging Face index.
- ``uint16.pt``: a uint16 tensor (torch writes it as an untyped storage plus a dtype).
- ``float8.pt``: a float8_e4m3fn tensor, which weightstore cannot hold (an error).
- ``scripted.pt``: a TorchScript module (``torch.jit.save``), which is not a checkpoint
  (an error that says what it is and what to do).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _np(t: torch.Tensor) -> np.ndarray:
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)  # raw bits; dtype in the name
    return t.numpy().copy()


def model_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    base = torch.randn(4, 6, generator=g)
    shared = torch.arange(20, dtype=torch.float32)
    return {
        "fc1.weight": torch.randn(5, 3, generator=g),
        "fc1.bias": torch.randn(5, generator=g).half(),
        "fc2.weight": torch.randn(3, 5, generator=g).to(torch.bfloat16),
        "quant.codes": torch.randint(-128, 127, (7,), generator=g, dtype=torch.int8),
        "mask": torch.rand(2, 3, generator=g) > 0.5,
        "steps": torch.tensor([1, -2, 2**40], dtype=torch.int64),
        "scale": torch.tensor(0.125),  # 0-d
        "transposed": base.t(),  # non-contiguous view of base's storage
        "shared.first": shared[:10].view(2, 5),  # two views of one storage
        "shared.second": shared[10:],  # at storage offset 10
        "strided": base[::2, 1::2],  # strided view with an offset
    }


def expected(obj: dict[str, torch.Tensor], prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(expected(v, name + "/"))
        elif isinstance(v, torch.Tensor):
            out[name + ("@bfloat16" if v.dtype == torch.bfloat16 else "")] = _np(v)
    return out


def save_expected(name: str, arrays: dict[str, np.ndarray]) -> None:
    # npz keys may not hold "/": store an ordered list of names beside
    np.savez(HERE / f"{name}.expected.npz", **{f"t{i}": a for i, a in enumerate(arrays.values())},
             names=np.array(list(arrays)))


def checkpoint() -> dict:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(2, 3)).sum().backward()
    opt.step()
    state = model_state()
    return {"model": state, "net": model.state_dict(), "optimizer": opt.state_dict(),
            "epoch": 3, "note": "made by make_pytorch.py"}


def byteswapped(src: Path, dst: Path) -> None:
    """Re-pack a zip checkpoint as a big-endian host writes it: each storage's elements
    byte-swapped, ``byteorder`` = ``big``. torch numbers storages in the order its pickler
    meets them, which is the order the loaded tensors show them in."""
    loaded = torch.load(src, weights_only=True)
    sizes: dict[str, int] = {}
    seen: dict[int, str] = {}
    for t in _tensors(loaded):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen[ptr] = str(len(seen))
            sizes[seen[ptr]] = t.element_size()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        prefix = next(n for n in zin.namelist() if n.endswith("/data.pkl"))[: -len("data.pkl")]
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == f"{prefix}byteorder":
                data = b"big"
            elif info.filename.startswith(f"{prefix}data/"):
                size = sizes[info.filename[len(f"{prefix}data/"):]]
                if size > 1:
                    data = np.frombuffer(data, f"<u{size}").byteswap().tobytes()
            zout.writestr(info.filename, data)


def _tensors(obj):  # noqa: ANN001, ANN202
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, torch.Tensor):
        yield obj


def main() -> None:
    torch.manual_seed(0)
    meta: dict[str, dict[str, str]] = {}

    ckpt = checkpoint()
    path = HERE / "checkpoint.pt"
    torch.save(ckpt, path)
    save_expected("checkpoint", expected(ckpt))

    state = model_state()
    legacy = HERE / "legacy.pt"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    save_expected("legacy", expected(state))

    plain = HERE / "plain-state.pt"  # the model state alone, zip format
    torch.save(state, plain)
    big = HERE / "bigendian.pt"
    byteswapped(plain, big)
    back = torch.load(big, weights_only=True)
    for k, v in state.items():  # torch reads the swapped archive as the original values
        assert torch.equal(back[k], v.contiguous()), k
    save_expected("bigendian", expected(state))
    plain.unlink()

    shard_dir = HERE / "sharded"
    shard_dir.mkdir(exist_ok=True)
    names = list(state)
    halves = [names[:5], names[5:]]
    weight_map = {}
    for i, part in enumerate(halves, 1):
        fname = f"pytorch_model-{i:05d}-of-00002.bin"
        torch.save({k: state[k] for k in part}, shard_dir / fname)
        weight_map.update({k: fname for k in part})
    total = sum(state[k].nelement() * state[k].element_size() for k in names)
    (shard_dir / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    save_expected("sharded", expected(state))

    u16 = {"codes": torch.tensor([0, 1, 65535, 300], dtype=torch.uint16)}
    torch.save(u16, HERE / "uint16.pt")
    save_expected("uint16", {"codes": u16["codes"].to(torch.int32).numpy().astype(np.uint16)})

    f8 = {"ok": torch.ones(2), "w8": torch.zeros(3, dtype=torch.float8_e4m3fn)}
    torch.save(f8, HERE / "float8.pt")

    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), HERE / "scripted.pt")

    meta["checkpoint"] = {"epoch": "3", "note": "made by make_pytorch.py"}
    (HERE / "expected.json").write_text(json.dumps(meta, indent=2) + "\n")
    buf = io.StringIO()
    for f in sorted(HERE.rglob("*")):
        if f.is_file():
            print(f"{f.relative_to(HERE)}: {os.path.getsize(f):,} bytes", file=buf)
    print(buf.getvalue(), end="")
    print("torch", torch.__version__)


if __name__ == "__main__":
    main()
