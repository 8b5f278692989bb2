"""Code rewards: run the final fenced Python block of each completion on its problem's tests
in the sandbox.

    code_reward          fraction of tests passed (dense signal for GRPO)
    code_binary_reward   1.0 only when every test passes (what pass@1 measures)

Only the response after the reasoning is searched for code, and only a closed ```python
block counts: a completion whose thinking never closed (truncated) or whose code block was
cut off gets 0.0. Rows of other tasks get None ("does not apply"), so a mixed math+code
dataset can list this reward next to the accuracy reward; so do completions the sandbox
itself failed to run (with a warning: that is no verdict on the program). All completions
of a call are graded in one parallel sandbox batch, with the grader `r1 eval --task code`
uses.
"""
from __future__ import annotations

import warnings
from typing import Any

from r1.rewards.accuracy import problems_from_columns
from r1.rewards.base import RewardFunc, completion_text, named
from r1.sandbox import Verdict
from r1.sandbox.pool import SandboxPool
from r1.tasks import code as code_task
from r1.tasks.extract import split_think


def response_of(text: str, think_in_prompt: bool = True) -> str | None:
    """The part after the reasoning; None when the reasoning never closed."""
    reasoning, response = split_think(text, think_in_prompt)
    if reasoning is None and think_in_prompt:
        return None
    return response


def make_code_reward(binary: bool = False, think_in_prompt: bool = True,
                     pool: SandboxPool | None = None) -> RewardFunc:
    """`binary`: 1.0 only if all tests pass (and stop a program at its first failing test);
    otherwise the fraction passed. `pool`: a SandboxPool to run on (default: one per process)."""
    def reward(prompts: list, completions: list, **columns: Any) -> list[float | None]:
        problems = problems_from_columns(columns, len(completions))
        rows = [i for i, p in enumerate(problems) if p.task == code_task.NAME]
        answers = [response_of(completion_text(completions[i]), think_in_prompt) for i in rows]
        results = code_task.grade_many(answers, [problems[i] for i in rows], pool=pool, fail_fast=binary)
        out: list[float | None] = [None] * len(completions)
        broken = 0
        for i, res in zip(rows, results):
            if res is None:
                out[i] = 0.0
            elif any(c.verdict is Verdict.SANDBOX_ERROR for c in res.cases):
                broken += 1  # the sandbox failed, not the program: no reward either way
            else:
                out[i] = (1.0 if res.all_passed else 0.0) if binary else res.fraction
        if broken:
            detail = next(c.detail for r in results if r for c in r.cases if c.verdict is Verdict.SANDBOX_ERROR)
            warnings.warn(f"code reward: the sandbox failed on {broken} of {len(rows)} completions ({detail}); "
                          "they get None. Run `r1 sandbox doctor`.", RuntimeWarning, stacklevel=2)
        return out
    return named(reward, "code_binary_reward" if binary else "code_reward")


code_reward = make_code_reward()
code_binary_reward = make_code_reward(binary=True)
