"""GGUF weights kept quantized: llama.cpp's 4-bit blocks become Int4Linear layers without passing through float.

Block layouts (ggml-quants.c; every one runs along a row, so blocks are groups over in_features):

  Q4_0  32 weights: fp16 d, 16 bytes of nibbles        w = (q - 8) d        -> scale d, zero 0
  Q4_1  32 weights: fp16 d, fp16 m, 16 bytes of nibbles w = q d + m          -> scale d, zero m + 8 d
  Q4_K  256 weights: fp16 d, fp16 dmin, 12 bytes of 6-bit (sc, m) for 8 sub-blocks of 32, 128 bytes of
        nibbles;                                      w = q d sc - dmin m   -> scale d sc, zero 8 d sc - dmin m
  Q8_0  32 weights: fp16 d, 32 int8                  w = q d

In Q4_0/Q4_1 byte i of a block holds weight i in its low nibble and weight i + 16 in its high nibble; in
Q4_K each 64-weight chunk's 32 bytes hold sub-block 2j in the low nibbles and 2j + 1 in the high ones.

The 4-bit types map onto int4's (q - 8) * scale + zero with group 32 and the codes unchanged. Exactness in
fp32: Q4_0 is bit-exact. Q4_1's dequantized (q - 8) d + (m + 8 d) equals ggml's q d + m bit for bit
whenever m + 8 d is itself exact in fp32 (both terms are fp16, so it is unless their exponents are ~13
apart): (q - 8) d is exact, and both sides are one rounding of the same real number. Q4_K likewise,
when 8 d sc - dmin m is exact. The kernels' results then differ from float matmuls only by summation order.

Q8_0 has one scale per 32 weights, int8pack one per row; no exact mapping exists, so Q8_0 linear layers
are re-quantized per row (Int8Linear) from their dequantized values: lossy, typically ~0.5% of a row's
largest weight. Every other type (F16, Q5_x, Q6_K, ...) is dequantized to float, as `r1.load_model` does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from gguf import quants as gguf_quants
from torch import nn

from r1.engine.quant import DIRECT_WEIGHT_READERS, matches, replace_module
from r1.engine.quant_linear import Int4Linear, Int8Linear, QuantLinear, int4_fits
from r1.formats.gguf_file import RawTensor
from r1.formats.gguf_io import GGUFError, load_gguf_raw
from r1.formats.loader import empty_model, load_tensors
from r1.model import CausalLM

INT4_TYPES = (Q.Q4_0, Q.Q4_1, Q.Q4_K)
INT8_TYPES = (Q.Q8_0,)
GGUF_GROUP = 32


def _blocks(r: RawTensor) -> torch.Tensor:
    """(N, n_blocks, type_size) uint8 copy of a 2-D tensor's blocks."""
    if len(r.shape) != 2:
        raise GGUFError(f"tensor {r.name!r}: expected a 2-D weight, got shape {r.shape}")
    n, k = r.shape
    data = np.array(r.data, dtype=np.uint8, copy=True)  # the raw view is read-only file memory
    return torch.from_numpy(data).view(n, k // r.block_size, r.type_size)


def _f16(b: torch.Tensor) -> torch.Tensor:
    """(..., 2) little-endian bytes -> (...) fp32."""
    return b.contiguous().view(torch.float16)[..., 0].float()


def int4_parts(r: RawTensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q4_0 / Q4_1 / Q4_K blocks -> codes uint8 (N, K), scales and zeros fp32 (N, K/32)."""
    b = _blocks(r)
    n, nb, _ = b.shape
    if r.ggml_type in (Q.Q4_0, Q.Q4_1):
        d = _f16(b[..., 0:2])  # (N, nb)
        off = 2 if r.ggml_type == Q.Q4_0 else 4
        qs = b[..., off : off + 16]  # (N, nb, 16)
        codes = torch.cat([qs & 15, qs >> 4], dim=-1).reshape(n, nb * 32)
        zeros = torch.zeros_like(d) if r.ggml_type == Q.Q4_0 else _f16(b[..., 2:4]) + 8 * d
        return codes, d, zeros
    if r.ggml_type == Q.Q4_K:
        d, dmin = _f16(b[..., 0:2]), _f16(b[..., 2:4])  # (N, nb)
        sc, mn = gguf_quants.Q4_K.get_scale_min(b[..., 4:16].reshape(-1, 12).numpy())  # (N*nb, 8) each
        sc = torch.from_numpy(sc.astype(np.float32)).view(n, nb, 8)
        mn = torch.from_numpy(mn.astype(np.float32)).view(n, nb, 8)
        qs = b[..., 16:144].reshape(n, nb, 4, 32)  # 4 chunks of 64 weights
        codes = torch.stack([qs & 15, qs >> 4], dim=3).reshape(n, nb * 256)  # (chunk, lo/hi, 32) order
        scale = d[..., None] * sc  # exact: 11-bit x 6-bit significands
        zeros = 8 * scale - dmin[..., None] * mn
        return codes, scale.reshape(n, nb * 8), zeros.reshape(n, nb * 8)
    raise GGUFError(f"tensor {r.name!r}: {r.ggml_type.name} blocks do not map onto int4")


def int4_from_gguf(r: RawTensor, bias: torch.Tensor | None = None) -> Int4Linear:
    codes, scales, zeros = int4_parts(r)
    return Int4Linear(codes, scales, zeros, GGUF_GROUP, bias)


def int8_from_gguf(r: RawTensor, bias: torch.Tensor | None = None) -> Int8Linear:
    """Q8_0 re-quantized per output row (lossy; see the module docstring)."""
    return Int8Linear.from_float(raw_to_float(r), bias)


def raw_to_float(r: RawTensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Any supported GGUF tensor, dequantized (gguf's own routines, as r1.load_model uses)."""
    if r.ggml_type == Q.F32:
        out = np.array(r.data).view(np.float32)
    elif r.ggml_type == Q.F16:
        out = np.array(r.data).view(np.float16)
    elif r.ggml_type == Q.BF16:
        return torch.from_numpy(np.array(r.data).view(np.int16)).view(torch.bfloat16).reshape(r.shape).to(dtype)
    else:
        out = gguf_quants.dequantize(np.asarray(r.data), r.ggml_type)
    return torch.from_numpy(np.ascontiguousarray(out)).reshape(r.shape).to(dtype)


def load_quantized_gguf(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                        lm_head: bool = False) -> CausalLM:
    """A GGUF model whose Q4_0/Q4_1/Q4_K linear layers stay 4-bit (Int4Linear, group 32) and whose Q8_0
    layers become Int8Linear; everything else is dequantized to `dtype`. The output head stays float unless
    lm_head=True and the file stores it in one of those types (a tied head is the float embedding)."""
    path = Path(path)
    cfg, raw = load_gguf_raw(path)
    model = empty_model(cfg, dtype, device)
    linears = {f"{n}.weight": n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    kept: dict[str, QuantLinear] = {}
    for hub_name, r in raw.items():
        name = linears.get(hub_name)
        if name is None or matches(name, DIRECT_WEIGHT_READERS) or (name == "lm_head" and not lm_head):
            continue
        bias_raw = raw.get(f"{name}.bias")
        bias = None if bias_raw is None else raw_to_float(bias_raw, torch.float32)
        if r.ggml_type in INT4_TYPES and int4_fits(*r.shape, GGUF_GROUP) is None:
            kept[name] = int4_from_gguf(r, bias)
        elif r.ggml_type in INT8_TYPES:
            kept[name] = int8_from_gguf(r, bias)
    for name, module in kept.items():
        replace_module(model, name, module.to(device=device, dtype=dtype))
    # Biases of kept layers came with the blocks, but go through load_tensors too: it checks every float
    # tensor is present and of the right shape.
    consumed = {f"{n}.weight" for n in kept}
    floats = ((n, raw_to_float(r, dtype)) for n, r in raw.items() if n not in consumed)
    load_tensors(model, floats, str(path))
    return model.eval()


__all__ = ["INT4_TYPES", "INT8_TYPES", "int4_from_gguf", "int4_parts", "int8_from_gguf", "load_quantized_gguf",
           "raw_to_float"]
