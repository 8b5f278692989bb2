"""Countdown: reach a target with the given numbers (each at most once) and + - * / and brackets.

Any valid expression counts, not just the one the generator built. The grader never calls
`eval`: answers go through a small recursive-descent parser over a whitelisted alphabet
(digits, + - * / × ÷, brackets, spaces) and are evaluated with exact Fractions, so "7/2*2"
is 7 and division by zero is just a wrong answer.

Difficulty d: d+2 numbers (3 at d=1, 7 at d=5), drawn from 1..(9, 25, 50, 100, 100), and the
target is the value of a random expression over all of them (a positive integer, not one of
the numbers, at most 1000 from d=3 on).
"""
from __future__ import annotations

import random
import re
from collections import Counter
from fractions import Fraction

from r1.tasks.base import Problem, check_args, draw_in_split
from r1.tasks.numbers import parse_number

NAME = "countdown"
MATH_LIKE = True
MAX_DIFFICULTY = 5
_MAX_NUMBER = {1: 9, 2: 25, 3: 50, 4: 100, 5: 100}
_MAX_TARGET = {1: 100, 2: 200, 3: 1000, 4: 1000, 5: 1000}
MAX_ANSWER_CHARS = 300  # longer "expressions" are not answers (and bound the parser's work)
MAX_DEPTH = 32  # bracket nesting the parser follows before giving up (no recursion blow-up)

_TOKEN = re.compile(r"\s*(?:(\d+)|([-+*/()×÷xX\[\]]))")
_OPS = {"×": "*", "x": "*", "X": "*", "÷": "/", "[": "(", "]": ")"}


class ExprError(ValueError):
    pass


def tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.replace("\\times", "×").replace("\\cdot", "×").replace("\\div", "÷")
    text = text.replace("\\left", "").replace("\\right", "").replace("{", "(").replace("}", ")")
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            if text[pos:].strip() == "":
                break
            raise ExprError(f"unexpected character {text[pos]!r}")
        num, op = m.groups()
        tokens.append(num if num is not None else _OPS.get(op, op))
        pos = m.end()
    return tokens


