"""Verifiable reasoning tasks: generators with disjoint train/test splits, graders, traces.

`TASKS` maps a family name to its module path; modules are imported on first use so a
family with an optional dependency (math-verify for `math`) costs nothing until asked for.
Each family module follows the API described in `r1.tasks.base`.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from r1.tasks.base import SPLITS, Problem, TaskFamily, generate_many, split_of

TASKS: dict[str, str] = {
    "arithmetic": "r1.tasks.arithmetic",
    "mixed_arithmetic": "r1.tasks.mixed_arithmetic",
    "countdown": "r1.tasks.countdown",
    "equations": "r1.tasks.equations",
    "letters": "r1.tasks.letters",
    "sorting": "r1.tasks.sorting",
    # Greetings, thanks and questions out of scope: graded on being answered in words.
    "chitchat": "r1.tasks.chitchat",
    # Problems from a user's JSONL file (GSM8K, MATH-500, AIME), graded with math-verify.
    "math": "r1.tasks.mathqa",
    # Programming problems graded by running tests in r1.sandbox (owned with the sandbox).
    "code": "r1.tasks.code",
}

# Families that `generate` problems (the others load them from files).
GENERATED: tuple[str, ...] = ("arithmetic", "mixed_arithmetic", "countdown", "equations", "letters", "sorting")


def get_task(name: str) -> ModuleType:
    """The family module registered as `name`."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))} "
                       "(or pass a .jsonl path to the evaluation harness)")
    try:
        return importlib.import_module(TASKS[name])
    except ModuleNotFoundError as e:
        if e.name == TASKS[name]:
            raise KeyError(f"task {name!r} is registered but its module {TASKS[name]} is not installed") from e
        raise


def grade_all(answers: list[str | None], problems: list[Problem]) -> list[bool]:
    """family.grade over many (answer, problem) pairs; None answers are wrong. A family that
    defines `grade_batch(answers, problems)` grades its rows in one call (the code family runs
    them in parallel in the sandbox instead of one process at a time)."""
    if len(answers) != len(problems):
        raise ValueError(f"{len(answers)} answers for {len(problems)} problems")
    out = [False] * len(answers)
    by_task: dict[str, list[int]] = {}
    for i, (a, p) in enumerate(zip(answers, problems)):
        if a is not None:
            by_task.setdefault(p.task, []).append(i)
    for task, rows in by_task.items():
        family = get_task(task)
        if hasattr(family, "grade_batch"):
            verdicts = family.grade_batch([answers[i] for i in rows], [problems[i] for i in rows])
        else:
            verdicts = [family.grade(answers[i], problems[i]) for i in rows]
        for i, ok in zip(rows, verdicts):
            out[i] = bool(ok)
    return out


__all__ = ["TASKS", "GENERATED", "SPLITS", "Problem", "TaskFamily", "generate_many", "get_task", "grade_all",
           "split_of"]
