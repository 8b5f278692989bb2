"""Arithmetic as people ask it in a chat: operands of 1 to 3 digits drawn independently, differences
that go negative, and products by a one-digit multiplier in either order ("128 times 7", "7 * 45").

`arithmetic` grows its operands with the difficulty (2-digit pairs at d=1, 3-digit at d=2) and
never mixes sizes; a chat user does ("what's 8 + 347"). This family covers that range at its one
difficulty. Problems share `arithmetic`'s key space and split (`SPLIT_NAMESPACE`), so a sum that
is a test problem of one family is never a train problem of the other. Grading and the add/sub
traces are arithmetic's; a product is worked digit by digit of the multi-digit operand, the
steps a small model can take reliably (one-shot "128 * 7 = 896" it cannot).
"""
from __future__ import annotations

import random

from r1.tasks import arithmetic
from r1.tasks.base import Problem, check_args, draw_in_split

NAME = "mixed_arithmetic"
MATH_LIKE = True
MAX_DIFFICULTY = 1
SPLIT_NAMESPACE = arithmetic.NAME  # one split for both families' problems
PLACES = ("ones", "tens", "hundreds")
# digits of an add/sub operand: mostly 2-3, as people ask; 1-digit ones still occur
_DIGIT_WEIGHTS = {1: 1, 2: 3, 3: 3}
NEGATIVE_SHARE = 0.3  # of differences, chosen to come out negative

grade = arithmetic.grade
answer_key = arithmetic.answer_key
operands_followed = arithmetic.operands_followed  # the eval's "reasoned about other numbers" check


def _operand(rng: random.Random) -> int:
    n = rng.choices(list(_DIGIT_WEIGHTS), weights=list(_DIGIT_WEIGHTS.values()))[0]
    return rng.randint(0 if n == 1 else 10 ** (n - 1), 10 ** n - 1)


def _draw(rng: random.Random) -> tuple[str, tuple[str, int, int]]:
    op = rng.choice(arithmetic.OPS)
    if op == "mul":
        a, b = rng.randint(2, 999), rng.randint(2, 9)
        if rng.random() < 0.5:
            a, b = b, a
    else:
        a, b = _operand(rng), _operand(rng)
        if op == "sub" and (a < b) != (rng.random() < NEGATIVE_SHARE):
            a, b = b, a
    # the key format is arithmetic's, so split_of puts a problem in the same split in both families
    key = f"{op}:{min(a, b)}:{max(a, b)}" if op != "sub" else f"sub:{a}:{b}"
    return key, (op, a, b)


def generate(seed: int, split: str = "train", difficulty: int = 1) -> Problem:
    check_args(NAME, seed, split, difficulty, MAX_DIFFICULTY)
    key, (op, a, b) = draw_in_split(SPLIT_NAMESPACE, seed, split, difficulty, _draw)
    value = a + b if op == "add" else a - b if op == "sub" else a * b
    return Problem(task=NAME, prompt=f"What is {a} {arithmetic.SYMBOL[op]} {b}?", answer=str(value),
                   meta={"op": op, "a": a, "b": b, "difficulty": difficulty}, id=key)


def _mul_steps(a: int, b: int) -> list[str]:
    big, digit = (a, b) if b < 10 else (b, a)  # one of them is the one-digit multiplier
    parts = [int(c) * 10 ** i for i, c in enumerate(reversed(str(big))) if c != "0"][::-1]
    if len(parts) <= 1:  # 7 * 6, 300 * 4: one product
        return [f"I need to multiply {a} by {b}. {big} * {digit} = {big * digit}.", f"So {a} * {b} = {a * b}."]
    lines = [f"I need to multiply {a} by {b}. I'll split {big} into {' + '.join(map(str, parts))} "
             f"and multiply each part by {digit}."]
    products = [p * digit for p in parts]
    lines += [f"{p} * {digit} = {q}." for p, q in zip(parts, products)]
    total = products[0]
    for q in products[1:]:  # one sum at a time: a small model adds two numbers far better than three
        lines.append(f"{total} + {q} = {total + q}.")
        total += q
    lines.append(f"So {a} * {b} = {a * b}.")
    return lines


def trace(problem: Problem) -> str:
    if problem.meta["op"] == "mul":
        return "\n".join(_mul_steps(problem.meta["a"], problem.meta["b"]))
    return arithmetic.trace(problem)  # add/sub read only the meta
