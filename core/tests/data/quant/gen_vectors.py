#!/usr/bin/env python3
"""Generate the reference vectors for core/tests/quant_vectors.rs.

The reference decoder is the `gguf` PyPI package (gguf.quants), an
implementation independent of ours. For each weight type this writes:

  <NAME>.bin      raw little-endian block bytes, exactly as they sit in a GGUF file
  <NAME>.f32      gguf's decode of those bytes (little-endian f32)
  <NAME>.x.f32    a random activation vector of the same length
  <NAME>.dot.f64  float64 dot of the reference decode with x

Types gguf can quantize are produced by quantizing random normal data plus
edge values; every block type additionally gets raw random blocks (all bit
patterns in the quant fields) with finite f16 scales, and the k-quants, which
gguf cannot quantize, are raw random blocks only.

Usage: python3 gen_vectors.py   (writes next to this script; deterministic)
"""
import os

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf import quants

OUT = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(0x6E6D6D61)

# (file name = ggml name, type, can gguf quantize it?)
TYPES = [
    ("F32", T.F32, True),
    ("F16", T.F16, True),
    ("BF16", T.BF16, True),
    ("Q4_0", T.Q4_0, True),
    ("Q4_1", T.Q4_1, True),
    ("Q5_0", T.Q5_0, True),
    ("Q5_1", T.Q5_1, True),
    ("Q8_0", T.Q8_0, True),
    ("Q4_K", T.Q4_K, False),
    ("Q5_K", T.Q5_K, False),
    ("Q6_K", T.Q6_K, False),
]

# Expected (block elements, block bytes), checked against gguf's own table so a
# mismatch between our Rust constants and ggml is caught here too.
EXPECTED_SIZES = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2),
    "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34),
    "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210),
}

# Byte offsets of the f16 scale fields inside one block, per type.
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}


def f16_scales(n):
    """Finite f16 scales with a spread of magnitudes, signs, zero and subnormals."""
    v = rng.normal(size=n) * 10.0 ** rng.uniform(-4, 1, size=n)
    v[rng.random(n) < 0.1] = 0.0
    s = v.astype(np.float16)
    # sprinkle a couple of f16 subnormals / extremes in when there is room
    if n >= 4:
        s[0] = np.float16(-3.0e-6)   # subnormal
        s[1] = np.float16(60000.0)   # near the top of the f16 range
    assert np.all(np.isfinite(s))
    return s


def raw_blocks(name, n_blocks):
    """Random raw blocks: every quant bit random, f16 scale fields finite."""
    _, type_size = GGML_QUANT_SIZES[TYPES_BY_NAME[name]]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in F16_FIELDS[name]:
        blocks[:, off:off + 2] = f16_scales(n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return blocks


def float_source(n, qtype):
    """Random normal data plus finite edge values, for the float types."""
    v = rng.normal(size=n).astype(np.float32)
    # zeros, the f16 extremes, f16 subnormals (6e-8 is the smallest), a value
    # that underflows f16 to zero
    edges = [0.0, -0.0, 1.0, -1.0, 65504.0, -65504.0, 6.0e-8, -6.1e-5, 3.0e-5, 1.0e-9]
    if qtype != T.F16:
        # f32/bf16 only: f32 subnormals and magnitudes far beyond f16
        edges += [1.0e-40, -2.5e-39, 1.0e30, -3.0e37]
    v[: len(edges)] = np.array(edges, dtype=np.float32)
    return v


def quantized_blocks(name, qtype, n_blocks):
    block_size, _ = GGML_QUANT_SIZES[qtype]
    v = rng.normal(size=(n_blocks, block_size)).astype(np.float32)
    v[0, :] = 0.0                                # all-zero block: d == 0
    v[1, 3] = 40.0                               # a big positive outlier
    v[2, 17] = -55.0                             # a big negative outlier
    v[3, :] = np.float32(1e-3) * v[3, :]         # tiny values: f16 subnormal scales
    return quants.quantize(v, qtype).reshape(n_blocks, -1)


TYPES_BY_NAME = {name: t for name, t, _ in TYPES}


def main():
    total = 0
    for name, qtype, can_quantize in TYPES:
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        assert (block_size, type_size) == EXPECTED_SIZES[name], (name, block_size, type_size)
        if block_size == 1:
            # float types: an odd count, so the Rust dot exercises its tail loop
            n = 67
            src = float_source(n, qtype)
            if qtype == T.F32:
                raw = src.astype("<f4").view(np.uint8)
            else:
                raw = quants.quantize(src, qtype).view(np.uint8).reshape(-1)
        else:
            parts = []
            if can_quantize:
                parts.append(quantized_blocks(name, qtype, 4))
            parts.append(raw_blocks(name, 4))
            raw = np.concatenate(parts, axis=0).reshape(-1)
        raw = np.ascontiguousarray(raw, dtype=np.uint8)
        ref = quants.dequantize(raw, qtype).astype(np.float32).reshape(-1)
        n = ref.size
        assert raw.size == n // block_size * type_size
        assert np.all(np.isfinite(ref)), name
        x = rng.normal(size=n).astype(np.float32)
        # Huge edge values would swamp the dot product (and its relative
        # tolerance); give them zero activations so the rest still counts.
        x[np.abs(ref) > 100.0] = 0.0
        dot = np.array([np.dot(ref.astype(np.float64), x.astype(np.float64))], dtype="<f8")

        files = {
            f"{name}.bin": raw.tobytes(),
            f"{name}.f32": ref.astype("<f4").tobytes(),
            f"{name}.x.f32": x.astype("<f4").tobytes(),
            f"{name}.dot.f64": dot.tobytes(),
        }
        for fname, data in files.items():
            with open(os.path.join(OUT, fname), "wb") as f:
                f.write(data)
            total += len(data)
        print(f"{name:5} {n:5} elements, {raw.size:5} bytes, dot = {dot[0]:.9g}")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