class _Parser:
    # expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ; factor := INT | '(' expr ')'
    # No unary minus: the game has only the binary operations.
    def __init__(self, tokens: list[str]):
        self.tokens, self.i, self.numbers = tokens, 0, []

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise ExprError("expression ended early")
        self.i += 1
        return tok

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term(depth)
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self, depth: int) -> Fraction:
        value = self.factor(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            rhs = self.factor(depth)
            if op == "/":
                if rhs == 0:
                    raise ExprError("division by zero")
                value = value / rhs
            else:
                value = value * rhs
        return value

    def factor(self, depth: int) -> Fraction:
        tok = self.take()
        if tok == "(":
            if depth >= MAX_DEPTH:
                raise ExprError("brackets nested too deeply")
            value = self.expr(depth + 1)
            if self.take() != ")":
                raise ExprError("missing closing bracket")
            return value
        if tok.isdigit():
            self.numbers.append(int(tok))
            return Fraction(int(tok))
        raise ExprError(f"expected a number or '(', got {tok!r}")


def evaluate(expression: str) -> tuple[Fraction, list[int]]:
    """(value, numbers used) of an arithmetic expression; raises ExprError if it is not one."""
    if len(expression) > MAX_ANSWER_CHARS:
        raise ExprError("expression too long")
    tokens = tokenize(expression)
    if not tokens:
        raise ExprError("empty expression")
    p = _Parser(tokens)
    value = p.expr(0)
    if p.peek() is not None:
        raise ExprError(f"unexpected {p.peek()!r} after the expression")
    return value, p.numbers


def _split_equation(answer: str, target: int) -> str | None:
    """The expression part of an answer: "expr", "expr = target" or "target = expr"."""
    s = answer.strip().strip("$").strip().rstrip(".")
    parts = [x.strip() for x in s.split("=")]
    if len(parts) == 1:
        return parts[0]
    if len(parts) != 2:
        return None  # a chain of steps is working, not an expression
    for expr, other in (parts, parts[::-1]):
        if parse_number(other) == target:
            return expr
    return None


def check(answer: str, numbers: list[int], target: int) -> tuple[bool, str]:
    """(correct, reason): the reason names what was wrong, for debugging reward hacks."""
    expr = _split_equation(answer, target)
    if expr is None:
        return False, "not a single expression"
    try:
        value, used = evaluate(expr)
    except ExprError as e:
        return False, str(e)
    extra = Counter(used) - Counter(numbers)
    if extra:
        return False, f"uses numbers not given (or too often): {sorted(extra.elements())}"
    if value != target:
        return False, f"evaluates to {value}, not {target}"
    return True, "ok"


def _random_expression(rng: random.Random, numbers: list[int]) -> tuple[str, Fraction]:
    # Combine random pairs until one value is left. Divisions are kept exact and subtractions
    # non-negative so the reference solution is one a person would write. Each item carries its
    # precedence (3 number, 2 product/quotient, 1 sum/difference) to place only needed brackets.
    items: list[tuple[str, Fraction, int]] = [(str(n), Fraction(n), 3) for n in numbers]
    while len(items) > 1:
        rng.shuffle(items)
        (ea, va, pa), (eb, vb, pb) = items.pop(), items.pop()
        op = rng.choice("+-*/")
        if op == "-" and va < vb:
            (ea, va, pa), (eb, vb, pb) = (eb, vb, pb), (ea, va, pa)
        if op == "/" and (vb == 0 or vb == 1 or va % vb != 0):
            op = "+"
        if op == "*" and (va == 1 or vb == 1):
            op = "+"
        left_needs = op in "*/" and pa == 1
        right_needs = (op == "-" and pb == 1) or (op == "*" and pb == 1) or (op == "/" and pb <= 2)
        wa = f"({ea})" if left_needs else ea
        wb = f"({eb})" if right_needs else eb
        value = va + vb if op == "+" else va - vb if op == "-" else va * vb if op == "*" else va / vb
        items.append((f"{wa} {op} {wb}", value, 1 if op in "+-" else 2))
    expr, value, _ = items[0]
    return expr, value


def generate(seed: int, split: str = "train", difficulty: int = 1) -> Problem:
    check_args(NAME, seed, split, difficulty, MAX_DIFFICULTY)
    count, hi, max_target = difficulty + 2, _MAX_NUMBER[difficulty], _MAX_TARGET[difficulty]

    def draw(rng: random.Random):
        while True:
            numbers = [rng.randint(1, hi) for _ in range(count)]
            expr, value = _random_expression(rng, numbers)
            if value.denominator == 1 and 0 < value <= max_target and int(value) not in numbers:
                break
        shown = sorted(numbers)
        return f"{','.join(map(str, shown))}->{int(value)}", (shown, int(value), expr)

    key, (numbers, target, expr) = draw_in_split(NAME, seed, split, difficulty, draw)
    prompt = (f"Using the numbers {numbers}, each at most once, and the operations +, -, *, / "
              f"(with brackets), write an expression that equals {target}.")
    return Problem(task=NAME, prompt=prompt, answer=expr,
                   meta={"numbers": numbers, "target": target, "difficulty": difficulty}, id=key)


def grade(answer: str, problem: Problem) -> bool:
    return check(answer, problem.meta["numbers"], problem.meta["target"])[0]


def answer_key(answer: str, problem: Problem) -> str | None:
    # Every valid solution is the same answer for majority voting; invalid ones vote by value.
    ok, _ = check(answer, problem.meta["numbers"], problem.meta["target"])
    if ok:
        return f"={problem.meta['target']}"
    expr = _split_equation(answer, problem.meta["target"])
    try:
        value, _ = evaluate(expr) if expr is not None else (None, None)
    except ExprError:
        return None
    return None if value is None else f"~{value}"


def trace(problem: Problem) -> str:
    numbers, target, expr = problem.meta["numbers"], problem.meta["target"], problem.answer
    lines = [f"I need to reach {target} using some of {numbers}, each at most once, with + - * /."]
    # Replay the reference expression bottom-up, one operation per line.
    steps = _steps(expr)
    lines.append(f"Let me look for a combination. {target} is reachable in {len(steps)} step(s):")
    lines += steps
    value, used = evaluate(expr)
    lines.append(f"Check: {expr} = {value}, and it uses {sorted(used)}, all from the given numbers. That works.")
    return "\n".join(lines)


def _steps(expr: str) -> list[str]:
    # Evaluate innermost brackets first, then left-to-right by precedence, recording each step.
    steps: list[str] = []
    s = expr

    def flat(e: str) -> str:
        toks = tokenize(e)
        for ops in (("*", "/"), ("+", "-")):
            i = 1
            while i < len(toks):
                if toks[i] in ops:
                    a, b = Fraction(toks[i - 1]), Fraction(toks[i + 1])
                    op = toks[i]
                    v = a * b if op == "*" else a / b if op == "/" else a + b if op == "+" else a - b
                    steps.append(f"{toks[i - 1]} {toks[i]} {toks[i + 1]} = {v}")
                    toks[i - 1:i + 2] = [str(v)]
                else:
                    i += 2
        return toks[0]

    inner = re.compile(r"\(([^()]*)\)")
    while "(" in s:
        s = inner.sub(lambda m: flat(m.group(1)), s, count=1)
    flat(s)
    return steps
