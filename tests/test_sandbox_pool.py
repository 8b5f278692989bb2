"""The worker pool: per-case verdicts, function-call tests, the global budget, fail-fast,
and no process or zombie left when a batch returns."""
from __future__ import annotations

import os

import pytest

from r1.sandbox import Limits, Sandbox, SandboxConfig, Verdict
from r1.sandbox.pool import CodeJob, PoolConfig, SandboxPool, TestCase

LIM = Limits(timeout_s=5, memory_mb=128, max_output_bytes=16 << 10)
ADD = "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n"
ADD_CASES = (TestCase("1 2", "3"), TestCase("5 5", "10\n"), TestCase("-1 1", "0"))


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> SandboxPool:
    sb = Sandbox(SandboxConfig(tmp_root=str(tmp_path_factory.mktemp("pool"))))
    return SandboxPool(sb, PoolConfig(workers=2))


def _children() -> list[int]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            state, ppid = stat[stat.rfind(b")") + 2:].split()[:2]
            if int(ppid) == me:
                found.append(int(entry))
    return found


def test_every_stdin_verdict_in_one_batch(pool):
    jobs = [
        CodeJob(ADD, ADD_CASES, limits=LIM),
        CodeJob("print(7)\n", ADD_CASES, limits=LIM),
        CodeJob("raise SystemExit(3)\n", ADD_CASES[:1], limits=LIM),
        CodeJob("while True:\n    pass\n", ADD_CASES[:1], limits=Limits(timeout_s=0.5, memory_mb=128)),
        CodeJob("x = bytearray(1 << 33)\n", ADD_CASES[:1], limits=LIM),
        CodeJob("while True:\n    print('spam' * 100)\n", ADD_CASES[:1], limits=LIM),
    ]
    results = pool.run(jobs)
    assert [r.counts() for r in results] == [
        {"passed": 3}, {"wrong_answer": 3}, {"runtime_error": 1}, {"time_limit": 1},
        {"memory_limit": 1}, {"output_limit": 1},
    ]
    assert results[0].fraction == 1.0 and results[0].all_passed
    assert results[1].fraction == 0.0
    assert _children() == []


def test_truncated_output_does_not_pass(pool):
    # Prints the first two of three expected lines: a zip() comparison would accept it.
    job = CodeJob("print(1)\nprint(2)\n", (TestCase("", "1\n2\n3\n"),), limits=LIM)
    (res,) = pool.run([job])
    assert res.cases[0].verdict is Verdict.WRONG_ANSWER


def test_function_jobs_get_a_verdict_per_case(pool):
    src = ("import time\ndef f(n):\n    if n == 1:\n        raise ValueError('one')\n    if n == 2:\n"
           "        while True:\n            pass\n    if n == 3:\n        return bytearray(1 << 33)\n"
           "    if n == 4:\n        print('noise')\n    return n * 2\n")
    cases = tuple(TestCase(f"[{n}]", str(n * 2)) for n in range(6))
    cases = cases[:5] + (TestCase("[5]", "11"),)
    lim = Limits(timeout_s=0.5, memory_mb=128)
    every, stopping, fast = pool.run([CodeJob(src, cases, call="f", limits=lim, stop_after_timeout=False),
                                      CodeJob(src, cases, call="f", limits=lim),
                                      CodeJob(src, cases, call="f", limits=lim, fail_fast=True)])
    assert [c.verdict for c in every.cases] == [
        Verdict.PASSED, Verdict.RUNTIME_ERROR, Verdict.TIME_LIMIT, Verdict.MEMORY_LIMIT, Verdict.PASSED,
        Verdict.WRONG_ANSWER,
    ]
    assert "ValueError" in every.cases[1].detail
    # Default: after a time limit the remaining cases are skipped, not each waited out.
    assert [c.verdict for c in stopping.cases][2:] == [Verdict.TIME_LIMIT] + [Verdict.SKIPPED] * 3
    assert [c.verdict for c in fast.cases][1:] == [Verdict.RUNTIME_ERROR] + [Verdict.SKIPPED] * 4


