"""Building r1's small C kernels (r1/engine/kernels/*.c) on first use, for the CPU they run on.

Each kernel is compiled with the machine's C compiler (`$CC`, else cc / gcc) for this very CPU
(-march=native, held to torch's dispatch level: `isa_limit_flags`), cached under ~/.cache/r1/kernels (or $XDG_CACHE_HOME) by a key over the source,
the flags, the compiler and the CPU's identity (model name and flag list), and loaded through
ctypes. A build made on one kind of CPU is therefore never run on another: a cache directory
shared between machines (a home folder on NFS, a container image) gets one build per CPU kind,
and an instruction the CPU lacks is never executed. Where there is no compiler, or the build
fails, `build_library` says why and the caller keeps its torch path.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

KERNELS = Path(__file__).parent / "kernels"


@functools.cache
def cpu_identity() -> str:
    """What -march=native depends on: a build is only reused on the same kind of CPU."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo names them (avx2, avx512f, avx512_bf16, amx_bf16, ...)."""
    for line in cpu_identity().splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def dispatch_level() -> str:
    """torch's CPU dispatch level ("AVX512", "AVX2", "DEFAULT", ...): what the CPU offers, or
    less where ATEN_CPU_CAPABILITY caps it (how an AVX-512 machine stands in for an AVX2-only one)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def isa_limit_flags() -> list[str]:
    """Compiler flags that keep -march=native within torch's dispatch level: with torch held to
    AVX2, r1's kernels are built without AVX-512 too, so the run is what an AVX2-only CPU gets
    (and a kernel never uses an instruction class the process was told to leave alone)."""
    level = dispatch_level()
    if level == "AVX512" or platform.machine() not in ("x86_64", "AMD64"):
        return []
    if level == "AVX2":
        return ["-mno-avx512f", "-mno-amx-tile"]  # -mno-avx512f drops every AVX-512 subset with it
    return ["-mno-avx", "-mno-amx-tile"]  # DEFAULT: SSE only (-mno-avx drops AVX2, FMA, AVX-512)


def effective_flags() -> frozenset[str]:
    """cpu_flags() less what the dispatch level rules out: what r1's paths may rely on."""
    flags = cpu_flags()
    level = dispatch_level()
    if level != "AVX512":
        flags = frozenset(f for f in flags if not f.startswith(("avx512", "amx")))
    if level not in ("AVX512", "AVX2"):
        flags = frozenset(f for f in flags if not f.startswith(("avx", "fma")))
    return flags


def cpu_model() -> str:
    for line in cpu_identity().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and (path := shutil.which(name)):
            return path
    return None


def cache_root() -> Path:
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:  # no home directory to be found
        base = Path(tempfile.gettempdir())
    return base / "r1" / "kernels"


def build_library(source: Path, compile_flags: list[str], link_flags: list[str]) -> tuple[ctypes.CDLL | None, str | None]:
    """(the loaded library, None) or (None, why not). Built at most once per machine kind and source."""
    if platform.system() != "Linux":
        return None, f"built only on Linux (this is {platform.system()})"
    cc = compiler()
    if cc is None:
        return None, "no C compiler found ($CC, cc, gcc)"
    src = source.read_bytes()
    # the local headers it includes are part of the source: a change to one is a new build
    for name in re.findall(rb'^#include "([^"]+)"', src, re.M):
        src += b"\0" + (source.parent / name.decode()).read_bytes()
    compile_flags = [*compile_flags, *isa_limit_flags()]
    key = hashlib.sha256(b"\0".join([src, " ".join(compile_flags + link_flags).encode(), cc.encode(),
                                     cpu_identity().encode()])).hexdigest()[:16]
    root = cache_root()
    lib = root / f"{source.stem}-{key}.so"
    if not lib.exists():
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                obj, out = Path(tmp) / "k.o", Path(tmp) / "k.so"
                subprocess.run([cc, *compile_flags, "-c", str(source), "-o", str(obj)], check=True,
                               capture_output=True, timeout=180)
                subprocess.run([cc, "-shared", str(obj), "-o", str(out), *link_flags], check=True,
                               capture_output=True, timeout=180)
                os.replace(out, lib)  # atomic: a concurrent builder finds a whole library or none
        except (OSError, subprocess.SubprocessError) as e:
            err = getattr(e, "stderr", b"") or b""
            return None, f"building {source.name} failed: {e} {err.decode(errors='replace')[-500:]}".strip()
    try:
        return ctypes.CDLL(str(lib)), None
    except OSError as e:
        return None, f"loading {lib} failed: {e}"
