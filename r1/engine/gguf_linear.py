"""GGUF's quantized blocks as the engine's weights: linear layers and an embedding that compute on
the file's bytes where they lie (kernels/gguf_matmul.c), as llama.cpp does.

Why: a GGUF model (Q4_0, Q4_K_M, Q8_0: what people download of the R1-Distill models) expanded to
float is 4-8x the bytes to read per token, and decode is bound by those bytes; converting it to
another quantized layout costs load time and a transient float copy. Here a layer holds a uint8
view of the memory-mapped file: loading is mapping, and the resident size is the file's.

Two paths, picked by the number of rows M in a call:
  * M < `GGUFLinear.gemm_rows` (decode, small batches): `r1q_matmul`, int8 dot products against the
    blocks with the activations quantized per 32 (see the C file for the error this costs);
  * M >= gemm_rows (prefill chunks): the weight is dequantized, once for the whole chunk, to bf16
    where the CPU multiplies bf16 natively (AVX512-BF16 or AMX: oneDNN's GEMM), else fp32, and
    multiplied by torch. Dequantizing costs ~1 pass over the weight, which a chunk of many rows
    amortizes; the int8 path's cost grows with M.
`forward_reference` is the slow path the tests hold both to: gguf's own dequantization (an
independent implementation of the block layouts) and F.linear in fp32.
"""
from __future__ import annotations

import ctypes
import functools
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from gguf import GGMLQuantizationType as Q
from gguf import quants as gguf_quants
from torch import nn

from r1.engine.native import KERNELS, build_library, effective_flags
from r1.engine.quant import replace_module
from r1.engine.quant_gguf import GGUF_GROUP, INT4_TYPES, int4_from_gguf, raw_to_float
from r1.engine.quant_linear import Int8Linear, QuantLinear, int4_fits
from r1.formats.gguf_file import GGUFFile, RawTensor
from r1.model.base import CausalLM

SOURCE = KERNELS / "gguf_matmul.c"
# -fopenmp: rows split over threads in the OpenMP runtime torch itself is linked to (the soname
# libgomp.so.1 resolves to torch's copy, already loaded), so the two share one thread pool.
COMPILE_FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-std=c11"]
LINK_FLAGS = ["-fopenmp", "-lm"]
NATIVE_TYPES = (Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K)


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str | None]:
    dll, why = build_library(SOURCE, COMPILE_FLAGS, LINK_FLAGS)
    if dll is None:
        return None, why
    dll.r1q_matmul.restype = ctypes.c_int
    dll.r1q_matmul.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                               ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    dll.r1q_dequant_rows.restype = ctypes.c_int
    dll.r1q_dequant_rows.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                                     ctypes.c_int64, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    dll.r1q_has_q4_0_planes.restype = ctypes.c_int
    dll.r1q_variant.restype = ctypes.c_char_p
    dll.r1q_repack_q4_0.restype = None
    dll.r1q_repack_q4_0.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    dll.r1q_matmul_q4_0_planes.restype = ctypes.c_int
    dll.r1q_matmul_q4_0_planes.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                           ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    dll.r1q_dequant_q4_0_planes.restype = ctypes.c_int
    dll.r1q_dequant_q4_0_planes.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                                            ctypes.c_int64, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    return dll, None


def q4_0_planes_available() -> bool:
    """The kernel was built with the Q4_0 plane path (AVX512-VNNI): Q4_0 weights are repacked at load."""
    dll, _ = _load()
    return bool(dll is not None and dll.r1q_has_q4_0_planes())


def kernel_variant() -> str | None:
    """The dot-product path the GGUF kernels were built with ("AVX512-VNNI", "AVX-VNNI", "AVX2",
    "plain C"), or None where they are not built."""
    dll, _ = _load()
    return None if dll is None else dll.r1q_variant().decode()


def native_unavailable() -> str | None:
    """None when the GGUF kernels are built and loaded, else why not (loaders then expand to float)."""
    return _load()[1]


