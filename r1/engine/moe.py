"""The engine's MoE layer: for a handful of tokens, every expert at once in two matmuls.

DeepSeekMoE's routed forward (`MoE.forward`, the reference) groups tokens by expert and runs each
expert on its own tokens: ~8 small ops per expert. A decode step of a small model routes a few
tokens per expert, so that loop is op overhead, not arithmetic. Here all experts (and the shared
ones) are one wide SwiGLU MLP instead:

    gate_up = x @ W1                    x (n, D), W1 (D, E * 2I): every expert's gate and up rows
    h = silu(gate) * up * combine       (n, E, I); combine (n, E) = the gate weight, 0 where not routed
    out = h.reshape(n, E * I) @ W2      W2 (E * I, D): the down projections, stacked -- the sum over
                                        experts happens inside the matmul

An expert that was not routed gets weight 0, so it adds exactly nothing (its output is finite);
the result equals the routed one up to float rounding. It does E / top_k times the routed
arithmetic and reads every expert's weights, so it only pays when both are small. Median times
of one layer on the 2-core dev VM, one thread, stacked vs routed (8 routed experts + 1 shared):

    d=128, I=64  (0.9 MB):  1 token 128 vs 125 us,  8: 143 vs 283,  32: 249 vs 511
    d=128, I=96  (1.3 MB):  1 token  90 vs 124 us,  8: 165 vs 259,  32: 319 vs 386
    d=256, I=128 (3.5 MB):  1 token 124 vs 137 us,  8: 325 vs 384,  32: 735 vs 581

and with 16 experts of d=256, I=128 (6.7 MB): 165 vs 159 us at 1 token, 557 vs 528 at 8. Hence
the limits below: stacked weights of at most 4 MiB, and tokens x stacked MiB at most 32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from r1.model.deepseek import MoE


class EngineMoE(MoE):
    """MoE plus the stacked small-batch path above; the same parameters and state_dict."""

    max_stacked_bytes = 4 << 20
    max_tokens_x_bytes = 32 << 20

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.numel() // x.shape[-1]
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or self.__dict__.get("_never_stacked"):
            return super().forward(x)
        stacked = self._stacked()
        if stacked is None or n * (stacked[0].nbytes + stacked[1].nbytes) > self.max_tokens_x_bytes:
            return super().forward(x)
        w1, w2, inter = stacked
        shape = x.shape
        x = x.reshape(n, shape[-1])  # (n, D)
        combine, idx = self.gate_weights(x)  # (n, E), (n, k)
        self.last_expert_load = torch.bincount(idx.flatten(), minlength=self.n_experts)
        gu = x @ w1  # (n, E*2I [+ 2I_shared])
        routed = gu[:, : self.n_experts * 2 * inter].view(n, self.n_experts, 2, inter)
        h = F.silu(routed[:, :, 0]) * routed[:, :, 1] * combine[:, :, None]  # (n, E, I)
        h = h.reshape(n, self.n_experts * inter)
        if self.shared_experts is not None:
            g, u = gu[:, self.n_experts * 2 * inter:].chunk(2, dim=-1)
            h = torch.cat([h, F.silu(g) * u], dim=1)  # the shared experts, weight 1
        return (h @ w2).view(shape)

    def _mlps(self) -> list[nn.Module]:
        shared = self._modules.get("shared_experts")
        return [*self._modules["experts"]._modules.values(), *([shared] if shared is not None else [])]

    def _stacked(self) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """(W1 (D, E*2I [+ 2I_s]), W2 (E*I [+ I_s], D), I), rebuilt when any weight changed (in
        place, e.g. an optimizer step, or replaced); None when the experts are not plain float
        linears without bias (quantized, fused) or too large to pay."""
        mlps = self._mlps()
        # Looked up on every call (a decode step), through the modules' own dicts: nn.Module's
        # attribute lookup made this check cost more than the matmuls it decides about.
        linears = [m._modules.get(name) for m in mlps for name in ("gate_proj", "up_proj", "down_proj")]
        if not all(isinstance(lin, nn.Linear) and lin._parameters.get("bias") is None for lin in linears):
            self.__dict__["_never_stacked"] = True  # quantized or fused experts stay that way
            return None
        weights = [lin._parameters["weight"] for lin in linears]
        key = tuple((w.data_ptr(), w._version) for w in weights)
        cached = self.__dict__.get("_stacked_weights")
        if cached is not None and cached[0] == key:
            return cached[1]
        built = None
        if sum(w.numel() * w.element_size() for w in weights) > self.max_stacked_bytes:
            # Too large to pay, now and later: without this, every decode step of a model with
            # large experts re-checked them just to fall back (17 experts of d=512, 1 token: 320
            # vs 197 us a layer). Only speed depends on it: both paths compute the same function.
            self.__dict__["_never_stacked"] = True
        else:
            with torch.no_grad():
                w1 = torch.cat([torch.cat([m.gate_proj.weight, m.up_proj.weight]) for m in mlps]).t().contiguous()
                w2 = torch.cat([m.down_proj.weight.t() for m in mlps]).contiguous()
            built = (w1, w2, self.experts[0].gate_proj.out_features)
        self.__dict__["_stacked_weights"] = (key, built)  # a plain attribute: not a buffer, not in state_dict
        return built


def use_engine_moe(model: nn.Module) -> int:
    """Swap every MoE layer of the model for EngineMoE, in place; returns how many were swapped."""
    n = 0
    for m in model.modules():
        if type(m) is MoE:
            m.__class__ = EngineMoE
            n += 1
    return n
