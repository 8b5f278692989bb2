"""Function-call tests: run a solution's function on many argument lists in one process.

A stdin/stdout problem needs one process per test (each gets a fresh stdin). A function
problem ("write `def rotate(xs, k)`") does not: one sandboxed process loads the solution
once and calls it on every case, under a per-case alarm, printing one JSON line per case
on a private fd. That is ~n times cheaper for the reward loop, and a case that hangs,
raises or runs out of memory still gets its own verdict; only a kill of the whole process
(hard timeout, OOM kill) ends the batch, and the host then gives the unanswered cases the
process's verdict.
"""
from __future__ import annotations

import json
from typing import Any

_TEMPLATE = r'''
import json as _json, os as _os, signal as _signal, sys as _sys

def _main(source, call, per_case_s, stop_on):
    cases = _json.loads(_sys.stdin.read())
    # Results go to a private copy of fd 1; fd 1 itself now points at stderr, so whatever
    # the solution prints (print, os.write(1, ...)) cannot be mistaken for a result.
    out = _os.fdopen(_os.dup(1), "w")
    _os.dup2(2, 1)
    _sys.stdin = open(_os.devnull)

    def emit(rec):
        try:
            line = _json.dumps(rec, default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else repr(o))
        except (TypeError, ValueError) as e:
            line = _json.dumps({"verdict": "runtime_error", "error": "result not JSON-serialisable: %s" % e})
        out.write(line + "\n")
        out.flush()

    class CaseTimeout(BaseException):
        pass

    def on_alarm(signum, frame):
        raise CaseTimeout()

    _signal.signal(_signal.SIGALRM, on_alarm)
    ns = {"__name__": "solution"}
    _signal.setitimer(_signal.ITIMER_REAL, per_case_s)  # loading the solution gets one case's time
    try:
        exec(compile(source, "solution.py", "exec"), ns)
        fn = eval(call, ns)
    except BaseException as e:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        verdict = ("time_limit" if isinstance(e, CaseTimeout) else
                   "memory_limit" if isinstance(e, MemoryError) else "runtime_error")
        for _ in cases:
            emit({"verdict": verdict, "error": ("loading the solution: %s: %s" % (type(e).__name__, e))[:300]})
        return
    _signal.setitimer(_signal.ITIMER_REAL, 0)
    for i, args in enumerate(cases):
        _signal.setitimer(_signal.ITIMER_REAL, per_case_s)
        try:
            rec = {"ok": fn(*args)}
        except CaseTimeout:
            rec = {"verdict": "time_limit", "error": "case over %s s" % per_case_s}
        except MemoryError:
            rec = {"verdict": "memory_limit", "error": "MemoryError"}
        except BaseException as e:
            rec = {"verdict": "runtime_error", "error": ("%s: %s" % (type(e).__name__, e))[:300]}
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
        emit(rec)
        if rec.get("verdict") in stop_on:
            for _ in cases[i + 1:]:
                emit({"verdict": "skipped", "error": "not run: an earlier case failed with %s" % rec["verdict"]})
            return

_main(__SOURCE__, __CALL__, __PER_CASE_S__, __STOP_ON__)
'''
_CALL_LINE = "_main(__SOURCE__, __CALL__, __PER_CASE_S__, __STOP_ON__)"


def function_program(source: str, call: str, per_case_s: float, stop_on: tuple[str, ...] = ()) -> str:
    """The program to run: the harness with the solution embedded as a string literal.

    `call` is a Python expression evaluated in the solution's namespace that gives the
    callable, e.g. "rotate" or "Solution().maxProfit" (LeetCode / LiveCodeBench style).
    `stop_on`: verdicts ("time_limit", "runtime_error", ...) after which the remaining
    cases are not run but reported as skipped.
    """
    if not call.strip():
        raise ValueError("function tests need `call`, the expression naming the function (e.g. 'solve')")
    if not per_case_s > 0:
        raise ValueError(f"per_case_s must be > 0, got {per_case_s}")
    # One replace of the one placeholder line: the inserted source is never rescanned, so
    # a solution containing the placeholder text cannot change the harness.
    return _TEMPLATE.replace(_CALL_LINE, f"_main({source!r}, {call!r}, {float(per_case_s)!r}, {tuple(stop_on)!r})")


def function_stdin(cases_args: list[list[Any]]) -> str:
    return json.dumps(cases_args)


def parse_results(stdout: str, n: int) -> list[dict | None]:
    """One record per case in order; None for a case the process never answered."""
    records: list[dict | None] = []
    for line in stdout.splitlines():
        if len(records) == n:
            break
        try:
            rec = json.loads(line)
        except ValueError:
            rec = {"verdict": "runtime_error", "error": "unreadable result line"}
        records.append(rec if isinstance(rec, dict) else {"verdict": "runtime_error", "error": "bad result"})
    return records + [None] * (n - len(records))
