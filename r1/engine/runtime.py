"""What runs on this machine: the CPU, torch's dispatch level, and the path r1 chose for each part
(GGUF block kernels, paged attention, int8/bf16 GEMMs, compiled steps). `r1 info --runtime`
prints it and the benchmarks put it in their JSON, so a figure always comes with what produced it.
Every entry is read from the part itself (the built library, torch's backends), never assumed."""
from __future__ import annotations

import os
import platform

import torch

from r1.engine.native import cache_root, compiler, cpu_flags, cpu_model, dispatch_level

# the flags the fast paths depend on, as /proc/cpuinfo names them
FLAGS_OF_NOTE = ("avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                 "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def runtime_report() -> dict[str, str]:
    from r1.engine import gguf_linear, paged_attention
    from r1.engine.quant_fbgemm import fbgemm_available

    flags = cpu_flags()
    gguf_why = gguf_linear.native_unavailable()
    attn_why = paged_attention.native_unavailable()
    try:
        from torch._inductor import cpu_vec_isa

        vec = str(cpu_vec_isa.pick_vec_isa()) or "none (scalar C++)"
    except Exception as e:  # inductor missing or not for this platform
        vec = f"unavailable ({type(e).__name__})"
    return {
        "cpu": cpu_model(),
        "cpu flags": " ".join(f for f in FLAGS_OF_NOTE if f in flags) or "(none of note)",
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}",
        "torch": torch.__version__,
        "torch dispatch level": dispatch_level() + (" (ATEN_CPU_CAPABILITY)" if os.environ.get("ATEN_CPU_CAPABILITY") else ""),
        "GGUF block kernels": (f"{gguf_linear.kernel_variant()}"
                               + (", Q4_0 repacked into planes" if gguf_linear.q4_0_planes_available() else "")
                               if gguf_why is None else f"off: {gguf_why}"),
        "paged decode attention": "native kernel" if attn_why is None else f"torch gather + SDPA ({attn_why})",
        "int8 GEMM (turbo on CPU)": "fbgemm" if fbgemm_available() else "torch int8pack (no fbgemm in this build)",
        "bf16 GEMM": "hardware (AVX512-BF16/AMX)" if gguf_linear.fast_bf16() else "not used: no BF16 instructions at this level",
        "compiled steps (turbo)": f"inductor, {vec}" + ("" if compiler() else "; no C compiler found"),
        "kernel cache": str(cache_root()),
    }
