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

from r1.engine.quant_linear import Int8Linear
from r1.model.deepseek import MoE


class EngineMoE(MoE):
    """MoE plus the stacked small-batch path above; the same parameters and state_dict."""

    max_stacked_bytes = 4 << 20
    max_tokens_x_bytes = 32 << 20

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.numel() // x.shape[-1]
        if torch.compiler.is_compiling() and self.__dict__.get("_bank") is not None:
            return self.forward_gathered(x)
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

    def forward_gathered(self, x: torch.Tensor) -> torch.Tensor:
        """The routed function with static shapes, reading only the routed experts' weights: each
        token's k experts are picked out of the bank (`bank_experts`) by index, and every product
        is a multiply-and-sum, which inductor compiles to one reduction with indirect loads (no
        (n, k, 2I, D) copy is made). For compiled decode steps; eagerly it would materialize that
        copy, so it runs eagerly only in tests.

            x (n, D), idx / w (n, k): routed experts and their gate weights
            w1 (E, 2I, D) [s1 (E, 2I)]: gate rows then up rows; w2 (E, D, I) [s2 (E, D)]
        """
        w1, s1, w2, s2 = self.__dict__["_bank"]
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (n, D)
        w, idx, _ = self.gate(x)
        gu = (x[:, None, None, :] * w1[idx]).sum(-1, dtype=torch.float32)  # (n, k, 2I)
        if s1 is not None:
            gu = gu * s1[idx].float()
        g, u = gu.chunk(2, dim=-1)
        h = (F.silu(g) * u * w[:, :, None].float()).to(x.dtype)  # (n, k, I), gate weight folded in
        y = (h[:, :, None, :] * w2[idx]).sum(-1, dtype=torch.float32)  # (n, k, D)
        if s2 is not None:
            y = y * s2[idx].float()
        out = y.sum(1).to(x.dtype)  # (n, D)
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        return out.view(shape)

    def _apply(self, fn, recurse=True):
        # A device move or cast gives the experts new tensors that are no views of the bank: drop
        # it, so compiled steps fall back to running every expert rather than read stale weights.
        self.__dict__.pop("_bank", None)
        return super()._apply(fn, recurse)

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


def _expert_linears(mlp: nn.Module) -> tuple[list[nn.Module], nn.Module] | None:
    """([gate_proj, up_proj] or [gate_up_proj] (fused), down_proj) when every one is a float
    nn.Linear or a per-row Int8Linear, all of one kind and without bias; None otherwise."""
    mods = mlp._modules
    first = [mods["gate_up_proj"]] if "gate_up_proj" in mods else [mods.get("gate_proj"), mods.get("up_proj")]
    lins = [*first, mods.get("down_proj")]
    kinds = {Int8Linear if isinstance(m, Int8Linear) else nn.Linear if isinstance(m, nn.Linear) else None
             for m in lins}
    if len(kinds) != 1 or None in kinds or any(m.bias is not None for m in lins):
        return None
    return first, lins[-1]


def _weight(lin: nn.Module) -> torch.Tensor:
    return lin.qweight if isinstance(lin, Int8Linear) else lin.weight


def _bank_layout(moe: MoE) -> list[tuple[list[nn.Module], nn.Module]] | None:
    """Each expert's (first projections, down_proj) when the experts can be banked, else None:
    uniform float or int8 linears without bias, and for int8 every expert's slice of the bank
    starting on a 64-byte boundary (a fresh tensor does; the slices start at multiples of I x D
    bytes), since the int8 kernels need aligned weights (quant_linear.aligned)."""
    found = [_expert_linears(e) for e in moe.experts]
    if any(f is None for f in found) or len({type(f[1]) for f in found}) != 1:
        return None
    down = found[0][1]
    if isinstance(down, Int8Linear) and (down.in_features * down.out_features) % 64:
        return None
    return found


def bankable(moe: MoE) -> bool:
    """Whether `bank_experts` would bank this layer (compile_blocker asks before compiling)."""
    return moe.__dict__.get("_bank") is not None or _bank_layout(moe) is not None


def bank_experts(moe: EngineMoE) -> bool:
    """Stacks the routed experts' weights into one bank per projection and makes each expert's
    tensors views of it, so the bank costs no memory and follows in-place updates (an optimizer
    step). The compiled decode step then gathers the routed experts' rows from it
    (`EngineMoE.forward_gathered`) instead of running every expert. Parameters keep their
    identity (their .data is re-pointed), so an optimizer holding them is unaffected. Returns
    False, changing nothing, when the experts cannot be banked (`_bank_layout`)."""
    if moe.__dict__.get("_bank") is not None:
        return True
    found = _bank_layout(moe)
    if found is None:
        return False
    quant = isinstance(found[0][1], Int8Linear)
    with torch.no_grad():
        w1 = torch.stack([torch.cat([_weight(lin) for lin in first]) for first, _ in found])  # (E, 2I, D)
        w2 = torch.stack([_weight(down) for _, down in found])  # (E, D, I)
        s1 = torch.stack([torch.cat([lin.scales for lin in first]) for first, _ in found]) if quant else None
        s2 = torch.stack([down.scales for _, down in found]) if quant else None
    views = []  # (linear, weight view, scales view)
    for e, (first, down) in enumerate(found):
        row = 0
        for lin in first:
            rows = lin.out_features
            views.append((lin, w1[e, row : row + rows], None if s1 is None else s1[e, row : row + rows]))
            row += rows
        views.append((down, w2[e], None if s2 is None else s2[e]))
    if quant and any(w.data_ptr() % 64 for _, w, _ in views):
        return False  # _bank_layout's arithmetic assumes an aligned allocation; never bank misaligned
    for lin, w, sc in views:
        if quant:
            lin._buffers["qweight"], lin._buffers["scales"] = w, sc
            lin._relayout()  # a kernel layout made from the old storage is rebuilt on next use
        else:
            lin.weight.data = w
    moe.__dict__["_bank"] = (w1, s1, w2, s2)  # a plain attribute: not a buffer, not in state_dict
    return True


def bank_all_experts(model: nn.Module) -> int:
    """bank_experts for every EngineMoE layer that allows it; returns how many were banked."""
    return sum(bank_experts(m) for m in model.modules() if isinstance(m, EngineMoE))


def use_engine_moe(model: nn.Module) -> int:
    """Swap every MoE layer of the model for EngineMoE, in place; returns how many were swapped."""
    n = 0
    for m in model.modules():
        if type(m) is MoE:
            m.__class__ = EngineMoE
            n += 1
    return n
