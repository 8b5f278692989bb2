"""Named inference profiles: `base` (weights as stored, plain decoding) and `turbo` (the R1-0528
"Turbo" combination: 4-bit weights, a compressed KV cache, MTP speculative decoding where the
model has MTP modules; plus compiled decode steps). A profile is data; `load_for_profile` applies it. On CPU, turbo's weights
are int8 through fbgemm instead of int4 (see quant_fbgemm.py for why)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from r1.model.base import CausalLM


@dataclass(frozen=True)
class Profile:
    weights: str | None  # None = as loaded (float); "int4" | "int8" | "fp8"
    group_size: int
    kv_cache_dtype: str  # "auto" | "int8"
    speculative: bool  # MTP drafting where the model has MTP modules and it pays (EngineConfig: "auto")
    compile: bool  # decode steps through torch.compile (r1/engine/compiled.py)


# Turbo keeps the KV cache in the model's dtype: its int8 cache costs a quantize on write and a
# dequantize of the whole past on every read, and measured slower on CPU at batch 1 and 16 rows
# (docs/bench-decode.md, session 11). LLM(..., kv_cache_dtype="int8") still buys the 4x capacity
# where memory, not speed, is short.
PROFILES: dict[str, Profile] = {
    "base": Profile(weights=None, group_size=0, kv_cache_dtype="auto", speculative=False, compile=False),
    "turbo": Profile(weights="int4", group_size=32, kv_cache_dtype="auto", speculative=True, compile=True),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


def load_for_profile(path: str | Path, profile: str, dtype: torch.dtype = torch.float32,
                     device: str = "cpu", progress=None) -> tuple[CausalLM, dict]:
    """The model prepared for `profile`, and the EngineConfig fields the profile sets.
    progress(done, total): reported while a GGUF file's tensors are placed (load_gguf_blocks)."""
    import r1
    from r1.engine.fuse import fuse_projections
    from r1.engine.quant import is_quantized, quantize_model
    from r1.engine.quant_fbgemm import fbgemm_available, use_fbgemm
    from r1.engine.quant_gguf import load_quantized_gguf

    p = get_profile(profile)
    path = Path(path)
    if gguf_blocks_apply(path, device):
        # A GGUF's blocks are already 4-8-bit weights: both profiles compute on them in place
        # (r1/engine/gguf_linear.py). Re-quantizing them (turbo's int8/int4) would read more bytes
        # per token, not fewer, and cost a float round trip at load. The KV cache stays float:
        # turbo's int8 cache measured no faster here (docs/bench-decode-real.md). Turbo compiles the
        # single-row step around the block kernels (custom ops) for files under
        # GGUF_COMPILE_MAX_BYTES, where fusing the small ops between them pays for a first-request
        # compile; larger files already decode near the bandwidth bound, and compiling lost there
        # (docs/bench-decode-real.md, the 8B class).
        from r1.engine.gguf_linear import load_gguf_blocks

        model = load_gguf_blocks(path, dtype=dtype, device=device, progress=progress)
        overrides = {"speculative": "auto" if p.speculative else False}
        if p.compile and path.stat().st_size < GGUF_COMPILE_MAX_BYTES:
            overrides["compile"] = True
        return model, overrides
    if p.weights is None:
        model = r1.load_model(path, dtype=dtype, device=device)
    elif str(device).startswith("cpu") and fbgemm_available():
        # CPU: int8 weights through fbgemm's dynamic-quantized GEMM. This torch build's int4 CPU
        # kernel is slower than fp32 F.linear (quant_fbgemm.py has the measurements), so 4-bit
        # weights would make "turbo" slower, not faster, on CPU.
        model = r1.load_model(path, dtype=dtype, device=device)
        # the output head is the largest single matrix of a small model (SmolLM2: a third of
        # the bytes read per token), so turbo quantizes it too; the embedding lookup stays float
        quantize_model(model, "int8", lm_head=True)
        use_fbgemm(model)
    else:
        # a GGUF's own 4/8-bit blocks are kept as they are (no float round trip); anything left in
        # float (or a float checkpoint) is quantized to the profile's scheme
        if path.suffix == ".gguf":
            model = load_quantized_gguf(path, dtype=dtype, device=device)
        else:
            model = r1.load_model(path, dtype=dtype, device=device)
        quantize_model(model, p.weights, group_size=p.group_size)
    if p.weights is not None:
        assert is_quantized(model)
    fuse_projections(model)
    overrides = {"kv_cache_dtype": p.kv_cache_dtype,
                 "speculative": "auto" if p.speculative else False}  # the engine decides (EngineConfig)
    if p.compile:  # only ever switched on: `base` leaves an explicit compile=True alone
        overrides["compile"] = True
    return model, overrides


# GGUF files at least this big compute on their blocks. Below it (SmolLM2-135M's 92 MiB) per-step
# Python overhead, not bytes read, bounds decode, and the earlier paths -- fp32 on oneDNN-packed
# weights (base), compiled int8 steps (turbo) -- keep the figures of docs/bench-decode.md.
GGUF_BLOCKS_MIN_BYTES = 256 * 2**20
# Turbo compiles a GGUF block model's decode step below this size (load_for_profile says why).
GGUF_COMPILE_MAX_BYTES = 2 * 2**30


def gguf_blocks_apply(path: Path, device: str | torch.device) -> bool:
    """A large .gguf file on the CPU with the block kernels built: load_gguf_blocks serves it."""
    from r1.engine.gguf_linear import native_unavailable

    return (path.suffix == ".gguf" and path.is_file() and path.stat().st_size >= GGUF_BLOCKS_MIN_BYTES
            and torch.device(device).type == "cpu" and native_unavailable() is None)
