"""Verdicts and the record of one sandboxed run."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum


class Verdict(str, Enum):
    """Outcome of a run (OK..SANDBOX_ERROR) or of a test case (adds PASSED, WRONG_ANSWER, SKIPPED).

    A str enum so verdicts serialize to JSON as their value and compare equal to it.
    """

    OK = "ok"                          # exited 0 (not yet compared with an expected output)
    PASSED = "passed"
    WRONG_ANSWER = "wrong_answer"
    RUNTIME_ERROR = "runtime_error"    # non-zero exit, uncaught exception, signal
    TIME_LIMIT = "time_limit"          # wall clock or CPU time
    MEMORY_LIMIT = "memory_limit"      # RLIMIT_AS MemoryError or memory cgroup OOM kill
    OUTPUT_LIMIT = "output_limit"      # stdout/stderr/file beyond max_output_bytes
    SKIPPED = "skipped"                # not run: global budget spent or an earlier case failed
    SANDBOX_ERROR = "sandbox_error"    # the sandbox itself failed; not the program's fault

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RunResult:
    verdict: Verdict
    exit_code: int | None       # None when killed by a signal
    signal: int | None
    wall_s: float
    cpu_s: float | None
    peak_memory_mb: float | None  # max RSS of the program's process tree member that peaked
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    detail: str = ""            # why the verdict was chosen, or the sandbox error
    isolation: str = ""         # level the run had: strong / partial / minimal
    warnings: tuple[str, ...] = field(default=())

    def to_json(self, max_chars: int | None = None) -> dict:
        """A JSON-ready dict; output fields cut to `max_chars` for display."""
        d = asdict(self)
        d["verdict"] = self.verdict.value
        d["warnings"] = list(self.warnings)
        if max_chars is not None:
            for key in ("stdout", "stderr"):
                if len(d[key]) > max_chars:
                    d[key] = d[key][:max_chars]
                    d[f"{key}_truncated"] = True
        return d
