"""FP8 mixed-precision training as in DeepSeek-V3 §3.3: the linear layers' three GEMMs (forward,
activation gradient, weight gradient) take FP8 E4M3 inputs with fine-grained scaling, and
accumulate in higher precision; master weights, gradients and optimizer state stay fp32.

Scaling granularity (V3 Fig. 7a):
  activations / output gradients  1x128 tiles along the contraction dim (one scale per token per 128 channels)
  weights                         128x128 blocks
  weight-gradient GEMM            contracts over tokens, so both of its inputs are re-tiled 128x1
                                  (V3 caches the forward activation in FP8 and re-quantizes it)
Each tile's scale is amax / 448 (448 = the E4M3 maximum), so the largest entry maps to the top
of the FP8 range and one outlier only costs precision within its own tile.

Two executions of the same numbers:
  qdq      quantize to torch.float8_e4m3fn, dequantize, matmul in fp32 -- any device (CPU too);
           the values entering each GEMM are exactly the FP8 values, accumulation is fp32.
  hopper   torch.nn.functional.scaled_mm on FP8 tensors with blockwise scales (SM90, dims
           multiples of 128); used for the forward GEMM when available, else qdq.
Kept in high precision, as in V3: the embedding, the output head, the MoE router, norms, attention.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448
TILE = 128
# Scale floor: an all-zero tile would give scale 0 and 0/0 = NaN.
_MIN_SCALE = 1e-12


@dataclass
class Fp8Config:
    enabled: bool = False
    tile: int = TILE  # activation tile width and weight block size (V3: 128)
    backend: str = "auto"  # auto | qdq | hopper
    skip: tuple[str, ...] = ("lm_head",)  # module names kept in high precision (the output head, as V3)

    def __post_init__(self) -> None:
        if self.tile <= 0:
            raise ValueError(f"fp8.tile must be positive, got {self.tile}")
        if self.backend not in ("auto", "qdq", "hopper"):
            raise ValueError(f"fp8.backend={self.backend!r}: choose auto, qdq or hopper")
        self.skip = tuple(self.skip)


def _padded_tiles(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """x (R, C) as fp32 tiles (R/rows, rows, C/cols, cols), zero-padded at ragged edges."""
    R, C = x.shape
    rb, cb = -(-R // rows), -(-C // cols)
    xf = x.float()
    if (R, C) != (rb * rows, cb * cols):
        xf = F.pad(xf, (0, cb * cols - C, 0, rb * rows - R))
    return xf.view(rb, rows, cb, cols)


def quantize_tiles(x: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (R, C) -> (FP8 values (R, C), fp32 scales (ceil(R/rows), ceil(C/cols))) with
    x ~= q * scale per rows x cols tile. Ragged edges are zero-padded for the amax only."""
    R, C = x.shape
    tiles = _padded_tiles(x, rows, cols)
    scale = (tiles.abs().amax(dim=(1, 3)) / FP8_MAX).clamp(min=_MIN_SCALE)  # (rb, cb)
    q = (tiles / scale[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q.view(tiles.shape[0] * rows, tiles.shape[2] * cols)[:R, :C], scale


def dequantize_tiles(q: torch.Tensor, scale: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    R, C = q.shape
    tiles = _padded_tiles(q, rows, cols)  # FP8 -> fp32 is exact
    return (tiles * scale[:, None, :, None]).view(tiles.shape[0] * rows, tiles.shape[2] * cols)[:R, :C]


def qdq(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The FP8 value of x under rows x cols tile scaling, back in fp32 (the quantization error included)."""
    R, C = x.shape
    tiles = _padded_tiles(x, rows, cols)
    scale = (tiles.abs().amax(dim=(1, 3), keepdim=True) / FP8_MAX).clamp(min=_MIN_SCALE)
    deq = (tiles / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8).float() * scale
    return deq.view(tiles.shape[0] * rows, tiles.shape[2] * cols)[:R, :C]


def hopper_available(device: torch.device) -> bool:
    return (device.type == "cuda" and torch.cuda.is_available()
            and torch.cuda.get_device_capability(device)[0] == 9 and hasattr(F, "scaled_mm"))


def _hopper_gemm(xq: torch.Tensor, xs: torch.Tensor, wq: torch.Tensor, ws: torch.Tensor,
                 out_dtype: torch.dtype) -> torch.Tensor:
    """y (M, N) = x (M, K) @ w (N, K)^T on FP8 tensor cores with 1x128 x 128x128 block scales.
    The scale layouts are the ones cuBLASLt wants (torch's own scaled_mm samples): the
    activation scales K-block-major, the weight scales padded to a multiple of 4 K-blocks."""
    from torch.nn.functional import ScalingType, SwizzleType

    M, K = xq.shape
    N = wq.shape[0]
    kb = K // TILE
    l4 = (kb + 3) // 4 * 4
    sa = xs.t().contiguous().t()  # (M, kb), stored K-block-major
    sb = torch.zeros(N // TILE, l4, device=ws.device, dtype=torch.float32)
    sb[:, :kb] = ws  # ws (N/128, K/128)
    return F.scaled_mm(xq, wq.t(), [sa], [ScalingType.BlockWise1x128], [sb.t()], [ScalingType.BlockWise128x128],
                       [SwizzleType.NO_SWIZZLE], [SwizzleType.NO_SWIZZLE], None, out_dtype)


class _Fp8Linear(torch.autograd.Function):
    """y = x @ w^T with all three GEMMs on FP8 inputs (values exact, accumulation fp32)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, tile: int, use_hopper: bool) -> torch.Tensor:
        xq, xs = quantize_tiles(x, 1, tile)  # (n, k): 1x128 tiles along k
        wq, ws = quantize_tiles(w, tile, tile)  # (o, k): 128x128 blocks
        if use_hopper:
            y = _hopper_gemm(xq, xs, wq, ws, x.dtype)
        else:
            y = (dequantize_tiles(xq, xs, 1, tile) @ dequantize_tiles(wq, ws, tile, tile).t()).to(x.dtype)
        # The activation is kept for the backward pass in FP8 (plus its scales), as in V3.
        ctx.save_for_backward(xq, xs, wq, ws)
        ctx.tile, ctx.x_dtype, ctx.w_dtype = tile, x.dtype, w.dtype
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        xq, xs, wq, ws = ctx.saved_tensors
        t = ctx.tile
        gx = gw = None
        if ctx.needs_input_grad[0]:
            # Dgrad: gx (n, k) = gy (n, o) @ w (o, k): contracts over o; gy in 1x128 tiles along o.
            gx = (qdq(gy, 1, t) @ dequantize_tiles(wq, ws, t, t)).to(ctx.x_dtype)
        if ctx.needs_input_grad[1]:
            # Wgrad: gw (o, k) = gy^T (o, n) @ x (n, k): contracts over tokens, so both are
            # re-tiled 128x1 (128 tokens per scale); x comes back from its cached FP8 copy.
            x = dequantize_tiles(xq, xs, 1, t)
            gw = (qdq(gy, t, 1).t() @ qdq(x, t, 1)).to(ctx.w_dtype)
        return gx, gw, None, None


class Fp8Linear(nn.Linear):
    """nn.Linear whose matmuls run in FP8 (same parameters and state-dict names as nn.Linear,
    so checkpoints are unchanged). The bias is added in high precision."""

    tile: int = TILE
    use_hopper: bool = False

    @classmethod
    def from_linear(cls, lin: nn.Linear, tile: int = TILE, use_hopper: bool = False) -> "Fp8Linear":
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = lin.in_features, lin.out_features
        new.weight = lin.weight  # the same Parameter: master weights stay where they were
        new.bias = lin.bias
        new.tile = tile
        new.use_hopper = use_hopper and lin.in_features % TILE == 0 and lin.out_features % TILE == 0 and tile == TILE
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        # The fp32 master weight goes in as is: it is quantized straight from fp32, its gradient comes back fp32.
        y = _Fp8Linear.apply(x.reshape(-1, shape[-1]), self.weight, self.tile, self.use_hopper)
        y = y.view(*shape[:-1], self.out_features)
        return y + self.bias.to(y.dtype) if self.bias is not None else y


def enable_fp8(model: nn.Module, cfg: Fp8Config | None = None) -> list[str]:
    """Swap every nn.Linear (except cfg.skip) for an Fp8Linear in place; returns the swapped names.
    Call before building the optimizer and before DDP/FSDP wrapping."""
    cfg = cfg or Fp8Config(enabled=True)
    device = next(model.parameters()).device
    hopper = cfg.backend == "hopper" or (cfg.backend == "auto" and hopper_available(device))
    if cfg.backend == "hopper" and not hopper_available(device):
        raise RuntimeError("fp8.backend=hopper needs an SM90 GPU and torch.nn.functional.scaled_mm; use qdq or auto")
    swapped = []
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            full = f"{parent_name}.{name}" if parent_name else name
            if type(child) is nn.Linear and not any(full == s or full.endswith("." + s) for s in cfg.skip):
                setattr(parent, name, Fp8Linear.from_linear(child, cfg.tile, hopper))
                swapped.append(full)
    return swapped
