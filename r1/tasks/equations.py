"""Linear equations in one unknown, solved for x.

Difficulty d: d=1 `a*x + b = c`; d=2 unknowns on both sides `a*x + b = c*x + e`; d=3 adds a
bracket `a*(x + b) = c*x + e` and negative coefficients; d=4 allows fractional solutions; d=5
bigger coefficients and a bracket on both sides. Answers are exact: "x = 1/2", "0.5" and
"\\frac{1}{2}" are all the same answer.
"""
from __future__ import annotations

import random
from fractions import Fraction

from r1.tasks.base import Problem, check_args, draw_in_split
from r1.tasks.numbers import format_number, single_number

NAME = "equations"
MATH_LIKE = True
MAX_DIFFICULTY = 5
_RANGE = {1: 9, 2: 12, 3: 15, 4: 20, 5: 40}


def _lin(a: int, b: int) -> str:
    """Text of a*x + b with the usual sign and unit-coefficient conventions."""
    if a == 0:
        return str(b)
    ax = "x" if a == 1 else "-x" if a == -1 else f"{a}x"
    if b == 0:
        return ax
    return f"{ax} + {b}" if b > 0 else f"{ax} - {-b}"


def _bracket(k: int, b: int) -> str:
    inner = f"x + {b}" if b > 0 else f"x - {-b}"
    return f"{k}({inner})" if k != -1 else f"-({inner})"


def _nz(rng: random.Random, lo: int, hi: int) -> int:
    while True:
        v = rng.randint(lo, hi)
        if v != 0:
            return v


def _draw(difficulty: int):
    r = _RANGE[difficulty]
    neg = difficulty >= 3

    def draw(rng: random.Random):
        lo = -r if neg else 1
        while True:
            # Left side L(x) = p*x + q, right side R(x) = s*x + t; written with brackets where
            # the difficulty asks for them. Solution x = (t - q) / (p - s).
            if difficulty == 1:
                p, q, s, t = rng.randint(2, r), rng.randint(1, r), 0, 0
                x = Fraction(rng.randint(1, r))
                t = int(p * x + q)
                left, right = _lin(p, q), str(t)
            else:
                if difficulty >= 4:
                    x = Fraction(rng.randint(-r, r), rng.choice([1, 1, 2, 3, 4, 5]))
                else:
                    x = Fraction(rng.randint(-r if neg else 1, r))
                p, s = _nz(rng, lo, r), _nz(rng, lo, r)
                if p == s:
                    continue
                if difficulty >= 3:
                    k, b = _nz(rng, lo, r // 2 or 1), _nz(rng, -r, r)
                    p, q = k, k * b  # left side k(x + b)
                    if p == s:
                        continue
                    left = _bracket(k, b)
                else:
                    q = rng.randint(lo, r)
                    left = _lin(p, q)
                # choose t so that x solves it: p*x + q = s*x + t  ->  t = (p - s)*x + q
                t_val = (p - s) * x + q
                if t_val.denominator != 1:
                    continue
                t = int(t_val)
                if difficulty == 5:
                    k2 = rng.choice([-4, -3, -2, 2, 3, 4])
                    if t % k2 != 0 or s % k2 != 0:
                        right = _lin(s, t)
                    else:
                        right = f"{k2}({_lin(s // k2, t // k2)})"
                else:
                    right = _lin(s, t)
            equation = f"{left} = {right}"
            return equation, (equation, x)
    return draw


def generate(seed: int, split: str = "train", difficulty: int = 1) -> Problem:
    check_args(NAME, seed, split, difficulty, MAX_DIFFICULTY)
    key, (equation, x) = draw_in_split(NAME, seed, split, difficulty, _draw(difficulty))
    return Problem(task=NAME, prompt=f"Solve for x: {equation}", answer=format_number(x),
                   meta={"equation": equation, "difficulty": difficulty}, id=key)


def _strip_variable(answer: str) -> str:
    s = answer.strip().strip("$").strip()
    if s.lower().startswith("x") and "=" in s and s.count("=") == 1:
        s = s.split("=", 1)[1]
    return s


def grade(answer: str, problem: Problem) -> bool:
    v = single_number(_strip_variable(answer))
    return v is not None and v == Fraction(problem.answer)


def answer_key(answer: str, problem: Problem) -> str | None:
    v = single_number(_strip_variable(answer))
    return None if v is None else format_number(v)


def _parse_side(text: str) -> tuple[Fraction, Fraction]:
    # Coefficients (of x, constant) of the sides this module writes: "3x - 4", "-2(x + 5)",
    # "3(2x - 1)". Not a general parser; it only reads what `generate` produced.
    text = text.replace(" ", "")
    mult = Fraction(1)
    if "(" in text:
        head, inner = text.split("(", 1)
        inner = inner.rstrip(")")
        mult = Fraction(-1) if head == "-" else Fraction(int(head)) if head else Fraction(1)
        text = inner
    a, b = Fraction(0), Fraction(0)
    for term in text.replace("-", "+-").split("+"):
        if not term:
            continue
        if term.endswith("x"):
            c = term[:-1]
            a += Fraction(-1 if c == "-" else 1 if c == "" else int(c))
        else:
            b += Fraction(int(term))
    return a * mult, b * mult


def trace(problem: Problem) -> str:
    equation = problem.meta["equation"]
    left, right = equation.split(" = ")
    (p, q), (s, t) = _parse_side(left), _parse_side(right)
    fmt = format_number
    lines = [f"I need to solve {equation} for x."]
    if "(" in left or "(" in right:
        lines.append(f"First expand the brackets: {_lin(int(p), int(q))} = {_lin(int(s), int(t))}.")
    if s != 0:
        how = f"subtracting {fmt(s)}x from" if s > 0 else f"adding {fmt(-s)}x to"
        lines.append(f"Move the x terms to the left by {how} both sides: "
                     f"{fmt(p - s)}x + {fmt(q)} = {fmt(t)}.".replace("+ -", "- "))
    if q != 0:
        how = f"subtracting {fmt(q)} from" if q > 0 else f"adding {fmt(-q)} to"
        lines.append(f"Move the constant to the right by {how} both sides: "
                     f"{fmt(p - s)}x = {fmt(t)} - {fmt(q)} = {fmt(t - q)}.".replace("- -", "+ "))
    x = (t - q) / (p - s)
    lines.append(f"Divide both sides by {fmt(p - s)}: x = {fmt(t - q)} / {fmt(p - s)} = {fmt(x)}.")
    lines.append(f"Check: substituting x = {fmt(x)} gives {fmt(p * x + q)} on the left and {fmt(s * x + t)} on the right. They match.")
    return "\n".join(lines)
