"""What a sandboxed run may use (`Limits`) and how the sandbox is built (`SandboxConfig`)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

# Environment a program sees: nothing inherited from the host (API keys, tokens, proxies,
# HF/OpenAI credentials all live in the environment of a training job).
CLEAN_ENV: dict[str, str] = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    # glibc reserves 64 MiB of address space per malloc arena (up to 8 per core): with
    # RLIMIT_AS that caps a threaded program at a handful of threads.
    "MALLOC_ARENA_MAX": "2",
}


@dataclass(frozen=True)
class Limits:
    """Per-run limits. Defaults suit competitive-programming style tests in Python."""

    timeout_s: float = 10.0          # wall clock, whole process tree
    cpu_s: float | None = None       # CPU seconds per process; None: same as timeout_s
    memory_mb: int = 512             # address space per process (RLIMIT_AS) and, with a
                                     # memory cgroup, the whole tree's resident memory
    max_processes: int = 32          # processes + threads in the tree (fork bombs)
    max_output_bytes: int = 4 << 20  # per stream (stdout, stderr) and per written file
    tmpfs_mb: int = 64               # size of the private working dir and /tmp
    max_open_files: int = 256

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"Limits.timeout_s must be > 0 seconds, got {self.timeout_s!r}")
        if self.cpu_s is not None and not self.cpu_s > 0:
            raise ValueError(f"Limits.cpu_s must be > 0 seconds or None (= timeout_s), got {self.cpu_s!r}")
        if self.memory_mb < 32:
            raise ValueError(f"Limits.memory_mb={self.memory_mb} is below what a Python interpreter needs to start; use >= 32")
        if self.max_processes < 1:
            raise ValueError(f"Limits.max_processes must be >= 1, got {self.max_processes}")
        if self.max_output_bytes < 1:
            raise ValueError(f"Limits.max_output_bytes must be >= 1, got {self.max_output_bytes}")
        if self.tmpfs_mb < 1:
            raise ValueError(f"Limits.tmpfs_mb must be >= 1, got {self.tmpfs_mb}")
        if self.max_open_files < 16:
            raise ValueError(f"Limits.max_open_files={self.max_open_files} is too few for Python to start; use >= 16")

    @property
    def cpu_limit_s(self) -> float:
        return self.timeout_s if self.cpu_s is None else self.cpu_s


LEVELS = ("strong", "partial", "minimal")


@dataclass(frozen=True)
class SandboxConfig:
    """How to build the sandbox; every mechanism is used when the host allows it.

    `require` refuses to run (SandboxUnavailable) when the host cannot reach that
    isolation level, instead of silently running untrusted code with less.
    """

    python: str = sys.executable
    python_flags: tuple[str, ...] = ("-I",)  # isolated mode: ignore PYTHON* env and user site
    use_namespaces: bool = True
    use_cgroups: bool = True
    use_seccomp: bool = True
    drop_privileges: bool = True
    uid_range: tuple[int, int] = (1_000_000, 1_999_999)  # a random host uid per run (see runner)
    require: str = "minimal"
    tmp_root: str | None = None       # where per-run host directories go (default: system temp)
    env: dict[str, str] = field(default_factory=lambda: dict(CLEAN_ENV))

    def __post_init__(self) -> None:
        if not os.path.isabs(self.python) or not os.access(self.python, os.X_OK):
            raise ValueError(f"SandboxConfig.python must be an absolute path to an executable interpreter, got {self.python!r}")
        if self.require not in LEVELS:
            raise ValueError(f"SandboxConfig.require must be one of {LEVELS}, got {self.require!r}")
        lo, hi = self.uid_range
        if not (0 < lo <= hi < 2**32 - 2):
            raise ValueError(f"SandboxConfig.uid_range must be 0 < lo <= hi < 2**32-2, got {self.uid_range}")
        if lo < 65536:
            # Low uids belong to real accounts; sharing one would let a program touch its files.
            raise ValueError(f"SandboxConfig.uid_range starts at {lo}; pick uids >= 65536 that no account uses")
        if self.tmp_root is not None and not os.path.isdir(self.tmp_root):
            raise ValueError(f"SandboxConfig.tmp_root={self.tmp_root!r} is not a directory")
        bad = [k for k in self.env if not k or "=" in k]
        if bad:
            raise ValueError(f"SandboxConfig.env has invalid variable names: {bad}")