@functools.cache
def fast_bf16() -> bool:
    """The CPU multiplies bf16 in hardware (oneDNN then runs bf16 GEMMs natively, not emulated)."""
    return bool({"avx512_bf16", "amx_bf16"} & effective_flags())


def _dll() -> ctypes.CDLL:
    dll, why = _load()
    if dll is None:
        raise RuntimeError(f"the GGUF kernels are unavailable: {why}")
    return dll


def blocks_tensor(data: np.ndarray) -> torch.Tensor:
    """A torch view of (read-only, memory-mapped) block bytes; never written."""
    with warnings.catch_warnings():  # torch warns that the array is not writable; nothing writes it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.ascontiguousarray(data))


def _rows(data: torch.Tensor, scales: torch.Tensor | None, index: torch.Tensor | None, ggml_type: int, n: int,
          k: int, bf16: bool, name: str) -> torch.Tensor:
    """GGUFBlocks.rows on its tensors: (R, K) fp32 or bf16."""
    idx = None if index is None else index.reshape(-1).to(torch.int64).contiguous()
    if idx is not None and idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise IndexError(f"{name}: row index out of range 0..{n - 1}")
    r = n if idx is None else idx.numel()
    out = torch.empty(r, k, dtype=torch.bfloat16 if bf16 else torch.float32)
    rows_ptr, threads = None if idx is None else idx.data_ptr(), torch.get_num_threads()
    if scales is not None:
        failed = r and _dll().r1q_dequant_q4_0_planes(data.data_ptr(), scales.data_ptr(), k, rows_ptr, r,
                                                      out.data_ptr(), int(bf16), threads)
    else:
        failed = r and _dll().r1q_dequant_rows(ggml_type, data.data_ptr(), data.shape[1], k, rows_ptr, r,
                                               out.data_ptr(), int(bf16), threads)
    if failed:
        raise MemoryError(f"{name}: dequantizing rows failed (scratch allocation)")
    return out


def _matmul(x2: torch.Tensor, data: torch.Tensor, scales: torch.Tensor | None, ggml_type: int, n: int,
            name: str) -> torch.Tensor:
    """GGUFBlocks.matmul on its tensors: x2 (M, K) fp32 contiguous -> (M, N) fp32."""
    m, k = x2.shape
    y = torch.empty(m, n, dtype=torch.float32)
    if scales is not None:
        failed = _dll().r1q_matmul_q4_0_planes(data.data_ptr(), scales.data_ptr(), n, k, x2.data_ptr(), m,
                                               y.data_ptr(), torch.get_num_threads())
    else:
        failed = _dll().r1q_matmul(ggml_type, data.data_ptr(), data.shape[1], n, k, x2.data_ptr(), m, y.data_ptr(),
                                   torch.get_num_threads())
    if failed:
        raise MemoryError(f"{name}: GGUF matmul failed (scratch allocation)")
    return y


# The two as ops, so that a compiled decode step (turbo: r1/engine/compiled.py) can hold the kernels:
# opaque calls that read the blocks and write a new tensor, which is all the graph needs to know.
@torch.library.custom_op("r1::gguf_matmul", mutates_args=())
def _gguf_matmul_op(x2: torch.Tensor, data: torch.Tensor, scales: torch.Tensor | None, ggml_type: int, n: int,
                    name: str) -> torch.Tensor:
    return _matmul(x2.contiguous(), data, scales, ggml_type, n, name)


@_gguf_matmul_op.register_fake
def _(x2, data, scales, ggml_type, n, name):
    return x2.new_empty(x2.shape[0], n, dtype=torch.float32)


@torch.library.custom_op("r1::gguf_rows", mutates_args=())
def _gguf_rows_op(data: torch.Tensor, scales: torch.Tensor | None, index: torch.Tensor | None, ggml_type: int,
                  n: int, k: int, bf16: bool, name: str) -> torch.Tensor:
    return _rows(data, scales, index, ggml_type, n, k, bf16, name)


