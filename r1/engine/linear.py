"""The engine's float linear layer: nn.Linear with two inference fast paths.

- In a compiled graph (r1/engine/compiled.py), a single-row call becomes `gemv`, a fused reduction.
- Eagerly, in inference mode on CPU with fp32 weights of at least `min_packed_elements`, it multiplies
  against a oneDNN pre-packed copy
  of the weight (`torch.ops.mkldnn._reorder_linear_weight` / `_linear_pointwise`, what inductor's
  freezing pass uses). Plain `F.linear` (MKL, which packs its operand inside each call) is slow
  here when few rows multiply a weight. Measured on the 2-core dev VM for a 1536x576 weight: 101 vs 230 us at
  1 row, 124 vs 317 at 4, 194 vs 342 at 16, 347 vs 722 at 64. The packed copy is made on first use
  and remade when the weight changes (its version counter moves on every in-place update, e.g.
  GRPO's optimizer step, or it is replaced); it costs one more copy of each fp32 weight in memory.
- Otherwise -- training (grad enabled), other dtypes or devices -- it is `F.linear`, which is also
  the reference the tests hold both fast paths to.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from r1.engine.gemv import gemv, one_row


@functools.cache
def onednn_linear_available() -> bool:
    """A fact of the torch build: oneDNN present and its packed linear ops registered."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        torch.ops.mkldnn._reorder_linear_weight  # noqa: B018 - resolving the op is the check
        torch.ops.mkldnn._linear_pointwise  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


class EngineLinear(nn.Linear):
    """nn.Linear plus the fast paths above; the same parameters and state_dict."""

    # oneDNN's call carries ~15-20 us of fixed overhead, so small weights stay on F.linear:
    # cache-resident, 1 thread, 384x128 took 19 us packed vs 6 us plain at 1 row, and a GRPO
    # rollout of a d=128 policy got slower; 1536x576 took 64 vs 66 at 1 row, 371 vs 659 at 32.
    min_packed_elements = 1 << 19

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if torch.compiler.is_compiling():
            return gemv(x, w, bias=self.bias) if one_row(x) else F.linear(x, w, self.bias)
        if w.numel() < self.min_packed_elements:  # the common case of small models first: per-call cost
            return F.linear(x, w, self.bias)
        if (torch.is_inference_mode_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
                and w.dtype == torch.float32 and onednn_linear_available()):
            y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, self.in_features), self._packed(), self.bias,
                                                   "none", [], "")
            return y.view(*x.shape[:-1], self.out_features)
        return F.linear(x, w, self.bias)

    def _packed(self) -> torch.Tensor:
        w = self.weight
        key = (w.data_ptr(), w._version)
        cached = self.__dict__.get("_packed_weight")
        if cached is None or cached[0] != key:
            cached = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), 1))
            self.__dict__["_packed_weight"] = cached  # a plain attribute: not a buffer, not in state_dict
        return cached[1]


def use_engine_linears(model: nn.Module) -> int:
    """Swap every plain nn.Linear of the model for EngineLinear, in place (EngineLinear adds no
    parameters, so tied weights -- a head sharing the embedding's Parameter -- stay tied);
    returns how many were swapped."""
    n = 0
    for m in model.modules():
        if type(m) is nn.Linear:
            m.__class__ = EngineLinear
            n += 1
    return n
