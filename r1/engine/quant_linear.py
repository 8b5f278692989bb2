"""Weight-only quantized linear layers that stand in for `nn.Linear` (out N, in K): y = x W^T + b.

  Int8Linear  W[n, k] = qweight[n, k] * scales[n]                          int8, symmetric, one scale per row
  Int4Linear  W[n, k] = (q[n, k] - 8) * scales[n, g] + zeros[n, g]          q in 0..15, g = k // group_size
  FP8Linear   W[n, k] = weight[n, k] * weight_scale_inv[n // 128, k // 128]  float8_e4m3fn, DeepSeek-V3's layout

Int4's "zeros" is the weight value at code 8 (the float zero-point of PyTorch's tinygemm kernels), so
an asymmetric min/max group (w = q * s + min) has zeros = min + 8 s, and a symmetric one has zeros = 0.

`forward` uses a fused kernel where one exists for the tensor's device; `forward_reference` is the slow
path (`dequantize()` then F.linear) that tests hold every kernel to. Kernels, as this torch build has them:

  int8       aten._weight_int8pack_mm(x (M, K), qweight int8 (N, K), scales (N,)): x fp32/bf16/fp16 and
             contiguous, scales in x's dtype. CPU; CUDA builds of recent torch have it too (untested here).
  int4 CPU   aten._convert_weight_to_int4pack_for_cpu(q int32 (N, K), innerKTiles) -> uint8 (N, K/2) in a
             blocked layout, aten._weight_int4pack_mm_for_cpu(x, packed, group, scales_and_zeros (K/G, N, 2));
             N % 16 == 0, group in {32, 64, 128, 256}, K % group == 0, x fp32/bf16/fp16, scales in x's dtype.
  int4 CUDA  aten._convert_weight_to_int4pack(uint8 (N, K/2), innerKTiles) -> int32 tiles, aten._weight_int4pack_mm;
             bf16 only (we cast), sm80+, K % (16 innerKTiles) == 0.
  fp8 CUDA   torch._scaled_mm with 1x128 activation blocks and 128x128 weight blocks (sm90, CUDA >= 12.9).
  fp8 CPU    no kernel: the weight is dequantized on every call, then F.linear. No float copy is cached:
             it would hold more memory than the float model, which is what FP8 weights exist to avoid.

Footgun, measured on this torch build (AVX512 CPU): the int4/int8 CPU kernels are vectorized for bf16 only.
With fp32 activations they run a scalar fallback 20-60x slower than a plain fp32 matmul (1536x512, one row:
1.8 ms vs 0.09 ms; bf16: 0.03 ms). So on CPU the int4/int8 layers run their kernel in `compute_dtype`
(default bf16) whatever the activations' dtype, casting the input in and the output back; set
`compute_dtype = None` (r1.engine.quant.set_compute_dtype) to run in the activations' own dtype.

The modules are inference-only (their quantized state is buffers, not parameters). Their buffers are
non-persistent: `state_dict()` carries only the bias, and checkpoints are written by `quant_io`, which
asks each module for its portable layout (`export()`), never the device-specific packed one.
"""
from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import nn

from r1.engine.gemv import gemv, one_row
from r1.formats.safetensors_io import FP8_BLOCK, dequantize_fp8_block, quantize_fp8_block

INT4_GROUP_SIZES = (32, 64, 128, 256)  # what both int4 kernels accept
INT4_N_MULTIPLE = 16  # the CPU packer needs N % 16 == 0 (CUDA needs % 8)
FP8 = torch.float8_e4m3fn
CPU_COMPUTE_DTYPE = torch.bfloat16  # see the footgun in the module docstring


def aligned(t: torch.Tensor) -> torch.Tensor:
    """t, copied if its data does not start on a 64-byte boundary. Footgun: this torch's CPU
    `_weight_int8pack_mm` segfaults on misaligned operands (an activation view that starts 2 bytes into its
    storage, a weight read straight from a safetensors file at an odd offset). Fresh allocations are aligned;
    views and zero-copy file reads need not be."""
    return t if t.data_ptr() % 64 == 0 else t.clone()


