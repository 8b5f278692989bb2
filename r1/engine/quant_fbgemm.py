"""CPU fast path for int8 weights: fbgemm's dynamic-quantized linear (W8A8).

The weight-only kernels of this torch CPU build are slow: measured on the 2-core AMD EPYC dev
machine for a 576x1536 matvec, `_weight_int4pack_mm_for_cpu` takes ~1.8 ms and
`_weight_int8pack_mm` ~0.9 ms against ~0.07 ms for fp32 `F.linear` (see docs/bench-decode.md).
fbgemm's `quantized::linear_dynamic` (AVX2/AVX-512 VNNI) takes ~0.03 ms: it quantizes the
activations per call (one scale per tensor, 7-bit range to avoid VNNI saturation) and runs an
int8 x int8 -> int32 GEMM with the int8 weight, reading a quarter of fp32's bytes.

The price is activation quantization error on top of the weight's; `forward_reference` (float
activations, dequantized weight) is the slow reference the tests compare against.
"""
from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from r1.engine.quant_linear import Int8Linear


@functools.cache
def fbgemm_available() -> bool:
    """A fact of the torch build, cached: decode asks once per matmul, and asking torch is a
    Python property lookup each time."""
    return "fbgemm" in torch.backends.quantized.supported_engines


@functools.cache
def _linear_dynamic():
    """fbgemm's op as the C++ callable behind its `.default` overload. The overload's Python
    `__call__` scans every argument for the fake script objects of export/compile tracing, since
    the op takes one (the packed weight); eager calls never carry one, and the scan was ~3 us of
    a ~20 us call, 187 times a decode step on the DeepSeek-arch benchmark model."""
    return torch.ops.quantized.linear_dynamic.default._op


class DynamicInt8Linear(Int8Linear):
    """Same storage and checkpoint layout as Int8Linear (per-row symmetric int8 + scales)."""

    scheme = "int8"

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__(qweight, scales, bias)
        self._packed = None

    @classmethod
    def from_int8(cls, m: Int8Linear) -> "DynamicInt8Linear":
        return cls(m.qweight, m.scales, m.bias)

    def _pack(self):
        if self._packed is None:
            with warnings.catch_warnings():  # quantized tensors are deprecated; the packed kernel is not (yet)
                warnings.simplefilter("ignore", UserWarning)
                q = torch._make_per_channel_quantized_tensor(
                    self.qweight, self.scales.double(), torch.zeros(self.out_features, dtype=torch.long), 0)
            bias = None if self.bias is None else self.bias.detach().float()
            self._packed = torch.ops.quantized.linear_prepack(q, bias)
        return self._packed

    def _relayout(self) -> None:
        self._packed = None  # device or dtype moved: repack on next use

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or x.device.type != "cpu" or not fbgemm_available():
            return super().forward(x)
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        if x2.dtype != torch.float32 or not x2.is_contiguous():
            x2 = x2.float().contiguous()
        y = _linear_dynamic()(x2, self._pack(), True)
        y = y.view(*shape[:-1], self.out_features)
        return y if x.dtype == torch.float32 else y.to(x.dtype)


def use_fbgemm(model: nn.Module) -> int:
    """Swap every Int8Linear of a CPU model for the fbgemm path; returns how many were swapped."""
    if not fbgemm_available():
        return 0
    torch.backends.quantized.engine = "fbgemm"
    swaps = [(n, m) for n, m in model.named_modules() if type(m) is Int8Linear and m.qweight.device.type == "cpu"]
    for name, m in swaps:
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, DynamicInt8Linear.from_int8(m))
    return len(swaps)
