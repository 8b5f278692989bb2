"""Run many programs on many test cases in parallel, inside one global time budget.

`SandboxPool.run(jobs)` takes `CodeJob`s (a program and its tests) and returns one
`JobResult` per job with a verdict per case. Work units are spread over `workers` threads,
each blocking on one sandboxed process (no CPU is spent in the threads themselves). Every
unit waits for its process tree to be gone before it returns, so when `run` returns no
process and no zombie of the batch remains.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from . import harness
from .compare import compare_output, compare_values
from .limits import Limits
from .result import RunResult, Verdict
from .runner import Sandbox

# Interpreter start-up and harness load, added to a function job's hard timeout on top of
# the per-case alarms.
_STARTUP_ALLOWANCE_S = 2.0
_HARNESS_FAILURES = {v.value: v for v in (Verdict.RUNTIME_ERROR, Verdict.TIME_LIMIT, Verdict.MEMORY_LIMIT, Verdict.SKIPPED)}
# A unit that would get less than this much of the budget is skipped instead of started.
_MIN_SLICE_S = 0.05


@dataclass(frozen=True)
class TestCase:
    """One test. stdin programs: `input` is stdin, `output` the expected stdout.
    Function tests: `input` is a JSON list of positional arguments, `output` the JSON result."""

    __test__ = False  # not a pytest test class, despite the name

    input: str
    output: str

    def __post_init__(self) -> None:
        if not isinstance(self.input, str) or not isinstance(self.output, str):
            raise TypeError("TestCase.input and .output must be strings (JSON text for function tests)")


@dataclass(frozen=True)
class CodeJob:
    program: str
    cases: tuple[TestCase, ...]
    call: str | None = None          # None: stdin/stdout program; else e.g. "solve" or "Solution().f"
    limits: Limits = field(default_factory=Limits)
    float_tol: float | None = 1e-6
    fail_fast: bool = False          # skip remaining cases once one fails (binary rewards)
    # After a case hits the time limit, skip the rest: a program that hangs once usually
    # hangs again, and n tests x timeout would hold a worker for minutes. (LiveCodeBench
    # and Codeforces judges stop at the first failure, too.)
    stop_after_timeout: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.program, str):
            raise TypeError(f"CodeJob.program must be source text, got {type(self.program).__name__}")
        if not self.cases:
            raise ValueError("CodeJob needs at least one TestCase; a program with no tests cannot be graded")
        object.__setattr__(self, "cases", tuple(self.cases))
        if self.call is not None:
            for i, case in enumerate(self.cases):
                try:
                    args = json.loads(case.input)
                    json.loads(case.output)
                except ValueError as e:
                    raise ValueError(f"CodeJob case {i}: function tests need JSON input/output: {e}") from None
                if not isinstance(args, list):
                    raise ValueError(f"CodeJob case {i}: function test input must be a JSON list of arguments, got {case.input[:60]!r}")


@dataclass(frozen=True)
class CaseResult:
    verdict: Verdict
    detail: str = ""
    wall_s: float | None = None
    peak_memory_mb: float | None = None


@dataclass(frozen=True)
class JobResult:
    cases: tuple[CaseResult, ...]
    run: RunResult | None = None     # the process of a function job (None for stdin jobs)

    @property
    def passed(self) -> int:
        return sum(c.verdict is Verdict.PASSED for c in self.cases)

    @property
    def total(self) -> int:
        return len(self.cases)

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total

    def counts(self) -> dict[str, int]:
        return dict(Counter(c.verdict.value for c in self.cases))


@dataclass(frozen=True)
class PoolConfig:
    workers: int = field(default_factory=lambda: max(1, min(os.cpu_count() or 1, 8)))
    budget_s: float | None = None    # wall clock for a whole `run` call; None: no global budget

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"PoolConfig.workers must be >= 1, got {self.workers}")
        if self.budget_s is not None and not self.budget_s > 0:
            raise ValueError(f"PoolConfig.budget_s must be > 0 seconds or None, got {self.budget_s}")


class _Batch:
    """Mutable state of one `run` call, shared by its worker threads under a lock."""

    def __init__(self, jobs: list[CodeJob], budget_s: float | None) -> None:
        self.jobs = jobs
        self.deadline = None if budget_s is None else time.monotonic() + budget_s
        self.results: list[list[CaseResult | None]] = [[None] * len(j.cases) for j in jobs]
        self.runs: list[RunResult | None] = [None] * len(jobs)
        self.failed = [False] * len(jobs)
        self.timed_out = [False] * len(jobs)
        self.lock = threading.Lock()

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


class SandboxPool:
    def __init__(self, sandbox: Sandbox | None = None, config: PoolConfig | None = None) -> None:
        self.sandbox = sandbox or Sandbox()
        self.config = config or PoolConfig()

    def run(self, jobs: list[CodeJob]) -> list[JobResult]:
        jobs = list(jobs)
        if not jobs:
            return []
        self.sandbox.check()  # fail once, here, rather than in every worker
        batch = _Batch(jobs, self.config.budget_s)
        units = [(j, None) for j, job in enumerate(jobs) if job.call is not None]
        units += [(j, c) for j, job in enumerate(jobs) if job.call is None for c in range(len(job.cases))]
        units.sort(key=lambda u: (u[1] or 0, u[0]))  # case 0 of every job first: fair under a budget
        with ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="r1-sandbox") as ex:
            for fut in [ex.submit(self._unit, batch, j, c) for j, c in units]:
                fut.result()  # re-raise a bug in a worker instead of losing it
        return [JobResult(tuple(r if r is not None else CaseResult(Verdict.SKIPPED, "not run") for r in rs), batch.runs[j])
                for j, rs in enumerate(batch.results)]

    def _slice(self, batch: _Batch, j: int, want_s: float) -> float | None:
        """Seconds this unit may run, or None to skip it (budget spent, or fail-fast)."""
        with batch.lock:
            job = batch.jobs[j]
            if (batch.failed[j] and job.fail_fast) or (batch.timed_out[j] and job.stop_after_timeout):
                return None
        left = batch.remaining()
        if left is None:
            return want_s
        return None if left < _MIN_SLICE_S else min(want_s, left)

    def _skip_reason(self, batch: _Batch, j: int) -> str:
        if batch.timed_out[j] and batch.jobs[j].stop_after_timeout:
            return "an earlier case hit the time limit"
        return "an earlier case failed (fail_fast)" if batch.failed[j] else "global time budget spent"

    def _unit(self, batch: _Batch, j: int, c: int | None) -> None:
        job = batch.jobs[j]
        if c is None:
            self._function_unit(batch, j, job)
            return
        slice_s = self._slice(batch, j, job.limits.timeout_s)
        if slice_s is None:
            batch.results[j][c] = CaseResult(Verdict.SKIPPED, self._skip_reason(batch, j))
            return
        case = job.cases[c]
        run = self.sandbox.run(job.program, stdin=case.input, limits=replace(job.limits, timeout_s=slice_s))
        verdict, detail = run.verdict, run.detail
        if verdict is Verdict.OK:
            ok = compare_output(run.stdout, case.output, job.float_tol)
            verdict, detail = (Verdict.PASSED, "") if ok else (Verdict.WRONG_ANSWER, _diff_hint(run.stdout, case.output))
        if verdict is Verdict.TIME_LIMIT and slice_s < job.limits.timeout_s:
            detail += " (cut short by the global budget)"
        with batch.lock:
            batch.results[j][c] = CaseResult(verdict, detail, run.wall_s, run.peak_memory_mb)
            if verdict is not Verdict.PASSED:
                batch.failed[j] = True
            if verdict is Verdict.TIME_LIMIT:
                batch.timed_out[j] = True

    def _function_unit(self, batch: _Batch, j: int, job: CodeJob) -> None:
        per_case = job.limits.timeout_s
        slice_s = self._slice(batch, j, per_case * len(job.cases) + _STARTUP_ALLOWANCE_S)
        if slice_s is None:
            batch.results[j] = [CaseResult(Verdict.SKIPPED, self._skip_reason(batch, j))] * len(job.cases)
            return
        stop_on = tuple(v.value for v in (Verdict.RUNTIME_ERROR, Verdict.MEMORY_LIMIT, Verdict.TIME_LIMIT)
                        if job.fail_fast or (v is Verdict.TIME_LIMIT and job.stop_after_timeout))
        program = harness.function_program(job.program, job.call or "", per_case, stop_on)
        stdin = "[" + ",".join(case.input for case in job.cases) + "]"
        run = self.sandbox.run(program, stdin=stdin, limits=replace(job.limits, timeout_s=slice_s))
        records = harness.parse_results(run.stdout, len(job.cases))
        results: list[CaseResult] = []
        stopped = False
        for case, rec in zip(job.cases, records):  # parse_results pads to len(cases)
            if rec is None:
                # The process died before answering: the first unanswered case gets the
                # process's verdict, the ones after it never ran.
                v = Verdict.SKIPPED if stopped else (run.verdict if run.verdict is not Verdict.OK else Verdict.RUNTIME_ERROR)
                results.append(CaseResult(v, "not reached" if stopped else run.detail or "no result"))
                stopped = True
            elif "ok" in rec:
                ok = compare_values(rec["ok"], json.loads(case.output), job.float_tol)
                results.append(CaseResult(Verdict.PASSED) if ok else
                               CaseResult(Verdict.WRONG_ANSWER, f"got {json.dumps(rec['ok'])[:200]}"))
            else:
                # The record comes from inside the sandbox: only failure verdicts are taken
                # from it, so a program writing its own "passed" lines gains nothing.
                v = _HARNESS_FAILURES.get(str(rec.get("verdict")), Verdict.RUNTIME_ERROR)
                results.append(CaseResult(v, str(rec.get("error", ""))[:300]))
        with batch.lock:
            batch.results[j] = results
            batch.runs[j] = run


def _diff_hint(actual: str, expected: str) -> str:
    got, want = actual.splitlines(), expected.splitlines()
    for i, w in enumerate(want):
        g = got[i] if i < len(got) else "<missing>"
        if g.split() != w.split():
            return f"line {i + 1}: expected {w[:80]!r}, got {g[:80]!r}"
    return f"expected {len(want)} lines, got {len(got)}"
