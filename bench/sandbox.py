"""Sandbox throughput: test cases per second for trivial programs, against plain subprocess.run.

    python bench/sandbox.py [--cases 60] [--workers 2] [--output results/sandbox.json]

Rows (each case runs one stdin program unless noted):
  subprocess.run            `python -I prog.py` with stdin/stdout pipes, nothing else (the baseline)
  sandbox                   r1.sandbox at the best isolation this host gives
  sandbox, no namespaces    same with namespaces off (the fallback path)
  function job              one sandboxed process answering many function-call cases
Each row is measured with 1 worker and with --workers threads, in interleaved rounds (the
median is reported); the overhead ratio divides the baseline's rate by the row's rate at
the same concurrency. Absolute numbers hold for
the machine named in the output only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from r1.sandbox import Limits, Sandbox, SandboxConfig  # noqa: E402
from r1.sandbox.pool import CodeJob, PoolConfig, SandboxPool, TestCase  # noqa: E402
from r1.sandbox.probe import blocked_groups, interpreter_dirs  # noqa: E402

PROGRAM = "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n"
FUNCTION = "def add(a, b):\n    return a + b\n"
LIMITS = Limits(timeout_s=10, memory_mb=256)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn, n: int, workers: int) -> float:
    """Cases per second running fn(i) for i < n on `workers` threads."""
    t0 = time.perf_counter()
    if workers == 1:
        for i in range(n):
            fn(i)
    else:
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(fn, range(n)))
    return n / (time.perf_counter() - t0)


def baseline(python: str, tmp: str):
    prog = os.path.join(tmp, "prog.py")
    Path(prog).write_text(PROGRAM)

    def run(i: int) -> None:
        out = subprocess.run([python, "-I", prog], input=f"{i} 1".encode(), capture_output=True, timeout=30)
        assert out.stdout == f"{i + 1}\n".encode(), out
    return run


def sandboxed(sb: Sandbox):
    def run(i: int) -> None:
        res = sb.run(PROGRAM, stdin=f"{i} 1", limits=LIMITS)
        assert res.verdict.value == "ok" and res.stdout == f"{i + 1}\n", res
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=60, help="test cases per measurement (default 60)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="threads for the parallel rows")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported (default 3)")
    ap.add_argument("--output", default="results/sandbox.json")
    args = ap.parse_args()
    if args.cases < 4 or args.workers < 1 or args.rounds < 1:
        ap.error("--cases must be >= 4, --workers and --rounds >= 1")

    tmp = tempfile.mkdtemp(prefix="r1-bench-sandbox-")
    best = Sandbox()
    rows: list[dict] = []
    configs = [("subprocess.run (baseline)", None), ("sandbox", best)]
    fallback_python = next((p for p in (sys.executable, "/usr/bin/python3")
                            if os.path.exists(p) and not blocked_groups(interpreter_dirs(p))), None)
    if fallback_python:
        configs.append(("sandbox, no namespaces", Sandbox(SandboxConfig(use_namespaces=False, python=fallback_python))))
    pool = SandboxPool(best)
    cases = tuple(TestCase(json.dumps([i, 1]), str(i + 1)) for i in range(args.cases))

    def function_rows(workers: int):
        # The same cases as function calls: `workers` processes share them.
        jobs = [CodeJob(FUNCTION, cases[k::workers], call="add", limits=LIMITS) for k in range(workers)]

        def run_all(_: int) -> None:
            assert all(r.all_passed for r in SandboxPool(best, PoolConfig(workers=workers)).run(jobs))
        return run_all

    for workers in sorted({1, args.workers}):
        # Rounds interleave the rows, so a burst of load from other processes hits them all
        # alike; each row reports its median round.
        measured: dict[str, list[float]] = {}
        fns = {name: baseline(best.config.python, tmp) if sb is None else sandboxed(sb) for name, sb in configs}
        fn_name = f"function job ({args.cases // workers} cases/process)"
        for fn in fns.values():
            fn(0)  # warm up: probe, page cache
        pool.run([CodeJob(FUNCTION, cases[:2], call="add", limits=LIMITS)])
        for _ in range(args.rounds):
            for name, fn in fns.items():
                measured.setdefault(name, []).append(timed(fn, args.cases, workers))
            measured.setdefault(fn_name, []).append(args.cases * timed(function_rows(workers), 1, 1))
        base_rate = statistics.median(measured[configs[0][0]])
        for name, rates in measured.items():
            rate = statistics.median(rates)
            sb = dict(configs).get(name, best)
            rows.append({"row": name, "workers": workers, "cases_per_s": round(rate, 2),
                         "ms_per_case": round(1000 / rate * workers, 1),
                         "overhead_vs_baseline": round(base_rate / rate, 2),
                         "isolation": sb.isolation.level if sb else "none",
                         "rounds_cases_per_s": [round(r, 2) for r in rates]})

    doc = {
        "device": f"{cpu_name()}, {os.cpu_count()} CPU cores",
        "python": platform.python_version(),
        "kernel": platform.release(),
        "isolation": best.isolation.to_json(),
        "cases_per_measurement": args.cases,
        "rounds": args.rounds,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "rows": rows,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"device: {doc['device']}; isolation: {best.isolation.level}; "
          f"median of {args.rounds} rounds of {args.cases} cases; load average at end {doc['load_average_1m_at_end']}\n")
    print(f"| {'row':<36} | workers | cases/s | ms/case | overhead vs subprocess.run |")
    print(f"|{'-' * 38}|---------|---------|---------|----------------------------|")
    for r in rows:
        ratio = "1.00 (baseline)" if r["isolation"] == "none" else f"{r['overhead_vs_baseline']:.2f}x"
        print(f"| {r['row']:<36} | {r['workers']:>7} | {r['cases_per_s']:>7.1f} | {r['ms_per_case']:>7.1f} | {ratio:>26} |")
    print(f"\nwrote {out}")

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