def int4_fits(out_features: int, in_features: int, group_size: int) -> str | None:
    """None if the int4 kernels take this shape, else why not (used to keep such layers float)."""
    if group_size not in INT4_GROUP_SIZES:
        return f"group size {group_size} is not one of {INT4_GROUP_SIZES}"
    if in_features % group_size:
        return f"in_features {in_features} is not a multiple of the group size {group_size}"
    if out_features % INT4_N_MULTIPLE:
        return f"out_features {out_features} is not a multiple of {INT4_N_MULTIPLE}"
    return None


def _check_2d(w: torch.Tensor, what: str) -> None:
    if w.dim() != 2:
        raise ValueError(f"{what}: expected a 2-D (out, in) weight, got shape {tuple(w.shape)}")
    if w.is_meta:
        raise ValueError(f"{what}: weight is on the meta device (load or initialize the model first)")
    if w.is_floating_point() and not torch.isfinite(w).all():
        raise ValueError(f"{what}: weight contains NaN or Inf; refusing to quantize it")


# ---------------------------------------------------------------- quantizers (float -> codes)
def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric: w (N, K) -> qweight int8 (N, K), scales fp32 (N,); |q| <= 127."""
    _check_2d(w, "quantize_int8")
    w32 = w.float()
    scales = (w32.abs().amax(dim=1) / 127).clamp(min=1e-12)  # an all-zero row gets a harmless tiny scale
    q = (w32 / scales[:, None]).round().clamp(-127, 127).to(torch.int8)
    return q, scales


def quantize_int4(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group-wise asymmetric min/max (round to nearest): w (N, K) -> codes uint8 (N, K) in 0..15,
    scales and zeros fp32 (N, K/G), with w ~= (q - 8) * scale + zero."""
    _check_2d(w, "quantize_int4")
    n, k = w.shape
    if k % group_size:
        raise ValueError(f"quantize_int4: in_features {k} is not a multiple of group_size {group_size}")
    g = w.float().reshape(n, k // group_size, group_size)
    lo, hi = g.amin(-1), g.amax(-1)
    scales = ((hi - lo) / 15).clamp(min=1e-10)  # a constant group: every code 0 decodes to lo exactly
    q = ((g - lo[..., None]) / scales[..., None]).round().clamp(0, 15).to(torch.uint8)
    return q.reshape(n, k), scales, lo + 8 * scales


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """(N, K) codes 0..15 -> (N, K/2) uint8, byte j = q[:, 2j] << 4 | q[:, 2j+1]: the portable layout we
    save, and exactly the input `_convert_weight_to_int4pack` (CUDA) expects."""
    c = codes.to(torch.uint8)
    return (c[:, 0::2] << 4) | c[:, 1::2]


def unpack_nibbles(qweight: torch.Tensor) -> torch.Tensor:
    """Inverse of pack_nibbles: (N, K/2) uint8 -> (N, K) uint8 codes."""
    return torch.stack((qweight >> 4, qweight & 15), dim=-1).reshape(qweight.shape[0], -1)


def unpack_int4_cpu(packed: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Codes (N, K) from `_convert_weight_to_int4pack_for_cpu`'s output, as torch 2.13 lays it out:
    rows in blocks of 64, each block (K, 32) bytes with byte [k, j] = q[j, k] | q[j + 32, k] << 4; the last
    N % 64 rows (R of them) as one (K, R/2) block with byte [k, j] = q[2j, k] | q[2j + 1, k] << 4.
    This is an observed layout, not a documented one, so `Int4Linear` checks it on every pack and keeps
    the portable codes whenever it does not hold (another torch build or CPU ISA)."""
    flat = packed.reshape(-1)
    nb, r = divmod(n, 64)
    out = torch.empty(n, k, dtype=torch.uint8, device=packed.device)
    if nb:
        full = flat[: nb * k * 32].view(nb, k, 32)
        blocks = out[: nb * 64].view(nb, 64, k)
        blocks[:, :32] = (full & 15).transpose(1, 2)
        blocks[:, 32:] = (full >> 4).transpose(1, 2)
    if r:
        rem = flat[nb * k * 32 :].view(k, r // 2)
        out[nb * 64 :: 2] = (rem & 15).t()
        out[nb * 64 + 1 :: 2] = (rem >> 4).t()
    return out


def dequantize_fp8(weight: torch.Tensor, scale_inv: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bit-identical to safetensors_io.dequantize_fp8_block, ~2x faster on CPU: torch converts float8 to
    float with a scalar loop there, while a 256-entry table lookup vectorizes; and when the shape is whole
    tiles the scales broadcast over a tiled view instead of being repeated out to full size."""
    n, k = weight.shape
    if weight.device.type != "cpu" or n % FP8_BLOCK or k % FP8_BLOCK:
        return dequantize_fp8_block(weight, scale_inv, dtype)
    table = torch.arange(256, dtype=torch.uint8).view(FP8).float()  # every e4m3 value, by bit pattern
    w = table[weight.view(torch.uint8).int()]
    tiles = w.view(n // FP8_BLOCK, FP8_BLOCK, k // FP8_BLOCK, FP8_BLOCK) * scale_inv.float()[:, None, :, None]
    return tiles.view(n, k).to(dtype)


# ---------------------------------------------------------------- modules
class QuantLinear(nn.Module, abc.ABC):
    """Common part: shape, bias, the reference path, and device moves that keep quantized bits exact."""

    scheme = ""
    # Buffers that `module.to(dtype)` must not cast (nn.Module casts every floating-point tensor, which
    # would turn float8 weights into bf16 and round fp32 scales). They follow device moves only.
    exact_buffers: tuple[str, ...] = ()
    # Whether a compiled decode step (r1/engine/compiled.py) can hold this layer's kernel.
    in_graph = False

    def __init__(self, in_features: int, out_features: int, bias: torch.Tensor | None,
                 compute_dtype: torch.dtype | None = CPU_COMPUTE_DTYPE):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._compute_dtype = compute_dtype
        if bias is not None and tuple(bias.shape) != (out_features,):
            raise ValueError(f"{type(self).__name__}: bias has shape {tuple(bias.shape)}, expected ({out_features},)")
        # Registered even when None, so a loader can hand the layer its bias Parameter later.
        self.register_parameter("bias", None if bias is None else (
            bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias.detach().clone(), requires_grad=False)))

    @abc.abstractmethod
    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float weight (N, K) this module stands for."""

    @abc.abstractmethod
    def export(self) -> dict[str, torch.Tensor]:
        """The portable tensors a checkpoint stores for this layer (names after `<module>.`), bias excluded."""

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantize(torch.float32).to(x.dtype), self.bias)

    @property
    def compute_dtype(self) -> torch.dtype | None:
        """dtype the CPU kernel runs in (None: the activations' dtype). Ignored by FP8 and off the CPU."""
        return self._compute_dtype

    @compute_dtype.setter
    def compute_dtype(self, dtype: torch.dtype | None) -> None:
        if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"compute_dtype must be None, float32, bfloat16 or float16, got {dtype}")
        self._compute_dtype = dtype
        self._relayout()

    def _kernel_dtype(self, x: torch.Tensor) -> torch.dtype:
        return (self._compute_dtype or x.dtype) if x.device.type == "cpu" else x.dtype

    def _relayout(self) -> None:
        """Rebuild what derives from the stored state for its device and compute dtype (packing, scale copies)."""

    def _apply(self, fn, recurse=True):
        keep = {n: self._buffers[n] for n in self.exact_buffers if self._buffers.get(n) is not None}
        super()._apply(fn, recurse)
        for n, t in keep.items():  # fn made a (possibly cast) copy; keep the exact bits on its device instead
            self._buffers[n] = t.to(self._buffers[n].device)
        self._relayout()
        return self

    def _linear(self, x: torch.Tensor, mm, dtype: torch.dtype | None = None) -> torch.Tensor:
        """mm on x flattened to (M, K) (M = all leading dims), run in `dtype`, returned in x's dtype."""
        shape = x.shape
        if shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__}: input has {shape[-1]} features, expected {self.in_features}")
        y = mm(aligned(x.reshape(-1, self.in_features).to(dtype or x.dtype).contiguous())).to(x.dtype)  # (M, N)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.view(*shape[:-1], self.out_features)

    def weight_nbytes(self) -> int:
        """Bytes of the quantized weight as held (packing, scales and derived copies), bias excluded."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Linear(QuantLinear):
    scheme = "int8"
    in_graph = True  # single rows as a fused gemv, more through torch's int8 kernel

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None,
                 compute_dtype: torch.dtype | None = CPU_COMPUTE_DTYPE):
        if qweight.dtype != torch.int8 or qweight.dim() != 2:
            raise ValueError(f"Int8Linear: qweight must be 2-D int8, got {qweight.dtype} {tuple(qweight.shape)}")
        n, k = qweight.shape
        if tuple(scales.shape) != (n,):
            raise ValueError(f"Int8Linear: scales have shape {tuple(scales.shape)}, expected ({n},)")
        super().__init__(k, n, bias, compute_dtype)
        self.register_buffer("qweight", aligned(qweight.contiguous()), persistent=False)
        # The kernel wants scales in the activation dtype, so they follow the model's dtype like a weight.
        self.register_buffer("scales", scales.float() if not scales.is_floating_point() else scales, persistent=False)

    @classmethod
    def from_float(cls, w: torch.Tensor, bias: torch.Tensor | None = None) -> "Int8Linear":
        q, s = quantize_int8(w)
        return cls(q, s.to(w.dtype), bias)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return (self.qweight.float() * self.scales.float()[:, None]).to(dtype)

    def export(self) -> dict[str, torch.Tensor]:
        return {"qweight": self.qweight, "scales": self.scales}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() and one_row(x):  # a compiled decode step: read the int8 bytes once
            return gemv(x, self.qweight, self.scales, self.bias)
        if x.device.type not in ("cpu", "cuda") or x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return self.forward_reference(x)
        kd = self._kernel_dtype(x)
        s = self.scales.to(kd)  # (N,): casting per call costs nothing next to the matmul
        return self._linear(x, lambda x2: torch.ops.aten._weight_int8pack_mm(x2, self.qweight, s), kd)


class Int4Linear(QuantLinear):
    """Group-wise int4. At rest on CPU it holds only the kernel's packed bytes (0.5 byte per weight)
    plus scales and zeros; the portable codes are recovered from the packing when exported."""

    scheme = "int4"

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int,
                 bias: torch.Tensor | None = None, compute_dtype: torch.dtype | None = CPU_COMPUTE_DTYPE):
        if codes.dim() != 2 or codes.dtype not in (torch.uint8, torch.int32, torch.int64):
            raise ValueError(f"Int4Linear: codes must be a 2-D integer tensor, got {codes.dtype} {tuple(codes.shape)}")
        n, k = codes.shape
        why = int4_fits(n, k, group_size)
        if why:
            raise ValueError(f"Int4Linear: no int4 kernel for a ({n}, {k}) weight: {why}")
        want = (n, k // group_size)
        for name, t in (("scales", scales), ("zeros", zeros)):
            if tuple(t.shape) != want:
                raise ValueError(f"Int4Linear: {name} have shape {tuple(t.shape)}, expected {want}")
        if codes.numel() and ((codes.dtype != torch.uint8 and int(codes.min()) < 0) or int(codes.max()) > 15):
            raise ValueError("Int4Linear: codes must lie in 0..15")
        super().__init__(k, n, bias, compute_dtype)
        self.group_size = group_size
        # (K/G, N, 2): scale and zero of one group adjacent, the layout both kernels read.
        sz = torch.stack([scales.t(), zeros.t()], dim=-1).contiguous()
        self.register_buffer("scales_and_zeros", sz if sz.is_floating_point() else sz.float(), persistent=False)
        # portable nibbles, (N, K/2); kept only where the kernel's packing cannot be inverted
        self.register_buffer("qweight", None, persistent=False)
        self.register_buffer("packed", None, persistent=False)
        # scales_and_zeros in the kernel's dtype when that differs from the stored one (fp32 model, bf16 kernel)
        self.register_buffer("kernel_scales_and_zeros", None, persistent=False)
        self._layout = "none"  # which device type `packed` is laid out for
        self._relayout(codes.to(device=sz.device, dtype=torch.uint8))

    @classmethod
    def from_float(cls, w: torch.Tensor, group_size: int = 32, bias: torch.Tensor | None = None) -> "Int4Linear":
        q, s, z = quantize_int4(w, group_size)
        return cls(q, s.to(w.dtype), z.to(w.dtype), group_size, bias)

    def codes(self) -> torch.Tensor:
        """(N, K) uint8 codes 0..15."""
        if self.qweight is not None:
            return unpack_nibbles(self.qweight)
        return unpack_int4_cpu(self.packed, self.out_features, self.in_features)  # only dropped for "cpu"

    def _relayout(self, codes: torch.Tensor | None = None) -> None:
        device = self.scales_and_zeros.device
        kd = {"cpu": self._compute_dtype, "cuda": torch.bfloat16}.get(device.type) or self.scales_and_zeros.dtype
        self.kernel_scales_and_zeros = None if kd == self.scales_and_zeros.dtype else self.scales_and_zeros.to(kd)
        if device.type == self._layout and (self.packed is None or self.packed.device == device):
            return
        codes = (self.codes() if codes is None else codes).to(device)
        if device.type == "cpu":
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1)
            # Drop the portable copy only when the packing provably inverts (see unpack_int4_cpu).
            portable_needed = not torch.equal(unpack_int4_cpu(packed, self.out_features, self.in_features), codes)
        elif device.type == "cuda":
            k = self.in_features
            tiles = 8 if k % 128 == 0 else (4 if k % 64 == 0 else 2)  # innerKTiles: K % (16 * tiles) == 0
            packed = torch.ops.aten._convert_weight_to_int4pack(pack_nibbles(codes).contiguous(), tiles)
            portable_needed = True  # no inverse of the CUDA tile layout here
        else:  # no kernel on this device: forward falls back to the reference path
            packed, portable_needed = None, True
        self.packed = packed
        self.qweight = pack_nibbles(codes) if portable_needed else None
        self._layout = device.type

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        n, k, g = self.out_features, self.in_features, self.group_size
        sz = self.scales_and_zeros.float()  # (K/G, N, 2)
        q = self.codes().float().view(n, k // g, g)
        w = (q - 8) * sz[..., 0].t()[..., None] + sz[..., 1].t()[..., None]
        return w.view(n, k).to(dtype)

    def export(self) -> dict[str, torch.Tensor]:
        sz = self.scales_and_zeros
        return {"qweight": pack_nibbles(self.codes()), "scales": sz[..., 0].t().contiguous(),
                "zeros": sz[..., 1].t().contiguous()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None or x.device != self.packed.device or \
                x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return self.forward_reference(x)
        kd = self._kernel_dtype(x) if self._layout == "cpu" else torch.bfloat16  # the CUDA kernel is bf16-only
        sz = self.kernel_scales_and_zeros if self.kernel_scales_and_zeros is not None else self.scales_and_zeros
        sz = sz.to(kd)  # a no-op unless the activations' dtype differs from the model's
        op = torch.ops.aten._weight_int4pack_mm_for_cpu if self._layout == "cpu" else torch.ops.aten._weight_int4pack_mm
        return self._linear(x, lambda x2: op(x2, self.packed, self.group_size, sz), kd)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group_size={self.group_size}, layout={self._layout}"


class FP8Linear(QuantLinear):
    """DeepSeek-V3's FP8 weights: e4m3 values with one fp32 `weight_scale_inv` per 128x128 tile
    (the factor that multiplies the stored value back, despite the name)."""

    scheme = "fp8"
    exact_buffers = ("weight", "weight_scale_inv")

    def __init__(self, weight: torch.Tensor, weight_scale_inv: torch.Tensor, bias: torch.Tensor | None = None):
        if weight.dtype != FP8 or weight.dim() != 2:
            raise ValueError(f"FP8Linear: weight must be 2-D float8_e4m3fn, got {weight.dtype} {tuple(weight.shape)}")
        n, k = weight.shape
        want = (-(-n // FP8_BLOCK), -(-k // FP8_BLOCK))
        if tuple(weight_scale_inv.shape) != want:
            raise ValueError(f"FP8Linear: weight_scale_inv has shape {tuple(weight_scale_inv.shape)}, "
                             f"expected {want} for a ({n}, {k}) weight in {FP8_BLOCK}x{FP8_BLOCK} tiles")
        super().__init__(k, n, bias)
        self.register_buffer("weight", weight.contiguous(), persistent=False)
        self.register_buffer("weight_scale_inv", weight_scale_inv.float().contiguous(), persistent=False)

    @classmethod
    def from_float(cls, w: torch.Tensor, bias: torch.Tensor | None = None) -> "FP8Linear":
        _check_2d(w, "FP8Linear.from_float")
        q, s = quantize_fp8_block(w)
        return cls(q, s, bias)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize_fp8(self.weight, self.weight_scale_inv, dtype)

    def export(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight, "weight_scale_inv": self.weight_scale_inv}

    def _hopper_ok(self, x: torch.Tensor) -> bool:
        # cuBLAS blockwise scaling: sm90 with CUDA >= 12.9, and scale tensors that need no padding
        # (K/128 a multiple of 4). Anything else takes the dequantize path, which works everywhere.
        if not x.is_cuda or torch.cuda.get_device_capability(x.device) != (9, 0):
            return False
        cuda = tuple(int(p) for p in (torch.version.cuda or "0.0").split(".")[:2])
        return cuda >= (12, 9) and self.in_features % (4 * FP8_BLOCK) == 0 and self.out_features % FP8_BLOCK == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._hopper_ok(x):
            return self._linear(x, self._scaled_mm)
        return self._linear(x, lambda x2: F.linear(x2, self.dequantize(x2.dtype)))

    def _scaled_mm(self, x2: torch.Tensor) -> torch.Tensor:
        # Activations quantized on the fly in 1x128 blocks (DeepSeek's act_quant), weights in their 128x128
        # tiles; scale layouts as torch's own blockwise tests pass them (outer-dim-major for 1x128).
        m, k = x2.shape
        pad = (-m) % 16  # _scaled_mm wants every dimension a multiple of 16
        xp = F.pad(x2.float(), (0, 0, 0, pad)).view(m + pad, k // FP8_BLOCK, FP8_BLOCK)
        xs = (xp.abs().amax(-1) / torch.finfo(FP8).max).clamp(min=1e-12)  # (M, K/128)
        xq = (xp / xs[..., None]).to(FP8).view(m + pad, k)
        y = torch._scaled_mm(xq, self.weight.t(), scale_a=xs.t().contiguous().t(),
                             scale_b=self.weight_scale_inv.t(), out_dtype=torch.bfloat16)
        return y[:m].to(x2.dtype)


SCHEME_CLASSES: dict[str, type[QuantLinear]] = {"int8": Int8Linear, "int4": Int4Linear, "fp8": FP8Linear}
