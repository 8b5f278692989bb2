"""Code tasks: write a Python function (generated) or program (from a user's JSONL file),
graded by running hidden tests in `r1.sandbox`.

Generated problems come from `code_catalog` at difficulty 1..5: the prompt gives the spec,
the signature and two examples; the hidden tests are edge cases plus random inputs whose
expected outputs come from running the reference solution on the host (our code, never
the model's). `Problem.answer` is that reference in a ```python block, so a cold-start SFT
target (`prompting.sft_completion`) ends in exactly what the grader accepts.

Grading extracts the final fenced Python block of the answer, runs it on every test in the
sandbox and passes only if every test passes. `grade_detail` / `grade_many` return the
per-case verdicts (passed, wrong answer, runtime error, time/memory/output limit) for
evaluation reports and the fraction-passed reward (`r1.rewards.code`).
"""
from __future__ import annotations

import functools
import json
import random
import re
from collections import Counter
from typing import Any, Sequence

from r1.sandbox import Limits
from r1.sandbox.pool import CodeJob, JobResult, SandboxPool, TestCase
from r1.tasks.base import Problem, check_args, draw_in_split
from r1.tasks.code_catalog import CATALOG, FunctionSpec

NAME = "code"
MATH_LIKE = False  # the answer is a code block, not a boxed value
MAX_DIFFICULTY = max(CATALOG)
N_RANDOM_TESTS = 10
N_EXAMPLES = 2
DEFAULT_TIMEOUT_S = 2.0   # per test case: the generated functions are tiny
DEFAULT_MEMORY_MB = 256
INSTRUCTION = "Put the complete solution in a single ```python code block at the end of your answer."

# ```python ... ``` (or ```py / ```python3 / a bare ```). A block without its closing fence
# (a truncated completion) never matches, so it can never pass.
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


def extract_code(text: str | None) -> str | None:
    """The last fenced Python block in `text` (the final answer after the reasoning)."""
    if not text:
        return None
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in _PYTHON_TAGS]
    code = blocks[-1] if blocks else None
    return code if code and code.strip() else None


