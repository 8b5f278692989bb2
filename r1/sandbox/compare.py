"""Output checkers: does a program's output match the expected one?

Both checkers compare every expected item. A truncated output (fewer lines, a shorter list)
fails, which a `zip()` over the two would silently let pass.
"""
from __future__ import annotations

import math
from typing import Any


def _lines(text: str) -> list[str]:
    lines = [ln.rstrip() for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def tokens_match(got: str, want: str, float_tol: float | None) -> bool:
    if got == want:
        return True
    if float_tol is None:
        return False
    a, b = _number(got), _number(want)
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return False
    return math.isclose(a, b, rel_tol=float_tol, abs_tol=float_tol)


def compare_output(actual: str, expected: str, float_tol: float | None = 1e-6) -> bool:
    """Line by line, whitespace-insensitive within a line (token by token), trailing spaces
    and blank lines at the end ignored, numbers equal within `float_tol` (None: exact text).

    This is what Codeforces' default checker and LiveCodeBench's stdin grader accept.
    """
    got, want = _lines(actual), _lines(expected)
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):  # same length checked above: zip sees every line
        if g.strip() == w.strip():
            continue
        gt, wt = g.split(), w.split()
        if len(gt) != len(wt) or not all(tokens_match(x, y, float_tol) for x, y in zip(gt, wt)):
            return False
    return True


def compare_values(actual: Any, expected: Any, float_tol: float | None = 1e-6) -> bool:
    """Structural equality of JSON values; tuples equal lists, floats within `float_tol`,
    and a bool is never equal to a number (JSON true is not 1)."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and actual == expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        if isinstance(expected, int) and isinstance(actual, int):
            return actual == expected
        if float_tol is None:
            return actual == expected
        return math.isclose(actual, expected, rel_tol=float_tol, abs_tol=float_tol)
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        return len(actual) == len(expected) and all(compare_values(a, e, float_tol) for a, e in zip(actual, expected))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(compare_values(actual[k], expected[k], float_tol) for k in expected)
    return type(actual) is type(expected) and actual == expected
