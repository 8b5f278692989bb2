"""Multi-digit arithmetic: addition, subtraction and multiplication of integers.

Difficulty d sets the operand sizes: addition and subtraction use (d+1)-digit operands
(2 digits at d=1, 6 at d=5), and from d=3 subtraction may go negative; multiplication grows
from 2x1 digits (d=1) to 4x3 digits (d=5).
"""
from __future__ import annotations

import random
import re
from fractions import Fraction

from r1.tasks.base import Problem, check_args, draw_in_split
from r1.tasks.numbers import format_number, single_number

NAME = "arithmetic"
MATH_LIKE = True
MAX_DIFFICULTY = 5
OPS = ("add", "sub", "mul")
SYMBOL = {"add": "+", "sub": "-", "mul": "*"}
_MUL_DIGITS = {1: (2, 1), 2: (2, 2), 3: (3, 2), 4: (3, 3), 5: (4, 3)}


def _rand_digits(rng: random.Random, n: int) -> int:
    return rng.randint(10 ** (n - 1), 10 ** n - 1)


def _draw(difficulty: int):
    def draw(rng: random.Random) -> tuple[str, tuple[str, int, int]]:
        op = rng.choice(OPS)
        if op == "mul":
            da, db = _MUL_DIGITS[difficulty]
            a, b = _rand_digits(rng, da), _rand_digits(rng, db)
        else:
            a, b = _rand_digits(rng, difficulty + 1), _rand_digits(rng, difficulty + 1)
            if op == "sub" and a < b and difficulty < 3:
                a, b = b, a  # negative results only from d=3
        # Commutative operations get an order-free key, so "12+34" in train and "34+12" in
        # test cannot both exist.
        key = f"{op}:{min(a, b)}:{max(a, b)}" if op != "sub" else f"sub:{a}:{b}"
        return key, (op, a, b)
    return draw


def generate(seed: int, split: str = "train", difficulty: int = 1) -> Problem:
    check_args(NAME, seed, split, difficulty, MAX_DIFFICULTY)
    key, (op, a, b) = draw_in_split(NAME, seed, split, difficulty, _draw(difficulty))
    value = a + b if op == "add" else a - b if op == "sub" else a * b
    return Problem(task=NAME, prompt=f"What is {a} {SYMBOL[op]} {b}?", answer=str(value),
                   meta={"op": op, "a": a, "b": b, "difficulty": difficulty}, id=key)


def grade(answer: str, problem: Problem) -> bool:
    v = single_number(answer)
    return v is not None and v == Fraction(int(problem.answer))


def answer_key(answer: str, problem: Problem) -> str | None:
    v = single_number(answer)
    return None if v is None else format_number(v)


def operands_followed(reasoning: str, problem: Problem) -> bool:
    """Whether the reasoning works on the question's numbers: its first two numbers are the two
    operands, in either order. A model that reads "128 times 7" as 12 * 78 reasons correctly about
    the wrong problem; the eval counts that apart from slips in the working."""
    found = [int(n) for n in re.findall(r"\d+", reasoning)[:2]]
    return sorted(found) == sorted((problem.meta["a"], problem.meta["b"]))


def _digits(n: int) -> list[int]:
    return [int(c) for c in reversed(str(n))]  # ones first


def _add_steps(a: int, b: int) -> list[str]:
    da, db = _digits(a), _digits(b)
    names = ["ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands", "millions"]
    lines, carry = [], 0
    for i in range(max(len(da), len(db))):
        x, y = (da[i] if i < len(da) else 0), (db[i] if i < len(db) else 0)
        s = x + y + carry
        place = names[i] if i < len(names) else f"10^{i}"
        plus_carry = f" + {carry} (carry)" if carry else ""
        lines.append(f"{place.capitalize()}: {x} + {y}{plus_carry} = {s}, write {s % 10}, carry {s // 10}.")
        carry = s // 10
    if carry:
        lines.append(f"The final carry {carry} becomes the leading digit.")
    return lines


def _sub_steps(a: int, b: int) -> list[str]:
    # a >= b >= 0, column subtraction with borrows.
    da, db = _digits(a), _digits(b)
    lines, borrow = [], 0
    for i in range(len(da)):
        x, y = da[i] - borrow, (db[i] if i < len(db) else 0)
        if x < y:
            lines.append(f"Digit {i + 1} from the right: {x} is less than {y}, borrow 10: {x + 10} - {y} = {x + 10 - y}.")
            borrow = 1
        else:
            lines.append(f"Digit {i + 1} from the right: {x} - {y} = {x - y}.")
            borrow = 0
    return lines


def trace(problem: Problem) -> str:
    op, a, b = problem.meta["op"], problem.meta["a"], problem.meta["b"]
    if op == "add":
        lines = [f"I need to add {a} and {b}. I'll add column by column from the right, keeping track of carries."]
        lines += _add_steps(a, b)
        lines.append(f"So {a} + {b} = {a + b}.")
    elif op == "sub":
        if a >= b:
            lines = [f"I need to compute {a} - {b}. I'll subtract column by column from the right, borrowing when needed."]
            lines += _sub_steps(a, b)
            lines.append(f"So {a} - {b} = {a - b}.")
        else:
            lines = [f"I need to compute {a} - {b}. Since {b} is larger than {a}, the result is negative: "
                     f"{a} - {b} = -({b} - {a})."]
            lines += _sub_steps(b, a)
            lines.append(f"{b} - {a} = {b - a}, so {a} - {b} = {a - b}.")
    else:
        big, small = max(a, b), min(a, b)
        parts = [(int(c) * 10 ** i) for i, c in enumerate(reversed(str(small))) if c != "0"]
        lines = [f"I need to multiply {a} by {b}. I'll split {small} into "
                 f"{' + '.join(str(p) for p in reversed(parts))} and multiply {big} by each part."]
        products = []
        for p in reversed(parts):
            products.append(big * p)
            lines.append(f"{big} * {p} = {big * p}.")
        if len(products) > 1:
            lines.append(f"Now add the partial products: {' + '.join(str(p) for p in products)} = {sum(products)}.")
        lines.append(f"So {a} * {b} = {a * b}.")
    return "\n".join(lines)
