"""Weight-only quantization of a loaded model: `quantize_model(model, "int4")` swaps its nn.Linear layers
for quantized ones in place (r1/engine/quant_linear.py), and `quant_io` / `quant_gguf` save and load
quantized checkpoints.

What stays float, and why:
  * embeddings (a lookup, not a matmul) and norms: they are not nn.Linear, so they are never touched;
  * the MoE router (`Gate.weight` is a Parameter, not nn.Linear): routing decisions are too sensitive;
  * `kv_b_proj` of MLA by default: the absorbed decode path reads `kv_b_proj.weight` directly (it folds it
    into the query and output), so a quantized module there would have no `.weight` to read;
  * `lm_head` unless asked for (`lm_head=True`): the logits are most sensitive to it, and with tied
    embeddings quantizing it breaks the tie (the embedding stays float, the head gets its own copy);
  * layers whose shape no kernel takes (int4: out_features % 16, in_features % group_size).
"""
from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from r1.engine.quant_linear import (
    FP8Linear,
    Int4Linear,
    Int8Linear,
    QuantLinear,
    SCHEME_CLASSES,
    int4_fits,
)

SCHEMES = tuple(SCHEME_CLASSES)
# fnmatch patterns over module names (model.layers.3.self_attn.kv_b_proj, ...). See the module docstring.
DEFAULT_SKIP: tuple[str, ...] = ("*kv_b_proj",)
# Modules whose `.weight` the model reads directly; loaders dequantize them back to float.
DIRECT_WEIGHT_READERS: tuple[str, ...] = ("*kv_b_proj",)


@dataclass
class QuantSummary:
    scheme: str
    group_size: int | None
    quantized: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # module name -> why it stayed float

    def __str__(self) -> str:
        g = f" (group {self.group_size})" if self.group_size else ""
        return f"{self.scheme}{g}: {len(self.quantized)} linear layers quantized, {len(self.kept)} kept float"


def matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def quantize_linear(linear: nn.Linear, scheme: str, group_size: int = 32) -> QuantLinear:
    """One nn.Linear -> its quantized stand-in (same bias). Raises ValueError if the shape does not fit."""
    if scheme not in SCHEME_CLASSES:
        raise ValueError(f"unknown quantization scheme {scheme!r}; choose one of {SCHEMES}")
    w = linear.weight.detach()
    bias = None if linear.bias is None else linear.bias.detach()
    if scheme == "int8":
        return Int8Linear.from_float(w, bias)
    if scheme == "int4":
        return Int4Linear.from_float(w, group_size, bias)
    return FP8Linear.from_float(w, bias)


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def quantize_model(model: nn.Module, scheme: str, group_size: int = 32, skip: Sequence[str] = DEFAULT_SKIP,
                   lm_head: bool = False) -> QuantSummary:
    """Quantize every eligible nn.Linear of `model` in place; returns what was quantized and what was not.

    scheme: "int8" (per output channel, symmetric), "int4" (group-wise asymmetric; group_size one of
    32/64/128/256) or "fp8" (128x128 tiles, DeepSeek's format). skip: fnmatch patterns of module names
    to keep float. Layers already quantized are left as they are.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown quantization scheme {scheme!r}; choose one of {SCHEMES}")
    if scheme == "int4":
        why = int4_fits(16, group_size, group_size)
        if why:
            raise ValueError(f"int4: {why}")
    summary = QuantSummary(scheme, group_size if scheme == "int4" else None)
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for name, lin in targets:
        if matches(name, skip):
            summary.kept[name] = "skipped by pattern"
            continue
        if name == "lm_head" and not lm_head:
            summary.kept[name] = "lm_head (pass lm_head=True to quantize it)"
            continue
        if scheme == "int4":
            why = int4_fits(lin.out_features, lin.in_features, group_size)
            if why:
                summary.kept[name] = why
                continue
        replace_module(model, name, quantize_linear(lin, scheme, group_size))
        summary.quantized.append(name)
    return summary


def set_compute_dtype(model: nn.Module, dtype: torch.dtype | None) -> None:
    """The dtype every int4/int8 layer runs its CPU kernel in (default bf16; None = the activations' dtype).
    See the footgun in r1/engine/quant_linear.py: this torch's CPU kernels are fast in bf16 only."""
    for m in model.modules():
        if isinstance(m, QuantLinear):
            m.compute_dtype = dtype


def quant_modules(model: nn.Module) -> dict[str, QuantLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantLinear)}


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, QuantLinear) for m in model.modules())


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes held by the weights of the linear layers (quantized: codes, scales and derived copies), biases
    excluded. A head tied to the embedding is the embedding's storage, so it is not counted."""
    tied = bool(getattr(getattr(model, "config", None), "tie_word_embeddings", False))
    total = 0
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear):
            total += m.weight_nbytes()
        elif isinstance(m, nn.Linear) and not (tied and name == "lm_head"):
            total += m.weight.numel() * m.weight.element_size()
    return total


__all__ = ["DEFAULT_SKIP", "DIRECT_WEIGHT_READERS", "FP8Linear", "Int4Linear", "Int8Linear", "QuantLinear",
           "QuantSummary", "SCHEMES", "is_quantized", "linear_weight_bytes", "quant_modules", "quantize_linear",
           "quantize_model", "replace_module", "set_compute_dtype"]