def fenced(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


# -- generation --------------------------------------------------------------------------

def _draw(difficulty: int):
    def draw(rng: random.Random) -> tuple[str, FunctionSpec]:
        spec = rng.choice(CATALOG[difficulty])(rng)
        return spec.key, spec
    return draw


def _reference(spec: FunctionSpec):
    ns: dict[str, Any] = {}
    exec(compile(spec.solution, f"<reference {spec.key}>", "exec"), ns)  # noqa: S102 - our own reference code
    return ns[spec.name]


def make_tests(spec: FunctionSpec, n_random: int = N_RANDOM_TESTS) -> list[tuple[list, Any]]:
    """(args, expected) pairs: edge cases first, then distinct random inputs.

    Seeded by the problem key alone, so a problem's tests never depend on the seed that drew it.
    """
    fn = _reference(spec)
    rng = random.Random(f"code-tests|{spec.key}")
    seen: set[str] = set()
    out: list[tuple[list, Any]] = []
    candidates = [list(a) for a in spec.edge_args] + [spec.make_args(rng) for _ in range(8 * n_random)]
    for args in candidates:
        text = json.dumps(args)  # JSON round trip: tuples become lists, as the harness will see them
        if text in seen:
            continue
        seen.add(text)
        expected = fn(*json.loads(text))
        out.append((json.loads(text), json.loads(json.dumps(expected))))
        if len(out) >= len(spec.edge_args) + n_random:
            break
    return out


def _call_text(name: str, args: list) -> str:
    return f"{name}({', '.join(repr(a) for a in args)})"


def generate(seed: int, split: str = "train", difficulty: int = 1) -> Problem:
    check_args(NAME, seed, split, difficulty, MAX_DIFFICULTY)
    key, spec = draw_in_split(NAME, seed, split, difficulty, _draw(difficulty))
    tests = make_tests(spec)
    # Examples: random cases (edge cases stay hidden) with a non-trivial result and a
    # middling size, which illustrate the spec better than the shortest inputs.
    randoms = tests[len(spec.edge_args):] or tests
    telling = [t for t in randoms if t[1] not in (None, [], 0, "", False)] or randoms
    by_size = sorted(telling, key=lambda t: len(json.dumps(t)))
    mid = max(0, len(by_size) // 2 - N_EXAMPLES // 2)
    examples = by_size[mid:mid + N_EXAMPLES]
    shown = "\n".join(f"{_call_text(spec.name, a)} == {e!r}" for a, e in examples)
    prompt = (f"Write a Python function `{spec.signature}`.\n{spec.statement}\n\nExamples:\n{shown}\n\n{INSTRUCTION}")
    meta = {
        "call": spec.name,
        "tests": [{"input": json.dumps(a), "output": json.dumps(e)} for a, e in tests],
        "examples": [{"input": json.dumps(a), "output": json.dumps(e)} for a, e in examples],
        "signature": spec.signature,
        "statement": spec.statement,
        "approach": spec.approach,
        "template": key.split(":", 1)[0],
        "difficulty": difficulty,
        "timeout_s": DEFAULT_TIMEOUT_S,
        "memory_mb": DEFAULT_MEMORY_MB,
    }
    return Problem(task=NAME, prompt=prompt, answer=fenced(spec.solution), meta=meta, id=key)


# -- grading -----------------------------------------------------------------------------

@functools.cache
def default_pool() -> SandboxPool:
    """One pool per process, made on first use: it holds the host's probed isolation plan
    (facts about this machine, never changed after the probe), not configuration."""
    return SandboxPool()


def job_for(code: str, problem: Problem, fail_fast: bool = False) -> CodeJob:
    """The sandbox job that grades `code` against `problem`'s tests."""
    meta = problem.meta
    tests = meta.get("tests")
    if not tests:
        raise ValueError(f"code problem {problem.id or problem.prompt[:40]!r} has no tests in meta['tests']")
    prelude = meta.get("prelude") or ""
    limits = Limits(timeout_s=float(meta.get("timeout_s", DEFAULT_TIMEOUT_S)),
                    memory_mb=int(meta.get("memory_mb", DEFAULT_MEMORY_MB)))
    return CodeJob(program=prelude + code, cases=tuple(TestCase(t["input"], t["output"]) for t in tests),
                   call=meta.get("call"), limits=limits, float_tol=meta.get("float_tol", 1e-6), fail_fast=fail_fast)


def grade_many(answers: Sequence[str | None], problems: Sequence[Problem], pool: SandboxPool | None = None,
               fail_fast: bool = False) -> list[JobResult | None]:
    """Per-case results for many answers in one parallel batch; None where an answer has
    no fenced Python block (it cannot be run, so it passes nothing)."""
    if len(answers) != len(problems):
        raise ValueError(f"{len(answers)} answers for {len(problems)} problems")
    codes = [extract_code(a) for a in answers]
    jobs = [(i, job_for(c, p, fail_fast)) for i, (c, p) in enumerate(zip(codes, problems)) if c is not None]
    results: list[JobResult | None] = [None] * len(answers)
    if jobs:
        for (i, _), res in zip(jobs, (pool or default_pool()).run([j for _, j in jobs])):
            results[i] = res
    return results


def grade_detail(answer: str, problem: Problem, pool: SandboxPool | None = None) -> JobResult | None:
    return grade_many([answer], [problem], pool)[0]


def grade(answer: str, problem: Problem) -> bool:
    return grade_batch([answer], [problem])[0]


def grade_batch(answers: Sequence[str | None], problems: Sequence[Problem]) -> list[bool]:
    """`grade` for many answers at once, in one parallel sandbox batch (each program stops at
    its first failing test: a verdict needs no more)."""
    return [res is not None and res.all_passed for res in grade_many(answers, problems, fail_fast=True)]


def verdict_counts(results: Sequence[JobResult | None]) -> dict[str, int]:
    """Per-verdict totals over test cases; answers without code count once as 'no_code'."""
    counts: Counter[str] = Counter()
    for res in results:
        if res is None:
            counts["no_code"] += 1
        else:
            counts.update(res.counts())
    return dict(counts)


def answer_key(answer: str, problem: Problem) -> str | None:
    """Identical programs (up to whitespace) vote together for cons@k."""
    code = extract_code(answer)
    return None if code is None else " ".join(code.split())


# -- traces ------------------------------------------------------------------------------

def trace(problem: Problem) -> str:
    """A worked solution for cold-start SFT: restate, plan, check the plan on the examples
    and an edge case by hand (values from the reference), then commit to the code."""
    meta = problem.meta
    if "approach" not in meta:
        raise ValueError("only generated code problems have worked traces (a JSONL problem has no reference plan)")
    name = meta["call"]
    lines = [f"I need to write `{meta['signature']}`. {meta['statement']}", "", f"Plan: {meta['approach']}", ""]
    for ex in meta["examples"]:
        args, expected = json.loads(ex["input"]), json.loads(ex["output"])
        lines.append(f"Check with the example {_call_text(name, args)}: following the plan gives {expected!r}, "
                     "which is what the example expects.")
    shown = {ex["input"] for ex in meta["examples"]}
    edge = next((t for t in meta["tests"] if t["input"] not in shown), None)
    if edge is not None:
        args, expected = json.loads(edge["input"]), json.loads(edge["output"])
        lines.append(f"Edge case: {_call_text(name, args)} must give {expected!r}; the plan handles it.")
    lines += ["", "The code follows the plan directly, using only the standard library."]
    return "\n".join(lines)