@_gguf_rows_op.register_fake
def _(data, scales, index, ggml_type, n, k, bf16, name):
    return data.new_empty(n if index is None else index.shape[0], k, dtype=torch.bfloat16 if bf16 else torch.float32)


class GGUFBlocks:
    """The common part of a GGUF weight: (N, row_bytes) uint8 blocks of one ggml type, shape (N, K)."""

    def __init__(self, blocks: torch.Tensor, ggml_type: Q, shape: tuple[int, int], name: str):
        ggml_type = Q(ggml_type)
        if ggml_type not in NATIVE_TYPES:
            raise ValueError(f"{name}: no GGUF kernel for {ggml_type.name} blocks (have {[t.name for t in NATIVE_TYPES]})")
        n, k = shape
        block, size = gguf_quants.GGML_QUANT_SIZES[ggml_type]
        if k % block:
            raise ValueError(f"{name}: {k} columns are not a whole number of {ggml_type.name} blocks of {block}")
        want = (n, k // block * size)
        if blocks.dtype != torch.uint8 or tuple(blocks.shape) != want or not blocks.is_contiguous():
            raise ValueError(f"{name}: {ggml_type.name} data for a ({n}, {k}) weight must be contiguous uint8 of "
                             f"shape {want}, got {blocks.dtype} {tuple(blocks.shape)}")
        self.blocks, self.ggml_type, self.shape, self.name = blocks, ggml_type, (n, k), name
        self.planes: tuple[torch.Tensor, torch.Tensor] | None = None  # Q4_0 (nibbles, fp16 scales), see to_planes

    def to_planes(self) -> "GGUFBlocks":
        """Q4_0 repacked into the two planes of the fast path (kernels/gguf_matmul.c): same bytes, new
        tensors; the block view is dropped. A no-op for other types, odd block counts or no AVX512-VNNI."""
        n, k = self.shape
        if self.ggml_type != Q.Q4_0 or k % 64 or self.planes is not None or not q4_0_planes_available():
            return self
        nb = k // 32
        nib, sc = torch.empty(n, nb * 16, dtype=torch.uint8), torch.empty(n, nb, dtype=torch.int16)
        _dll().r1q_repack_q4_0(self.blocks.data_ptr(), n, nb, nib.data_ptr(), sc.data_ptr())
        self.planes, self.blocks = (nib, sc), None
        return self

    def ggml_blocks(self) -> np.ndarray:
        """(N, row_bytes) uint8 in ggml's own layout (rebuilt from the planes when repacked)."""
        if self.planes is None:
            return self.blocks.numpy()
        n, k = self.shape
        nib, sc = (t.numpy() for t in self.planes)
        return np.concatenate([sc.view(np.uint8).reshape(n, k // 32, 2), nib.reshape(n, k // 32, 16)], -1).reshape(n, -1)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"blocks": self.blocks} if self.planes is None else {"nibbles": self.planes[0], "scales": self.planes[1]}

    def rows(self, index: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight rows `index` (all when None) dequantized: (R, K) fp32 or bf16."""
        n, k = self.shape
        if torch.compiler.is_compiling():  # an embedding lookup or a prefill GEMM's weight in a compiled step
            out = torch.ops.r1.gguf_rows(*self._op_tensors(), None if index is None else index.reshape(-1),
                                         int(self.ggml_type), n, k, dtype == torch.bfloat16, self.name)
        else:
            out = _rows(*self._op_tensors(), index, int(self.ggml_type), n, k, dtype == torch.bfloat16, self.name)
        return out if out.dtype == dtype else out.to(dtype)

    def matmul(self, x2: torch.Tensor) -> torch.Tensor:
        """x2 (M, K) fp32 contiguous -> (M, N) fp32, int8 dot products against the blocks."""
        if torch.compiler.is_compiling():  # the op a compiled graph holds (eager calls skip its dispatch)
            return torch.ops.r1.gguf_matmul(x2, *self._op_tensors(), int(self.ggml_type), self.shape[0], self.name)
        return _matmul(x2, *self._op_tensors(), int(self.ggml_type), self.shape[0], self.name)

    def _op_tensors(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(blocks, None), or (nibbles, scales) when repacked into planes."""
        return (self.blocks, None) if self.planes is None else self.planes

    def reference(self) -> torch.Tensor:
        """(N, K) fp32 by gguf's own dequantization: the independent reference."""
        return torch.from_numpy(gguf_quants.dequantize(self.ggml_blocks(), self.ggml_type).copy()).view(self.shape)


class GGUFLinear(QuantLinear):
    """nn.Linear (out N, in K) whose weight is GGUF blocks. Inference only; CPU only."""

    scheme = "gguf"
    in_graph = True  # through the r1::gguf_matmul op
    # Prefill chunks of at least this many rows dequantize the weight and run a GEMM (module docstring).
    gemm_rows = 32

    def __init__(self, blocks: torch.Tensor, ggml_type: Q, shape: tuple[int, int], bias: torch.Tensor | None = None,
                 name: str = "GGUFLinear"):
        n, k = shape
        super().__init__(k, n, bias, compute_dtype=None)
        self.weight_blocks = GGUFBlocks(blocks, ggml_type, shape, name).to_planes()
        # registered so that weight_nbytes() sees them; not persistent: the GGUF file is the checkpoint
        for key, t in self.weight_blocks.tensors().items():
            self.register_buffer(key, t, persistent=False)

    def _apply(self, fn, recurse=True):
        # The blocks are the file's bytes: a cast must not touch them, and there is no kernel off the CPU.
        probe = fn(torch.zeros(()))
        if probe.device.type != "cpu":
            raise ValueError(f"{self.weight_blocks.name}: GGUF block weights run on the CPU only")
        if self.bias is not None:
            self.bias = nn.Parameter(fn(self.bias.detach()), requires_grad=False)
        return self

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.weight_blocks.rows(None, dtype)

    def export(self) -> dict[str, torch.Tensor]:
        """r1's portable layouts, as `r1 quantize file.gguf` writes them (quant_gguf): the 4-bit types as
        int4 with group 32, exactly; Q8_0, Q5_K and Q6_K re-quantized per row to int8 (lossy, see
        quant_gguf's docstring)."""
        wb = self.weight_blocks
        raw = RawTensor(wb.name, wb.ggml_type, wb.shape, wb.ggml_blocks())
        if wb.ggml_type in INT4_TYPES and int4_fits(*wb.shape, GGUF_GROUP) is None:
            return int4_from_gguf(raw).export()
        return Int8Linear.from_float(self.dequantize()).export()

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.float(), self.weight_blocks.reference(), None if self.bias is None else self.bias.float()
                        ).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise ValueError(f"{self.weight_blocks.name}: GGUF block weights run on the CPU only, got {x.device}")
        shape = x.shape
        if shape[-1] != self.in_features:
            raise ValueError(f"{self.weight_blocks.name}: input has {shape[-1]} features, expected {self.in_features}")
        x2 = x.reshape(-1, self.in_features)
        if x2.shape[0] >= self.gemm_rows:
            wdt = torch.bfloat16 if fast_bf16() else torch.float32
            y = F.linear(x2.to(wdt), self.weight_blocks.rows(None, wdt)).float()
        else:
            y = self.weight_blocks.matmul(x2.float().contiguous())
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype).view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, type={self.weight_blocks.ggml_type.name}"


class GGUFEmbedding(nn.Module):
    """nn.Embedding over GGUF blocks: each call dequantizes only the rows it looks up."""

    def __init__(self, blocks: torch.Tensor, ggml_type: Q, shape: tuple[int, int], dtype: torch.dtype,
                 name: str = "GGUFEmbedding"):
        super().__init__()
        self.num_embeddings, self.embedding_dim = shape
        self.weight_blocks = GGUFBlocks(blocks, ggml_type, shape, name)
        self.register_buffer("blocks", blocks, persistent=False)
        self.dtype = dtype

    def _apply(self, fn, recurse=True):
        probe = fn(torch.zeros(()))
        if probe.device.type != "cpu":
            raise ValueError(f"{self.weight_blocks.name}: GGUF block weights run on the CPU only")
        if probe.is_floating_point():
            self.dtype = probe.dtype
        return self

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The whole (V, D) table as float: what a checkpoint written from this model stores."""
        return self.weight_blocks.rows(None, dtype or self.dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.weight_blocks.rows(ids, self.dtype)
        return out.view(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, type={self.weight_blocks.ggml_type.name}"




def load_gguf_blocks(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                     progress: Callable[[int, int], None] | None = None) -> CausalLM:
    """A GGUF model whose linear layers and embedding compute on the file's own blocks (every
    tensor of a type in NATIVE_TYPES; others, norms and F16/F32 tensors, are loaded as `dtype`).
    Nothing is copied but Q/K rows llama.cpp permuted and the float tensors: the resident size is
    about the file's. progress(done, total) is called as tensors are placed."""
    if torch.device(device).type != "cpu":
        raise ValueError(f"GGUF block kernels run on the CPU only (asked for {device}); load the model as float "
                         "(r1.load_model) to move it to another device")
    why = native_unavailable()
    if why:
        raise RuntimeError(f"the GGUF kernels are unavailable: {why}")
    path = Path(path)
    f = GGUFFile(path)
    try:
        return _place(f, path, dtype, progress)
    finally:
        f.close()  # views handed out keep the map alive


def _place(f: GGUFFile, path: Path, dtype: torch.dtype, progress: Callable[[int, int], None] | None) -> CausalLM:
    from r1.formats.gguf_io import load_gguf_raw
    from r1.formats.loader import load_tensors, materialize
    from r1.model import build_model

    cfg, raw = load_gguf_raw(f)
    model = build_model(cfg, device="meta")
    linears = {f"{n}.weight": n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    consumed: set[str] = set()
    total = len(raw)
    for i, (hub_name, r) in enumerate(raw.items()):
        native = r.ggml_type in NATIVE_TYPES and len(r.shape) == 2
        if native and hub_name in linears:
            name = linears[hub_name]
            bias_raw = raw.get(f"{name}.bias")
            bias = None if bias_raw is None else torch.empty(r.shape[0], device="meta")
            layer = GGUFLinear(blocks_tensor(r.data), r.ggml_type, r.shape, bias, name=f"{path.name}: {hub_name}")
            replace_module(model, name, layer)
            if layer.weight_blocks.planes is not None:  # repacked: the file's pages are no longer needed
                f.drop_pages(r.name)
            consumed.add(hub_name)
        elif native and hub_name == "model.embed_tokens.weight":
            blocks = blocks_tensor(r.data)
            model.model.embed_tokens = GGUFEmbedding(blocks, r.ggml_type, r.shape, dtype, name=f"{path.name}: {hub_name}")
            if cfg.tie_word_embeddings:  # the head reads the same blocks
                model.lm_head = GGUFLinear(blocks, r.ggml_type, r.shape, name=f"{path.name}: {hub_name} (tied head)")
            consumed.add(hub_name)
        if progress:
            progress(i + 1, total)
    materialize(model, dtype, "cpu")
    # biases of block layers are float tensors too: load_tensors fills and checks every one of them
    load_tensors(model, ((n, raw_to_float(r, dtype)) for n, r in raw.items() if n not in consumed), str(path))
    return model.eval()


__all__ = ["GGUFBlocks", "GGUFEmbedding", "GGUFLinear", "NATIVE_TYPES", "blocks_tensor", "fast_bf16",
           "load_gguf_blocks", "native_unavailable"]
