"""Sorting and ordering puzzles: sort numbers, alphabetise words, or recover an order from
pairwise comparisons ("Ana is taller than Ben. ... List them from tallest to shortest.").

Difficulty d: d+3 items (4 at d=1, 8 at d=5). d=1 small positive integers; d=2 adds
alphabetising words; d=3 adds negative numbers and 3-4 person ordering puzzles; d=4 adds
decimals, words sharing prefixes and 5-person puzzles; d=5 6-person puzzles with redundant
statements. Answers are comma-separated lists in the asked order.
"""
from __future__ import annotations

import random
import re
from fractions import Fraction

from r1.tasks.base import Problem, check_args, draw_in_split
from r1.tasks.numbers import parse_number

NAME = "sorting"
MATH_LIKE = False  # the answer is a list, given plainly after the reasoning
MAX_DIFFICULTY = 5

WORDS = tuple("""
apple apricot banana blueberry cherry coconut date elderberry fig grape guava kiwi lemon lime
mango melon nectarine olive orange papaya peach pear pineapple plum quince raspberry
strawberry tangerine walnut almond cashew hazelnut pecan pistachio carrot celery garlic onion
potato pumpkin radish spinach tomato turnip zucchini
""".split())
PREFIXED = tuple("""
car card care cargo carpet carrot cart carton cartoon carve
star stare stark start starve state station statue stay
pan panda pane panel panic pansy pant pantry paper
""".split())
NAMES = tuple("""Ana Ben Cara Dev Eli Fay Gus Hana Ivo Jin Kai Lea Max Nia Oto Pia Raj Sol Tom Uma Vik Wen Yara Zed""".split())
ATTRIBUTES = (("taller", "shorter", "tallest", "shortest"), ("older", "younger", "oldest", "youngest"),
              ("faster", "slower", "fastest", "slowest"), ("heavier", "lighter", "heaviest", "lightest"))


def _kinds(difficulty: int) -> list[str]:
    return {1: ["numbers"], 2: ["numbers", "words"], 3: ["numbers", "words", "people"],
            4: ["numbers", "words", "people"], 5: ["numbers", "words", "people"]}[difficulty]


def _fmt_num(v: Fraction) -> str:
    if v.denominator == 1:
        return str(v.numerator)
    return f"{float(v):.2f}".rstrip("0")


def _draw(difficulty: int):
    n = difficulty + 3

    def draw(rng: random.Random):
        kind = rng.choice(_kinds(difficulty))
        if kind == "numbers":
            desc = rng.random() < 0.5
            lo = -99 if difficulty >= 3 else 1
            hi = 99 if difficulty <= 2 else 999
            if difficulty >= 4:
                values = {Fraction(rng.randint(lo * 100, hi * 100), 100) for _ in range(n)}
            else:
                values = {Fraction(rng.randint(lo, hi)) for _ in range(n)}
            items = [_fmt_num(v) for v in values]
            rng.shuffle(items)
            order = sorted(items, key=lambda s: Fraction(s), reverse=desc)
            way = "from largest to smallest" if desc else "from smallest to largest"
            prompt = f"Sort these numbers {way}: {', '.join(items)}."
            key = f"numbers:{'desc' if desc else 'asc'}:{','.join(order)}"
            return key, (prompt, order, {"kind": kind, "items": items, "descending": desc})
        if kind == "words":
            pool = PREFIXED if difficulty >= 4 and rng.random() < 0.6 else WORDS
            items = rng.sample(pool, n)
            order = sorted(items)
            prompt = f"Sort these words in alphabetical order: {', '.join(items)}."
            key = f"words:{','.join(order)}"
            return key, (prompt, order, {"kind": kind, "items": items})
        people = min(n, {3: rng.randint(3, 4), 4: 5, 5: 6}[difficulty])
        order = rng.sample(NAMES, people)  # ground truth, most to least
        more, less, most, least = rng.choice(ATTRIBUTES)
        pairs = [(order[i], order[i + 1]) for i in range(people - 1)]
        if difficulty >= 5:  # redundant (implied) comparisons to sift through
            for _ in range(2):
                i, j = sorted(rng.sample(range(people), 2))
                if (order[i], order[j]) not in pairs:
                    pairs.append((order[i], order[j]))
        rng.shuffle(pairs)
        facts = [f"{a} is {more} than {b}." if rng.random() < 0.5 else f"{b} is {less} than {a}." for a, b in pairs]
        prompt = " ".join(facts) + f" List everyone from {most} to {least}."
        key = f"people:{more}:{','.join(order)}:{'|'.join(sorted(f'{a}>{b}' for a, b in pairs))}"
        return key, (prompt, order, {"kind": "people", "pairs": pairs, "attribute": [more, less, most, least]})
    return draw


