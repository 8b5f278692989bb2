"""Decode attention read in place from the paged KV cache: a small C kernel, and its reference.

Why a kernel: PyTorch has no attention over paged storage on CPU, so a paged decode step first
gathers each row's whole past out of the blocks (`index_select` of b x t entries, per name and
layer) and then runs SDPA over that copy. For small models decoding many rows -- GRPO's rollouts
-- the copies are as costly as the attention itself: on the GRPO benchmark's Qwen2 policy
(32 rows, ~200 positions, one core) the two gathers and SDPA of a layer took ~360 us in place,
a quarter of the decode step. `kernels/paged_attention.c` reads every key and value where it lies.

It is compiled on first use with the machine's C compiler (`$CC`, else cc / gcc) for this very
CPU (-march=native; the build is cached per source, flags and CPU under ~/.cache/r1/kernels, or
$XDG_CACHE_HOME) and called through ctypes. Where there is no compiler, or the build fails, the
engine keeps the torch path and `native_unavailable()` says why. It is single-threaded, so the
engine uses it only at one torch thread (GRPO's rollout worker, `torch.set_num_threads(1)`);
with more threads SDPA's own parallelism wins. fp32 caches only.

The reference is `paged_decode_attention_reference` (gather + SDPA, what the engine otherwise
runs); tests/test_engine_paged_attention.py holds them equal.

`write_and_attend` is the whole of an in-place decode layer's cache work -- write the step's new
keys and values into their slots, then attend -- registered as one torch custom op
(`r1::paged_write_attend`) so a compiled decode step (r1/engine/compiled.py) can hold the kernel:
dynamo cannot trace a ctypes call, and the op declares the two storage tensors it writes, so
the graph keeps the write before the read.
"""
from __future__ import annotations

import ctypes
import functools

import torch
import torch.nn.functional as F

from r1.engine.native import KERNELS, build_library

SOURCE = KERNELS / "paged_attention.c"
# -ffast-math lets gcc vectorize the reductions and call libmvec's vector expf; the inputs are
# finite scores, the order of summation is the only change. It is given to the compile step
# only: linked with it, gcc adds crtfastmath, which would flush denormals for the whole process.
COMPILE_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-fPIC", "-std=c11"]


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str | None]:
    """(the loaded library, None) or (None, why not). Built at most once per machine and source."""
    dll, why = build_library(SOURCE, COMPILE_FLAGS, ["-lm"])
    if dll is None:
        return None, why
    fn = dll.paged_decode_attention
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 6 + [ctypes.c_float]
    return dll, None


def native_unavailable() -> str | None:
    """None when the kernel is ready, else why it is not (the engine then uses the torch path)."""
    return _load()[1]


def paged_decode_attention(q: torch.Tensor, k_store: torch.Tensor, v_store: torch.Tensor, table: torch.Tensor,
                           lens: torch.Tensor, block_size: int, scale: float, check: bool = True) -> torch.Tensor:
    """q (b, H, d) one query per row; k_store, v_store (slots, KV, d) the cache storage; table
    (b, width) int64 block ids per row; lens (b,) int64: row i attends positions 0..lens[i]-1
    (its new token included, already written). -> (b, H, d). fp32, CPU, contiguous storage.
    check=False skips validating the inputs (a caller that checked the same kinds of tensors
    once per step: the checks cost more than a small layer's call)."""
    dll, why = _load()
    if dll is None:
        raise RuntimeError(f"the paged attention kernel is unavailable: {why}")
    if check:
        check_inputs(q, k_store, v_store, table, lens, block_size)
    q = q.contiguous()
    out = torch.empty_like(q)
    b, H, d = q.shape
    if dll.paged_decode_attention(q.data_ptr(), k_store.data_ptr(), v_store.data_ptr(), table.data_ptr(),
                                  lens.data_ptr(), out.data_ptr(), b, H, k_store.shape[1], d, table.shape[1],
                                  block_size, scale):
        raise MemoryError("paged_decode_attention: scratch allocation failed")
    return out


@torch.library.custom_op("r1::paged_write_attend", mutates_args=("k_store", "v_store"))
def write_and_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_store: torch.Tensor, v_store: torch.Tensor,
                     slots: torch.Tensor, table: torch.Tensor, lens: torch.Tensor, block_size: int,
                     scale: float) -> torch.Tensor:
    """k, v (b, KV, d): the step's new keys and values -> storage rows slots (b,); then
    paged_decode_attention, unchecked (the checks cost more than a small layer's call). Its one
    caller, a compiled step (kv_cache.InPlaceStep), passes what is valid by construction: the
    engine's own block tables, lengths and fp32 storage, for a model the engine found the kernel
    fits (LLMEngine's in_place condition); eager steps call paged_decode_attention, checked."""
    k_store.index_copy_(0, slots, k)
    v_store.index_copy_(0, slots, v)
    return paged_decode_attention(q, k_store, v_store, table, lens, block_size, scale, check=False)


@write_and_attend.register_fake
def _(q, k, v, k_store, v_store, slots, table, lens, block_size, scale):
    return torch.empty_like(q, memory_format=torch.contiguous_format)


def check_inputs(q: torch.Tensor, k_store: torch.Tensor, v_store: torch.Tensor, table: torch.Tensor,
                 lens: torch.Tensor, block_size: int) -> None:
    """What the kernel assumes of its inputs (it reads raw memory); ValueError naming the culprit."""
    b, H, d = q.shape
    KV = k_store.shape[1]
    checks = [
        (q.dtype == k_store.dtype == v_store.dtype == torch.float32, "q and the cache must be float32"),
        (table.dtype == lens.dtype == torch.int64, "table and lens must be int64"),
        (k_store.shape == v_store.shape and k_store.shape[2] == d, "k/v storage must be (slots, KV, d) like q's d"),
        (H % KV == 0, f"{H} query heads do not split over {KV} KV heads"),
        (lens.shape == (b,) and table.shape[0] == b, "one table row and one length per query row"),
        (bool((lens >= 1).all()) and int(lens.max()) <= table.shape[1] * block_size, "lens must be in 1..width*bs"),
        (all(t.device.type == "cpu" for t in (q, k_store, v_store, table, lens)), "CPU tensors only"),
        (k_store.is_contiguous() and v_store.is_contiguous() and table.is_contiguous() and lens.is_contiguous(),
         "storage, table and lens must be contiguous"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(f"paged_decode_attention: {msg}")


def paged_decode_attention_reference(q: torch.Tensor, k_store: torch.Tensor, v_store: torch.Tensor,
                                     table: torch.Tensor, lens: torch.Tensor, block_size: int,
                                     scale: float) -> torch.Tensor:
    """The same, the torch way: gather each row's keys and values, then masked SDPA."""
    b, H, d = q.shape
    KV = k_store.shape[1]
    t = int(lens.max())
    pos = torch.arange(t)[None, :]  # (1, t)
    seen = pos < lens[:, None]  # (b, t)
    index = torch.where(seen, table.gather(1, (pos // block_size).expand(b, t)) * block_size + pos % block_size, 0)
    k = k_store.index_select(0, index.reshape(-1)).view(b, t, KV, d)
    v = v_store.index_select(0, index.reshape(-1)).view(b, t, KV, d)
    o = F.scaled_dot_product_attention(q[:, :, None], k.transpose(1, 2), v.transpose(1, 2),
                                       attn_mask=seen[:, None, None, :], scale=scale, enable_gqa=H != KV)
    return o[:, :, 0]  # (b, H, d)
