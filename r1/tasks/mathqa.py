"""Math word problems from a JSONL file the user brings (GSM8K, MATH-500, AIME style),
graded with `math-verify` (LaTeX and numeric equivalence, `\\boxed{}` extraction).

Nothing is downloaded: point `load_jsonl` (or `r1 eval --task FILE.jsonl`) at a file. Field
names are detected (question/problem/prompt; answer/final_answer/solution) or given
explicitly. GSM8K answers ("... #### 1,234") keep the part after "####"; MATH solutions keep
their last `\\boxed{}`.
"""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from r1.tasks.base import Problem
from r1.tasks.extract import boxed_contents

NAME = "math"
MATH_LIKE = True
MAX_DIFFICULTY = 1
QUESTION_FIELDS = ("question", "problem", "prompt", "input", "Question", "Problem")
ANSWER_FIELDS = ("answer", "final_answer", "expected_answer", "target", "Answer", "solution")
ID_FIELDS = ("id", "unique_id", "idx", "ID")

# An answer that offers alternatives is several candidates, not one answer. math-verify would
# happily pick one of them ("3 or 4" parses as 4), so these are split and rejected first.
_ALTERNATIVES = re.compile(r"\\lor|\\vee|\\text\{\s*or\s*\}|\bor\b|;|\n")
_CHOICE = re.compile(r"^\(?([A-E])\)?$")


def _choice_letter(text: str) -> str | None:
    s = re.sub(r"\\text(?:bf)?\{([^{}]*)\}", r"\1", text).strip().strip("$").strip()
    m = _CHOICE.match(s)
    return m.group(1) if m else None


def _parse(text: str) -> list:
    from math_verify import parse

    # math-verify times out with SIGALRM, which exists only in the main thread; elsewhere
    # (a reward function in a worker thread) parse without the timeout instead of crashing.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    s = text.strip()
    if "$" not in s and "\\(" not in s and "\\[" not in s:
        got = parse(f"${s}$", parsing_timeout=timeout)
        if got:
            return got
    return parse(s, parsing_timeout=timeout)


def _verify(gold: list, pred: list) -> bool:
    from math_verify import verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    return bool(verify(gold, pred, timeout_seconds=timeout))


def grade(answer: str, problem: Problem) -> bool:
    if not answer or not answer.strip():
        return False
    gold_letter = _choice_letter(problem.answer)
    if gold_letter is not None:
        return _choice_letter(answer) == gold_letter
    parts = [p for p in _ALTERNATIVES.split(answer) if p and p.strip()]
    if len(parts) > 1 and sum(1 for p in parts if _parse(p)) > 1:
        return False
    gold, pred = _parse(problem.answer), _parse(answer)
    if not gold or not pred:
        return False
    return _verify(gold, pred)


def answer_key(answer: str, problem: Problem) -> str | None:
    letter = _choice_letter(answer)
    if letter is not None:
        return letter
    parsed = _parse(answer) if answer and answer.strip() else []
    if not parsed:
        return None
    # The sympy form makes 0.5 and \frac{1}{2} vote together where sympy agrees they are equal.
    try:
        import sympy

        value = parsed[0]
        if isinstance(value, sympy.Eq) and isinstance(value.lhs, sympy.Symbol):
            value = value.rhs  # "x = 4" votes with "4"
        return str(sympy.nsimplify(value)) if isinstance(value, sympy.Basic) else str(value)
    except Exception:  # sympy objects that cannot be simplified still have a text form
        return str(parsed[0])


def generate(seed: int, split: str = "train", difficulty: int = 1) -> Problem:
    raise ValueError("math problems are not generated; they come from a JSONL file: "
                     "r1.tasks.mathqa.load_jsonl(path) or `r1 eval MODEL --task FILE.jsonl`")


def trace(problem: Problem) -> str:
    solution = problem.meta.get("solution")
    if not solution:
        raise ValueError(f"problem {problem.id!r} has no worked solution in its file")
    return str(solution)


def gold_answer(raw: object, field: str) -> str:
    """The final answer in a dataset's answer field."""
    text = str(raw).strip()
    if "####" in text:  # GSM8K: worked solution, then "#### 1,234"
        text = text.rsplit("####", 1)[1].strip().replace(",", "")
    elif field == "solution" or "\\boxed" in text:
        boxes = boxed_contents(text)
        if boxes:
            text = boxes[-1].strip()
    return text


def _pick(row: dict, wanted: str | None, candidates: tuple[str, ...], what: str, where: str, flag: str) -> str:
    if wanted is not None:
        if wanted not in row:
            raise KeyError(f"{where}: no field {wanted!r} (fields: {', '.join(row)})")
        return wanted
    for name in candidates:
        if name in row:
            return name
    raise KeyError(f"{where}: cannot find the {what} field among {', '.join(row)}; "
                   f"name it with {flag} (looked for {', '.join(candidates)})")


def load_jsonl(path: str | Path, question_field: str | None = None, answer_field: str | None = None,
               limit: int | None = None) -> list[Problem]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such JSONL file: {path}")
    problems: list[Problem] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if limit is not None and len(problems) >= limit:
                break
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: each line must be a JSON object, got {type(row).__name__}")
            qf = _pick(row, question_field, QUESTION_FIELDS, "question", where, "--question-field")
            af = _pick(row, answer_field, ANSWER_FIELDS, "answer", where, "--answer-field")
            question, answer = str(row[qf]).strip(), gold_answer(row[af], af)
            if not question or not answer:
                raise ValueError(f"{where}: empty {qf if not question else af!r}")
            pid = next((str(row[k]) for k in ID_FIELDS if k in row), f"{path.name}:{lineno}")
            meta = {"source": str(path), "line": lineno, "math_like": True}
            if "solution" in row and af != "solution":
                meta["solution"] = str(row["solution"])
            elif "####" in str(row[af]):
                meta["solution"] = str(row[af]).rsplit("####", 1)[0].strip()
            problems.append(Problem(task=NAME, prompt=question, answer=answer, meta=meta, id=pid))
    if not problems:
        raise ValueError(f"{path}: no problems found")
    return problems