def generate(seed: int, split: str = "train", difficulty: int = 1) -> Problem:
    check_args(NAME, seed, split, difficulty, MAX_DIFFICULTY)
    key, (prompt, order, meta) = draw_in_split(NAME, seed, split, difficulty, _draw(difficulty))
    meta = {**meta, "order": order, "difficulty": difficulty}
    return Problem(task=NAME, prompt=prompt, answer=", ".join(order), meta=meta, id=key)


def parse_list(answer: str) -> list[str] | None:
    s = answer.strip().strip("$").strip().rstrip(".").strip()
    s = re.sub(r"^\[(.*)\]$|^\((.*)\)$", lambda m: m.group(1) or m.group(2) or "", s, flags=re.S)
    if not s:
        return None
    sep = re.compile(r"\s*(?:,|;|<|>|→|->)\s*(?:and\s+)?") if re.search(r"[,;<>→]", s) else re.compile(r"\s+")
    items = [x.strip().strip("'\"`*").strip() for x in sep.split(s)]
    if any(not x or " " in x for x in items):
        return None  # an item with spaces is prose or a second candidate ("b or a")
    return items


def _norm(item: str, kind: str) -> str | None:
    if kind == "numbers":
        v = parse_number(item)
        return None if v is None else str(v)
    return item.lower()


def answer_key(answer: str, problem: Problem) -> str | None:
    items = parse_list(answer)
    if items is None:
        return None
    normed = [_norm(x, problem.meta["kind"]) for x in items]
    return None if any(x is None for x in normed) else ",".join(normed)


def grade(answer: str, problem: Problem) -> bool:
    key = answer_key(answer, problem)
    return key is not None and key == answer_key(problem.answer, problem)


def trace(problem: Problem) -> str:
    kind, order = problem.meta["kind"], problem.meta["order"]
    if kind == "people":
        more, less, most, least = problem.meta["attribute"]
        lines = ["Let me write every statement as 'X > Y', meaning X is " + more + " than Y:"]
        lines += [f"{a} > {b}" for a, b in problem.meta["pairs"]]
        remaining = list(order)
        lines.append(f"The {most} is the one nobody is {more} than.")
        for i in range(len(order)):
            lines.append(f"Among {', '.join(sorted(remaining))}, nobody left is {more} than {remaining[0]}, "
                         f"so position {i + 1} is {remaining[0]}.")
            remaining = remaining[1:]
        lines.append(f"From {most} to {least}: {', '.join(order)}.")
        return "\n".join(lines)
    items = list(problem.meta["items"])
    if kind == "numbers":
        pick = "largest" if problem.meta["descending"] else "smallest"
        lines = [f"I'll repeatedly pick the {pick} remaining number."]
        chooser = max if problem.meta["descending"] else min
        value = Fraction
    else:
        pick, chooser, value = "first alphabetically", min, str
        lines = ["I'll repeatedly pick the remaining word that comes first alphabetically, comparing letter by letter."]
    out = []
    while items:
        best = chooser(items, key=value)
        out.append(best)
        items.remove(best)
        rest = f" (remaining: {', '.join(items)})" if items else ""
        lines.append(f"The {pick} is {best}{rest}.")
    lines.append(f"Sorted: {', '.join(out)}.")
    return "\n".join(lines)
