"""Accuracy reward: 1.0 when the extracted final answer passes the task's grader, else 0.0.

The grader is the same function the evaluation harness uses (one grader per task), so a
policy cannot be rewarded for something the benchmark would mark wrong, or vice versa.
"""
from __future__ import annotations

from typing import Any

from r1.rewards.base import RewardFunc, column, completion_text, named
from r1.tasks import grade_all
from r1.tasks.base import Problem
from r1.tasks.extract import extract_answer


def problems_from_columns(columns: dict[str, Any], n: int) -> list[Problem]:
    """Problems from a `problem` column of Problem objects, or from the columns that
    `Problem.to_columns()` writes (task, answer, meta, question)."""
    if columns.get("problem") is not None:
        problems = column(columns, "problem", n)
        if not all(isinstance(p, Problem) for p in problems):
            raise TypeError("column 'problem' must hold r1.tasks.Problem objects")
        return problems
    tasks, answers = column(columns, "task", n), column(columns, "answer", n)
    metas = column(columns, "meta", n, default={})
    questions = column(columns, "question", n, default="(question not given)")
    ids = column(columns, "problem_id", n, default="")
    return [Problem(task=t, prompt=q or "(question not given)", answer=str(a), meta=dict(m or {}), id=str(i))
            for t, a, m, q, i in zip(tasks, answers, metas, questions, ids)]


def grade_completion(text: str, problem: Problem, think_in_prompt: bool = True) -> bool:
    return grade_all([extract_answer(text, think_in_prompt)], [problem])[0]


def make_accuracy_reward(think_in_prompt: bool = True) -> RewardFunc:
    """`think_in_prompt`: the prompt ended in `<think>` (R1's rule), so completions start
    inside the reasoning."""
    def accuracy_reward(prompts: list, completions: list, **columns: Any) -> list[float | None]:
        problems = problems_from_columns(columns, len(completions))
        answers = [extract_answer(completion_text(c), think_in_prompt) for c in completions]
        return [1.0 if ok else 0.0 for ok in grade_all(answers, problems)]
    return named(accuracy_reward, "accuracy_reward")


accuracy_reward = make_accuracy_reward()