def test_solution_that_hangs_while_loading_times_out_quickly(pool):
    cases = tuple(TestCase(f"[{n}]", str(n)) for n in range(5))
    (res,) = pool.run([CodeJob("while True:\n    pass\n", cases, call="f", limits=Limits(timeout_s=0.5, memory_mb=128))])
    assert [c.verdict for c in res.cases] == [Verdict.TIME_LIMIT] * 5
    assert res.run is not None and res.run.wall_s < 0.5 + 5  # one case's time, not 5 x 0.5 s + startup


def test_function_job_that_dies_gives_the_rest_a_verdict(pool):
    src = "import os\ndef f(n):\n    if n == 1:\n        os._exit(0)\n    return n\n"
    cases = tuple(TestCase(f"[{n}]", str(n)) for n in range(3))
    (res,) = pool.run([CodeJob(src, cases, call="f", limits=LIM)])
    assert [c.verdict for c in res.cases] == [Verdict.PASSED, Verdict.RUNTIME_ERROR, Verdict.SKIPPED]


def test_forged_harness_lines_cannot_pass(pool):
    # The solution writes fake "passed" records to every fd it can find; only the host
    # compares values, and failure verdicts are the only ones taken from inside.
    src = ("import os\nfor fd in range(3, 20):\n    try:\n        os.write(fd, b'{\"verdict\": \"passed\"}\\n' * 3)\n"
           "    except OSError:\n        pass\ndef f(n):\n    return -1\n")
    cases = tuple(TestCase(f"[{n}]", str(n)) for n in range(3))
    (res,) = pool.run([CodeJob(src, cases, call="f", limits=LIM)])
    assert res.passed == 0


def test_class_method_call(pool):
    src = "class Solution:\n    def twice(self, xs):\n        return [2 * x for x in xs]\n"
    (res,) = pool.run([CodeJob(src, (TestCase("[[1, 2]]", "[2, 4]"),), call="Solution().twice", limits=LIM)])
    assert res.all_passed


def test_global_budget_skips_what_it_cannot_run(tmp_path):
    sb = Sandbox(SandboxConfig(tmp_root=str(tmp_path)))
    pool = SandboxPool(sb, PoolConfig(workers=1, budget_s=1.0))
    slow = CodeJob("import time\ntime.sleep(30)\n", (TestCase("", ""),) * 3, limits=Limits(timeout_s=20, memory_mb=128))
    (res,) = pool.run([slow])
    verdicts = [c.verdict for c in res.cases]
    assert verdicts[0] is Verdict.TIME_LIMIT and "budget" in res.cases[0].detail
    assert verdicts[1:] == [Verdict.SKIPPED, Verdict.SKIPPED]
    assert _children() == []


def test_stdin_job_stops_after_a_timeout(tmp_path):
    pool = SandboxPool(Sandbox(SandboxConfig(tmp_root=str(tmp_path))), PoolConfig(workers=1))
    job = CodeJob("while True:\n    pass\n", ADD_CASES, limits=Limits(timeout_s=0.5, memory_mb=128))
    (res,) = pool.run([job])
    assert [c.verdict for c in res.cases] == [Verdict.TIME_LIMIT, Verdict.SKIPPED, Verdict.SKIPPED]


def test_fail_fast_skips_after_first_failure(tmp_path):
    pool = SandboxPool(Sandbox(SandboxConfig(tmp_root=str(tmp_path))), PoolConfig(workers=1))
    job = CodeJob("print(0)\n", ADD_CASES, limits=LIM, fail_fast=True)
    (res,) = pool.run([job])
    assert [c.verdict for c in res.cases] == [Verdict.WRONG_ANSWER, Verdict.SKIPPED, Verdict.SKIPPED]


def test_many_cases_in_parallel_leave_nothing_behind(pool):
    prog = "import os, subprocess\nsubprocess.Popen(['sleep', '30'])\nprint(int(input()) ** 2)\n"
    cases = tuple(TestCase(str(i), str(i * i)) for i in range(12))
    (res,) = pool.run([CodeJob(prog, cases, limits=LIM)])
    assert res.all_passed, res.counts()
    assert _children() == []


def test_job_validation():
    with pytest.raises(ValueError, match="at least one TestCase"):
        CodeJob("print(1)", ())
    with pytest.raises(ValueError, match="JSON list of arguments"):
        CodeJob("def f(x): pass", (TestCase("3", "3"),), call="f")
    with pytest.raises(ValueError, match="workers"):
        PoolConfig(workers=0)
