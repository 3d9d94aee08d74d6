"""Make the GGUF fixtures with gguf, the package llama.cpp maintains (not with weightstore).

Run in a private venv that has gguf and numpy (and ml_dtypes for the BF16 tensor):

    python tests/data/gguf/make_gguf.py

plain.gguf   F32, F16, BF16, F64, I8, I16, I32, I64 tensors and key/values of every GGUF
             value type, written by gguf.GGUFWriter; plain_expected.npz holds the arrays.
quant.gguf   Q8_0, Q4_0 and Q5_0 tensors quantized by gguf.quants.quantize, and Q4_K and Q6_K
             tensors. gguf's Python package cannot quantize K types (its Q4_K/Q6_K classes
             only dequantize) and llama.cpp's quantizer cannot be installed here, so the K
             blocks are random bytes with small finite f16 scales, written by GGUFWriter as
             raw Q4_K/Q6_K data: every byte pattern is a valid block. quant_expected/*.npy
             are gguf.quants.dequantize's values for each tensor, and quant_blocks.npz the
             raw blocks as gguf's own reader gives them.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import ml_dtypes
import numpy as np

HERE = Path(__file__).resolve().parent
Q = gguf.GGMLQuantizationType


def plain() -> None:
    rng = np.random.default_rng(11)
    tensors = {
        "token_embd.weight": rng.standard_normal((6, 8)).astype(np.float32),
        "blk.0.attn_q.weight": rng.standard_normal((4, 8)).astype(np.float16),
        "blk.0.ffn_up.weight": rng.standard_normal((3, 2, 4)).astype(ml_dtypes.bfloat16),
        "blk.0.attn_norm.weight": rng.standard_normal(8).astype(np.float64),
        "ids.i8": np.array([-128, -1, 0, 1, 127], dtype=np.int8),
        "ids.i16": np.array([[-32768, 0], [1, 32767]], dtype=np.int16),
        "ids.i32": np.arange(-6, 6, dtype=np.int32).reshape(3, 4),
        "ids.i64": np.array([-(2**63), 2**53 + 1, 2**63 - 1], dtype=np.int64),
    }
    w = gguf.GGUFWriter(HERE / "plain.gguf", "llama")
    w.add_name("weightstore fixture")
    w.add_uint32("llama.context_length", 4096)
    w.add_float32("llama.rope.freq_base", 10000.5)
    w.add_float64("test.f64", 0.1)
    w.add_bool("test.bool", True)
    w.add_uint8("test.u8", 255)
    w.add_int8("test.i8", -3)
    w.add_uint16("test.u16", 65535)
    w.add_int16("test.i16", -300)
    w.add_int32("test.i32", -70000)
    w.add_uint64("test.u64", 2**64 - 1)
    w.add_int64("test.i64", -(2**62))
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "héllo", "▁world"])
    w.add_array("tokenizer.ggml.scores", [0.0, -1.5, 2.25, 0.1])
    w.add_key_value("test.u32s", [1, 2, 3], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.UINT32)
    for name, array in tensors.items():
        if array.dtype == ml_dtypes.bfloat16:
            w.add_tensor(name, array.view(np.uint16).view(np.uint8).reshape(*array.shape[:-1], -1),
                         raw_dtype=Q.BF16)
        else:
            w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    np.savez(HERE / "plain_expected.npz",
             **{k: (v.view(np.uint16) if v.dtype == ml_dtypes.bfloat16 else v)
                for k, v in tensors.items()})


def _k_blocks(rng: np.random.Generator, rows: int, qtype: Q) -> np.ndarray:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, 2, size), dtype=np.uint8)  # 2 blocks a row
    if qtype == Q.Q4_K:  # d, dmin (f16) first
        raw[:, :, 0:2] = np.array([0.01], np.float16).view(np.uint8)
        raw[:, :, 2:4] = np.array([0.004], np.float16).view(np.uint8)
    else:  # Q6_K: d (f16) last
        raw[:, :, -2:] = np.array([0.002], np.float16).view(np.uint8)
    return raw.reshape(rows, 2 * size)


def quant() -> None:
    rng = np.random.default_rng(12)
    floats = rng.standard_normal((4, 64)).astype(np.float32)
    stored = {
        "blk.0.attn_k.weight": (gguf.quants.quantize(floats, Q.Q8_0), Q.Q8_0),
        "blk.0.attn_v.weight": (gguf.quants.quantize(floats[:2], Q.Q4_0), Q.Q4_0),
        "blk.0.attn_o.weight": (gguf.quants.quantize(floats[2:], Q.Q5_0), Q.Q5_0),
        "blk.0.ffn_down.weight": (_k_blocks(rng, 3, Q.Q4_K), Q.Q4_K),
        "blk.0.ffn_gate.weight": (_k_blocks(rng, 2, Q.Q6_K), Q.Q6_K),
        "output_norm.weight": (rng.standard_normal(64).astype(np.float32), None),
    }
    w = gguf.GGUFWriter(HERE / "quant.gguf", "llama")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    for name, (data, qtype) in stored.items():
        w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = HERE / "quant_expected"
    out.mkdir(exist_ok=True)
    for name, (data, qtype) in stored.items():
        values = data if qtype is None else gguf.quants.dequantize(data, qtype)
        np.save(out / f"{name}.npy", values)
    np.savez(HERE / "quant_blocks.npz", **{k: d for k, (d, q) in stored.items() if q is not None})


if __name__ == "__main__":
    plain()
    quant()
    reader = gguf.GGUFReader(HERE / "quant.gguf")
    print([(t.name, t.tensor_type.name, list(t.shape)) for t in reader.tensors])
