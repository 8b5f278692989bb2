"""Inference-time projection fusion: q/k/v into one `qkv_proj`, gate/up into one `gate_up_proj`.

On a small model decode is dominated by per-call overhead, not FLOPs: SmolLM2 runs 7 matmuls per
layer per token. Fusing the ones that read the same input makes it 4, with identical math
(concatenated output rows). The unfused model is the reference path; tests compare the two.
Works for float nn.Linear and for per-row int8 layers (their rows concatenate too). A fused model
is for inference: its state_dict no longer has the checkpoint names.
"""
from __future__ import annotations

import torch
from torch import nn

from r1.engine.quant_linear import Int8Linear
from r1.model.dense import GQAAttention
from r1.model.layers import MLP


def _concat(mods: list[nn.Module]) -> nn.Module | None:
    kinds = {type(m) for m in mods}
    if len(kinds) != 1:
        return None
    biases = [m.bias for m in mods]
    if any(b is None for b in biases) and not all(b is None for b in biases):
        biases = [b if b is not None else torch.zeros(m.out_features) for b, m in zip(biases, mods)]
    bias = None if all(b is None for b in biases) else torch.cat([b.detach() for b in biases])
    first = mods[0]
    if isinstance(first, nn.Linear):  # nn.Linear or the engine's EngineLinear
        w = torch.cat([m.weight.detach() for m in mods])
        out = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            out.weight.copy_(w)
            if bias is not None:
                out.bias.copy_(bias)
        return out.requires_grad_(False)
    if isinstance(first, Int8Linear):  # per-row scales: rows concatenate exactly
        return type(first)(torch.cat([m.qweight for m in mods]), torch.cat([m.scales for m in mods]), bias)
    return None  # group-wise / packed layouts: leave unfused


def fuse_projections(model: nn.Module) -> int:
    """Fuse in place; returns the number of fused modules created."""
    n = 0
    for mod in model.modules():
        if isinstance(mod, GQAAttention) and not hasattr(mod, "qkv_proj"):
            fused = _concat([mod.q_proj, mod.k_proj, mod.v_proj])
            if fused is not None:
                mod.qkv_proj = fused
                del mod.q_proj, mod.k_proj, mod.v_proj
                n += 1
        elif isinstance(mod, MLP) and not hasattr(mod, "gate_up_proj"):
            fused = _concat([mod.gate_proj, mod.up_proj])
            if fused is not None:
                mod.gate_up_proj = fused
                del mod.gate_proj, mod.up_proj
                n += 1
    return n
