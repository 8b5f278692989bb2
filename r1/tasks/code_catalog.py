"""The catalogue of synthetic programming problems: small functions from a spec.

Each entry draws its parameters from an RNG and returns a `FunctionSpec`: the statement,
the signature, a reference solution (source text, run on the host to compute expected
outputs: it is our code, never the model's), an argument generator for hidden tests, and
the plan a worked trace explains. The key names the problem (template + parameters), so the
same spec always lands in the same split whatever its test inputs.

Difficulty: 1 one-line arithmetic/string functions; 2 string and list manipulation; 3 simple
algorithms (recurrences, bases, brackets); 4 counting and scanning with a little state
(pairs, windows, intervals, matrices); 5 dynamic programming and grid search.
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class FunctionSpec:
    key: str
    name: str
    signature: str                       # "rotate(xs: list[int]) -> list[int]"
    statement: str
    solution: str                        # a complete `def`, standard library only
    approach: str                        # the plan, in words, for the reasoning trace
    make_args: Callable[[random.Random], list[Any]]
    edge_args: tuple[tuple[Any, ...], ...] = ()

    def __post_init__(self) -> None:
        if f"def {self.name}(" not in self.solution:
            raise ValueError(f"{self.key}: reference solution does not define {self.name}()")


def _ints(rng: random.Random, n_lo: int, n_hi: int, lo: int, hi: int) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(n_lo, n_hi))]


def _word(rng: random.Random, lo: int = 1, hi: int = 8, alphabet: str = string.ascii_lowercase) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


# -- difficulty 1 -----------------------------------------------------------------------

def sum_divisible(rng: random.Random) -> FunctionSpec:
    m = rng.randint(2, 12)
    return FunctionSpec(
        f"sum_divisible:{m}", "sum_divisible", "sum_divisible(xs: list[int]) -> int",
        f"Return the sum of the elements of xs that are divisible by {m} (0 if there are none).",
        f"def sum_divisible(xs):\n    return sum(x for x in xs if x % {m} == 0)\n",
        f"Walk through the list, keep the elements whose remainder modulo {m} is 0, and add them up; "
        "the empty sum is 0.",
        lambda r: [_ints(r, 0, 12, -50, 50)], (([],),))


def count_letter(rng: random.Random) -> FunctionSpec:
    c = rng.choice(string.ascii_lowercase)
    return FunctionSpec(
        f"count_letter:{c}", "count_letter", "count_letter(s: str) -> int",
        f"Return how many times the letter '{c}' occurs in s, counting both '{c}' and '{c.upper()}'.",
        f"def count_letter(s):\n    return s.lower().count({c!r})\n",
        f"Lower-case the string so '{c.upper()}' and '{c}' look the same, then count '{c}'.",
        lambda r: [_word(r, 0, 20, "".join(sorted({c, c.upper(), *"abcXYZ "})))], (("",),))


def affine_map(rng: random.Random) -> FunctionSpec:
    a, b = rng.randint(2, 9), rng.randint(1, 9)
    return FunctionSpec(
        f"affine_map:{a}:{b}", "affine_map", "affine_map(xs: list[int]) -> list[int]",
        f"Return a new list in which every element x of xs is replaced by {a}*x + {b}, in the same order.",
        f"def affine_map(xs):\n    return [{a} * x + {b} for x in xs]\n",
        f"Build a new list with a comprehension that maps each x to {a}*x + {b}; the input stays unchanged.",
        lambda r: [_ints(r, 0, 10, -20, 20)], (([],),))


def clamp(rng: random.Random) -> FunctionSpec:
    lo, hi = rng.randint(-20, 0), rng.randint(1, 30)
    return FunctionSpec(
        f"clamp:{lo}:{hi}", "clamp", "clamp(x: int) -> int",
        f"Return x limited to the range [{lo}, {hi}]: {lo} if x is smaller, {hi} if x is larger, else x itself.",
        f"def clamp(x):\n    return max({lo}, min({hi}, x))\n",
        f"min(x, {hi}) removes values above the range and max({lo}, ...) values below it.",
        lambda r: [r.randint(lo - 30, hi + 30)], ((lo,), (hi,), (lo - 1,), (hi + 1,)))


def count_prefix(rng: random.Random) -> FunctionSpec:
    c = rng.choice(string.ascii_lowercase)
    return FunctionSpec(
        f"count_prefix:{c}", "count_prefix", "count_prefix(words: list[str]) -> int",
        f"Return how many of the words start with the lowercase letter '{c}'.",
        f"def count_prefix(words):\n    return sum(1 for w in words if w.startswith({c!r}))\n",
        f"Count the words for which w.startswith('{c}') holds; an empty word starts with nothing.",
        lambda r: [[_word(r, 0, 5, c + "abz") for _ in range(r.randint(0, 8))]], (([],), ([""],)))


# -- difficulty 2 -----------------------------------------------------------------------

def rotate(rng: random.Random) -> FunctionSpec:
    k, right = rng.randint(1, 7), rng.random() < 0.5
    way = "right" if right else "left"
    body = "xs[-k:] + xs[:-k]" if right else "xs[k:] + xs[:k]"
    return FunctionSpec(
        f"rotate:{way}:{k}", "rotate", "rotate(xs: list[int]) -> list[int]",
        f"Return xs rotated {way} by {k} positions (elements that fall off one end come back at the other). "
        "The list may be shorter than the rotation or empty.",
        f"def rotate(xs):\n    if not xs:\n        return []\n    k = {k} % len(xs)\n    if k == 0:\n"
        f"        return list(xs)\n    return {body}\n",
        f"Rotating by {k} is the same as rotating by {k} modulo the length, so reduce k first (and return "
        f"an empty list for an empty input); then slicing puts the {'last' if right else 'first'} k elements "
        f"{'in front' if right else 'at the back'}.",
        lambda r: [_ints(r, 0, 9, 0, 9)], (([],), ([7],), ([1, 2, 3, 4, 5],)))


def dedupe(rng: random.Random) -> FunctionSpec:
    keep = rng.choice(["first", "last"])
    if keep == "first":
        sol = "def dedupe(xs):\n    seen = set()\n    out = []\n    for x in xs:\n        if x not in seen:\n" \
              "            seen.add(x)\n            out.append(x)\n    return out\n"
    else:
        sol = "def dedupe(xs):\n    seen = set()\n    out = []\n    for x in reversed(xs):\n        if x not in seen:\n" \
              "            seen.add(x)\n            out.append(x)\n    return out[::-1]\n"
    return FunctionSpec(
        f"dedupe:{keep}", "dedupe", "dedupe(xs: list[int]) -> list[int]",
        f"Remove repeated values from xs, keeping only the {keep} occurrence of each value, and otherwise "
        "keeping the order of the list.",
        sol,
        f"Scan the list {'from the front' if keep == 'first' else 'from the back'} with a set of values already "
        f"seen, keep a value only the first time it is met{'' if keep == 'first' else ', and reverse the result'}.",
        lambda r: [_ints(r, 0, 12, 0, 6)], (([],), ([1, 1, 1],)))


def run_length(rng: random.Random) -> FunctionSpec:
    count_first = rng.random() < 0.5
    piece = "f'{n}{c}'" if count_first else "f'{c}{n}'"
    fmt = "count before the letter, e.g. 'aaab' -> '3a1b'" if count_first else "letter before the count, e.g. 'aaab' -> 'a3b1'"
    return FunctionSpec(
        f"run_length:{'count_first' if count_first else 'letter_first'}", "run_length", "run_length(s: str) -> str",
        f"Run-length encode s: replace each maximal run of the same character by the character and the run "
        f"length, {fmt}. The empty string encodes to ''.",
        "def run_length(s):\n    out = []\n    i = 0\n    while i < len(s):\n        j = i\n"
        "        while j < len(s) and s[j] == s[i]:\n            j += 1\n        n, c = j - i, s[i]\n"
        f"        out.append({piece})\n        i = j\n    return ''.join(out)\n",
        "Walk with two indices: i marks the start of a run, j moves right while the character repeats; "
        "emit the pair for s[i:j] and continue from j.",
        lambda r: ["".join(r.choice("ab") * r.randint(1, 4) for _ in range(r.randint(0, 5)))], (("",), ("z",)))


def title_long_words(rng: random.Random) -> FunctionSpec:
    n = rng.randint(1, 8)
    return FunctionSpec(
        f"title_long_words:{n}", "title_long_words", "title_long_words(text: str) -> str",
        f"The text is lowercase words separated by single spaces. Capitalise the first letter of every word "
        f"longer than {n} letters and return the text with the same spacing.",
        f"def title_long_words(text):\n    return ' '.join(w[:1].upper() + w[1:] if len(w) > {n} else w "
        "for w in text.split(' '))\n",
        f"Split on single spaces (so the spacing survives the join), upper-case the first letter of words with "
        f"more than {n} letters, and join back with spaces.",
        lambda r: [" ".join(_word(r, 1, 9) for _ in range(r.randint(1, 6)))], (("",), ("a",)))


def chunk(rng: random.Random) -> FunctionSpec:
    k = rng.randint(2, 9)
    return FunctionSpec(
        f"chunk:{k}", "chunk", "chunk(xs: list[int]) -> list[list[int]]",
        f"Split xs into consecutive groups of {k} elements; the last group may be shorter. An empty list "
        "gives no groups.",
        f"def chunk(xs):\n    return [xs[i:i + {k}] for i in range(0, len(xs), {k})]\n",
        f"Take slices xs[i:i+{k}] for i = 0, {k}, {2 * k}, ...; slicing past the end gives the short last group.",
        lambda r: [_ints(r, 0, 14, 0, 99)], (([],),))


def caesar(rng: random.Random) -> FunctionSpec:
    k = rng.randint(1, 25)
    return FunctionSpec(
        f"caesar:{k}", "caesar", "caesar(s: str) -> str",
        f"Shift every letter of s forward by {k} places in the alphabet, wrapping from z to a (and Z to A), "
        "keeping the case; leave other characters unchanged.",
        "def caesar(s):\n    out = []\n    for ch in s:\n        if 'a' <= ch <= 'z':\n"
        f"            out.append(chr((ord(ch) - 97 + {k}) % 26 + 97))\n        elif 'A' <= ch <= 'Z':\n"
        f"            out.append(chr((ord(ch) - 65 + {k}) % 26 + 65))\n        else:\n            out.append(ch)\n"
        "    return ''.join(out)\n",
        f"For a letter, take its position from 'a' (or 'A'), add {k}, reduce modulo 26 and convert back; "
        "anything else is copied.",
        lambda r: [_word(r, 0, 15, string.ascii_letters + " !,")], (("",), ("xyz XYZ",)))


def every_nth(rng: random.Random) -> FunctionSpec:
    n = rng.randint(2, 7)
    o = rng.randint(0, n - 1)
    return FunctionSpec(
        f"every_nth:{n}:{o}", "every_nth", "every_nth(xs: list[int]) -> list[int]",
        f"Return the elements of xs at positions {o}, {o + n}, {o + 2 * n}, ... (positions start at 0).",
        f"def every_nth(xs):\n    return xs[{o}::{n}]\n",
        f"That is the extended slice xs[{o}::{n}]: start at {o}, step {n}.",
        lambda r: [_ints(r, 0, 15, 0, 50)], (([],),))


def replace_letter(rng: random.Random) -> FunctionSpec:
    a, b = rng.sample(string.ascii_lowercase, 2)
    return FunctionSpec(
        f"replace_letter:{a}:{b}", "replace_letter", "replace_letter(s: str) -> str",
        f"Return s with every lowercase '{a}' replaced by '{b}' and every uppercase '{a.upper()}' by "
        f"'{b.upper()}'; nothing else changes.",
        f"def replace_letter(s):\n    return s.replace({a!r}, {b!r}).replace({a.upper()!r}, {b.upper()!r})\n",
        "Two str.replace calls, one per case; replacing does not create new matches because the target letter "
        "differs from the source letter.",
        lambda r: [_word(r, 0, 14, "".join(sorted({a, a.upper(), b, "x", "Y", " "})))], (("",),))


def filter_length(rng: random.Random) -> FunctionSpec:
    lo = rng.randint(1, 4)
    hi = rng.randint(lo, 8)
    return FunctionSpec(
        f"filter_length:{lo}:{hi}", "keep_words", "keep_words(words: list[str]) -> list[str]",
        f"Return the words whose length is between {lo} and {hi} inclusive, in their original order.",
        f"def keep_words(words):\n    return [w for w in words if {lo} <= len(w) <= {hi}]\n",
        f"A comprehension with the chained comparison {lo} <= len(w) <= {hi} keeps the order.",
        lambda r: [[_word(r, 0, 10) for _ in range(r.randint(0, 8))]], (([],), ([""],)))


# -- difficulty 3 -----------------------------------------------------------------------

def recurrence(rng: random.Random) -> FunctionSpec:
    p, q, c = rng.randint(0, 3), rng.randint(1, 3), rng.randint(1, 3)
    rule = "a(n-1) + a(n-2)" if c == 1 else f"a(n-1) + {c}*a(n-2)"
    step = "a + b" if c == 1 else f"b + {c} * a"
    return FunctionSpec(
        f"recurrence:{p}:{q}:{c}", "term", "term(n: int) -> int",
        f"A sequence has a(0) = {p}, a(1) = {q} and a(n) = {rule} for n >= 2. Return a(n) for n >= 0.",
        f"def term(n):\n    a, b = {p}, {q}\n    for _ in range(n):\n        a, b = b, {step}\n    return a\n",
        "Iterate instead of recursing (naive recursion is exponential): keep the pair (a(i), a(i+1)) and "
        "advance it n times.",
        lambda r: [r.randint(0, 60)], ((0,), (1,), (2,)))


def digital_root(rng: random.Random) -> FunctionSpec:
    b = rng.randint(2, 12)
    return FunctionSpec(
        f"digital_root:{b}", "digital_root", "digital_root(n: int) -> int",
        f"Write the non-negative integer n in base {b} and add its digits; repeat with the sum until a single "
        f"base-{b} digit remains. Return that digit as an int.",
        f"def digital_root(n):\n    while n >= {b}:\n        s = 0\n        while n:\n            s += n % {b}\n"
        f"            n //= {b}\n        n = s\n    return n\n",
        f"Digits in base {b} come from repeated n % {b} and n // {b}; loop until the value is below {b}.",
        lambda r: [r.randint(0, 10 ** r.randint(1, 9))], ((0,), (b - 1,), (b,)))


def balanced(rng: random.Random) -> FunctionSpec:
    pairs = rng.choice(["()", "()[]", "()[]{}", "()<>", "[]{}"])
    closers = {pairs[i + 1]: pairs[i] for i in range(0, len(pairs), 2)}
    return FunctionSpec(
        f"balanced:{pairs}", "balanced", "balanced(s: str) -> bool",
        f"s consists only of the characters {' '.join(pairs)}. Return True if every bracket is closed by the "
        "matching bracket in the right order, else False.",
        f"def balanced(s):\n    closers = {closers!r}\n    stack = []\n    for ch in s:\n        if ch in closers:\n"
        "            if not stack or stack.pop() != closers[ch]:\n                return False\n        else:\n"
        "            stack.append(ch)\n    return not stack\n",
        "Push every opening bracket on a stack; a closing bracket must match the top of the stack; at the end "
        "the stack must be empty.",
        lambda r: ["".join(r.choice(pairs) for _ in range(r.randint(0, 10)))
                   if r.random() < 0.5 else _nested(r, pairs)], (("",),))


def _nested(rng: random.Random, pairs: str) -> str:
    out = ""
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(0, len(pairs), 2)
        out = pairs[i] + out + pairs[i + 1] if rng.random() < 0.5 else out + pairs[i] + pairs[i + 1]
    return out


def kth_largest(rng: random.Random) -> FunctionSpec:
    k = rng.randint(1, 6)
    return FunctionSpec(
        f"kth_largest:{k}", "kth_largest", "kth_largest(xs: list[int]) -> int | None",
        f"Return the {_ordinal(k)} largest distinct value in xs, or None if xs has fewer than {k} distinct values.",
        f"def kth_largest(xs):\n    values = sorted(set(xs), reverse=True)\n"
        f"    return values[{k - 1}] if len(values) >= {k} else None\n",
        f"Distinct values come from a set; sort them in decreasing order and take index {k - 1} if it exists.",
        lambda r: [_ints(r, 0, 10, -5, 10)], (([],), ([3, 3, 3],)))


def _ordinal(k: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(k, f"{k}th")


def to_base(rng: random.Random) -> FunctionSpec:
    b = rng.randint(2, 16)
    letters = " (digits above 9 are the lowercase letters a, b, ...)" if b > 10 else ""
    return FunctionSpec(
        f"to_base:{b}", "to_base", "to_base(n: int) -> str",
        f"Return the base-{b} representation of the integer n as a string of digits{letters}, with a leading "
        "'-' for negative n; 0 is '0'.",
        f"def to_base(n):\n    if n == 0:\n        return '0'\n    sign = '-' if n < 0 else ''\n    n = abs(n)\n"
        f"    digits = []\n    while n:\n        digits.append('0123456789abcdef'[n % {b}])\n        n //= {b}\n"
        "    return sign + ''.join(reversed(digits))\n",
        f"Peel off digits with n % {b} (least significant first), reverse them, and handle 0 and the sign "
        "separately.",
        lambda r: [r.randint(-5000, 5000)], ((0,), (b,), (-1,)))


def lcm_gcd(rng: random.Random) -> FunctionSpec:
    which = rng.choice(["gcd", "lcm"])
    sol = ("def fold(xs):\n    from math import gcd\n    g = 0\n    for x in xs:\n        g = gcd(g, x)\n    return g\n"
           if which == "gcd" else
           "def fold(xs):\n    from math import gcd\n    l = 1\n    for x in xs:\n        l = l * x // gcd(l, x)\n    return l\n")
    return FunctionSpec(
        f"fold:{which}", "fold", "fold(xs: list[int]) -> int",
        f"xs holds positive integers. Return their {'greatest common divisor' if which == 'gcd' else 'least common multiple'}"
        f" ({0 if which == 'gcd' else 1} for an empty list).",
        sol,
        f"Fold pairwise: {'gcd(g, x) starting from 0' if which == 'gcd' else 'l*x // gcd(l, x) starting from 1'}, "
        "since the operation is associative.",
        lambda r: [[r.choice([2, 3, 4, 6, 8, 9, 12, 15, 18, 20]) * r.randint(1, 3) for _ in range(r.randint(0, 5))]],
        (([],), ([7],)))


def count_divisible(rng: random.Random) -> FunctionSpec:
    a, b = sorted(rng.sample(range(2, 10), 2))
    return FunctionSpec(
        f"count_divisible:{a}:{b}", "count_divisible", "count_divisible(n: int) -> int",
        f"Return how many integers k with 1 <= k <= n are divisible by {a} or by {b} (or both); 0 when n < 1.",
        f"def count_divisible(n):\n    from math import gcd\n    if n < 1:\n        return 0\n"
        f"    l = {a} * {b} // gcd({a}, {b})\n    return n // {a} + n // {b} - n // l\n",
        f"Inclusion-exclusion: n // {a} multiples of {a} plus n // {b} of {b}, minus the ones counted twice, the "
        f"multiples of lcm({a}, {b}); this works for huge n where a loop would be too slow.",
        lambda r: [r.randint(-5, 10 ** r.randint(1, 12))], ((0,), (1,), (a * b,)))


# -- difficulty 4 -----------------------------------------------------------------------

def pairs_mod(rng: random.Random) -> FunctionSpec:
    m = rng.randint(2, 12)
    return FunctionSpec(
        f"pairs_mod:{m}", "pairs_mod", "pairs_mod(xs: list[int]) -> int",
        f"Count the pairs of positions i < j with (xs[i] + xs[j]) divisible by {m}.",
        f"def pairs_mod(xs):\n    counts = [0] * {m}\n    total = 0\n    for x in xs:\n"
        f"        total += counts[(-x) % {m}]\n        counts[x % {m}] += 1\n    return total\n",
        f"Scanning left to right, a new x pairs with every earlier value whose remainder is (-x) mod {m}; keep "
        "a count per remainder so the whole scan is linear.",
        lambda r: [_ints(r, 0, 40, -30, 60)], (([],), ([0, 0, 0],)))


def most_frequent(rng: random.Random) -> FunctionSpec:
    tie = rng.choice(["smallest", "largest", "earliest"])
    key = {"smallest": "(-counts[x], x)", "largest": "(-counts[x], -x)", "earliest": "(-counts[x], first[x])"}[tie]
    return FunctionSpec(
        f"most_frequent:{tie}", "most_frequent", "most_frequent(xs: list[int]) -> int | None",
        f"Return the value that occurs most often in xs; among equally frequent values return the {tie}"
        f"{' one to appear' if tie == 'earliest' else ''}. Return None for an empty list.",
        "def most_frequent(xs):\n    if not xs:\n        return None\n    counts, first = {}, {}\n"
        "    for i, x in enumerate(xs):\n        counts[x] = counts.get(x, 0) + 1\n        first.setdefault(x, i)\n"
        f"    return min(counts, key=lambda x: {key})\n",
        f"Count occurrences (and remember where each value first appears), then pick the minimum of a key that "
        f"orders by higher count first and breaks ties by the {tie} value.",
        lambda r: [_ints(r, 0, 15, 0, 5)], (([],), ([4],)))


def runs(rng: random.Random) -> FunctionSpec:
    kind = rng.choice(["equal", "increasing", "decreasing"])
    cmp = {"equal": "==", "increasing": ">", "decreasing": "<"}[kind]
    what = {"equal": "consecutive equal elements", "increasing": "strictly increasing consecutive elements",
            "decreasing": "strictly decreasing consecutive elements"}[kind]
    return FunctionSpec(
        f"runs:{kind}", "longest_run", "longest_run(xs: list[int]) -> int",
        f"Return the length of the longest stretch of {what} in xs (0 for an empty list, 1 if no two "
        "neighbours qualify).",
        "def longest_run(xs):\n    if not xs:\n        return 0\n    best = cur = 1\n    for a, b in zip(xs, xs[1:]):\n"
        f"        cur = cur + 1 if b {cmp} a else 1\n        best = max(best, cur)\n    return best\n",
        "One pass over neighbouring pairs: extend the current stretch when the pair qualifies, otherwise restart "
        "at 1, and remember the best length.",
        lambda r: [_ints(r, 0, 15, 0, 4)], (([],), ([5],)))


def window_sum(rng: random.Random) -> FunctionSpec:
    k = rng.randint(2, 9)
    return FunctionSpec(
        f"window_sum:{k}", "max_window", "max_window(xs: list[int]) -> int | None",
        f"Return the largest sum of {k} consecutive elements of xs, or None if xs has fewer than {k} elements.",
        f"def max_window(xs):\n    if len(xs) < {k}:\n        return None\n    cur = best = sum(xs[:{k}])\n"
        f"    for i in range({k}, len(xs)):\n        cur += xs[i] - xs[i - {k}]\n        best = max(best, cur)\n"
        "    return best\n",
        f"Slide a window of {k}: start from the sum of the first {k} elements, then add the element entering "
        "and subtract the one leaving at each step.",
        lambda r: [_ints(r, 0, 20, -20, 20)], (([],), (list(range(k)),)))


def subarray_target(rng: random.Random) -> FunctionSpec:
    t = rng.randint(1, 20)
    return FunctionSpec(
        f"subarray_target:{t}", "count_subarrays", "count_subarrays(xs: list[int]) -> int",
        f"Count the non-empty contiguous subarrays of xs whose elements add up to exactly {t}.",
        "def count_subarrays(xs):\n    seen = {0: 1}\n    total = count = 0\n    for x in xs:\n        total += x\n"
        f"        count += seen.get(total - {t}, 0)\n        seen[total] = seen.get(total, 0) + 1\n    return count\n",
        f"A subarray sums to {t} when two prefix sums differ by {t}; count earlier prefix sums in a dictionary "
        "while scanning.",
        lambda r: [_ints(r, 0, 25, -5, 10)], (([],), ([t],)))


def two_sum(rng: random.Random) -> FunctionSpec:
    t = rng.randint(1, 30)
    return FunctionSpec(
        f"two_sum:{t}", "two_sum", "two_sum(xs: list[int]) -> list[int] | None",
        f"Return [i, j] with i < j and xs[i] + xs[j] == {t}, choosing the pair with the smallest j and, for that "
        "j, the smallest i; return None if there is no such pair.",
        "def two_sum(xs):\n    first = {}\n    for j, x in enumerate(xs):\n"
        f"        if {t} - x in first:\n            return [first[{t} - x], j]\n        first.setdefault(x, j)\n"
        "    return None\n",
        f"Scan j from left to right and remember the first index of every value seen; the first j whose "
        f"complement {t} - xs[j] was already seen gives the answer, with the earliest such i.",
        lambda r: [_ints(r, 0, 12, -5, t + 5)], (([],), ([t],)))


def intervals(rng: random.Random) -> FunctionSpec:
    what = rng.choice(["merge", "covered"])
    sol = ("def intervals(spans):\n    merged = []\n    for a, b in sorted(spans):\n        if merged and a <= merged[-1][1]:\n"
           "            merged[-1][1] = max(merged[-1][1], b)\n        else:\n            merged.append([a, b])\n")
    sol += "    return merged\n" if what == "merge" else "    return sum(b - a for a, b in merged)\n"
    return FunctionSpec(
        f"intervals:{what}", "intervals",
        f"intervals(spans: list[list[int]]) -> {'list[list[int]]' if what == 'merge' else 'int'}",
        "spans is a list of [start, end] pairs with start <= end. "
        + ("Merge overlapping or touching spans and return the result sorted by start."
           if what == "merge" else "Return the total length of the number line they cover (overlaps counted once)."),
        sol,
        "Sort by start; a span that starts before the current merged span ends extends it, otherwise it opens a "
        "new one" + ("." if what == "merge" else "; then add up the merged lengths."),
        lambda r: [[sorted([r.randint(0, 30), r.randint(0, 30)]) for _ in range(r.randint(0, 6))]], (([],),))


def matrix(rng: random.Random) -> FunctionSpec:
    op = rng.choice(["transpose", "rotate_cw", "rotate_ccw", "row_sums"])
    body = {"transpose": "[list(col) for col in zip(*m)]", "rotate_cw": "[list(col) for col in zip(*m[::-1])]",
            "rotate_ccw": "[list(col) for col in zip(*m)][::-1]", "row_sums": "[sum(row) for row in m]"}[op]
    what = {"transpose": "its transpose", "rotate_cw": "the matrix rotated 90 degrees clockwise",
            "rotate_ccw": "the matrix rotated 90 degrees counter-clockwise", "row_sums": "the list of its row sums"}[op]
    return FunctionSpec(
        f"matrix:{op}", "matrix_op", "matrix_op(m: list[list[int]]) -> list",
        f"m is a rectangular matrix given as a non-empty list of equal-length non-empty rows. Return {what}.",
        f"def matrix_op(m):\n    return {body}\n",
        "zip(*m) yields the columns of m; " + {"transpose": "they are the rows of the transpose.",
                                                "rotate_cw": "taking them from the reversed rows gives the clockwise rotation.",
                                                "rotate_ccw": "listed in reverse order they give the counter-clockwise rotation.",
                                                "row_sums": "but here each row is simply summed."}[op],
        lambda r: [(lambda w: [[r.randint(0, 9) for _ in range(w)] for _ in range(r.randint(1, 4))])(r.randint(1, 4))],
        (([[1]],),))


# -- difficulty 5 -----------------------------------------------------------------------

def edit_distance(rng: random.Random) -> FunctionSpec:
    ins, dele, sub = rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 3)
    return FunctionSpec(
        f"edit_distance:{ins}:{dele}:{sub}", "edit_cost", "edit_cost(a: str, b: str) -> int",
        f"Return the minimum total cost of turning a into b when inserting a character costs {ins}, deleting one "
        f"costs {dele} and replacing one by a different character costs {sub}.",
        "def edit_cost(a, b):\n    prev = [j * " + str(ins) + " for j in range(len(b) + 1)]\n    for i in range(1, len(a) + 1):\n"
        f"        cur = [i * {dele}] + [0] * len(b)\n        for j in range(1, len(b) + 1):\n"
        f"            same = prev[j - 1] + (0 if a[i - 1] == b[j - 1] else {sub})\n"
        f"            cur[j] = min(same, prev[j] + {dele}, cur[j - 1] + {ins})\n        prev = cur\n    return prev[-1]\n",
        "Dynamic programming over prefixes: cost[i][j] for a[:i] -> b[:j] is the cheapest of replacing/keeping the "
        "last character, deleting a[i-1], or inserting b[j-1]; only the previous row is needed.",
        lambda r: [_word(r, 0, 7, "abc"), _word(r, 0, 7, "abc")], (("", ""), ("", "ab"), ("ab", "")))


def coin_change(rng: random.Random) -> FunctionSpec:
    coins = sorted(rng.sample([1, 2, 3, 4, 5, 6, 7, 9, 10, 12, 15, 25], rng.randint(2, 4)))
    return FunctionSpec(
        f"coin_change:{','.join(map(str, coins))}", "min_coins", "min_coins(amount: int) -> int",
        f"Coins have values {coins} (unlimited supply of each). Return the fewest coins that add up to exactly "
        "amount (amount >= 0), or -1 if it cannot be done.",
        f"def min_coins(amount):\n    coins = {coins!r}\n    inf = float('inf')\n    best = [0] + [inf] * amount\n"
        "    for v in range(1, amount + 1):\n        for c in coins:\n            if c <= v and best[v - c] + 1 < best[v]:\n"
        "                best[v] = best[v - c] + 1\n    return -1 if best[amount] == inf else best[amount]\n",
        "Greedy fails for some coin sets, so use dynamic programming: best[v] is one more than the best of "
        "best[v - c] over the coins c <= v; unreachable amounts stay infinite and give -1.",
        lambda r: [r.randint(0, 60)], ((0,), (1,)))


def lis(rng: random.Random) -> FunctionSpec:
    strict = rng.random() < 0.5
    return FunctionSpec(
        f"lis:{'strict' if strict else 'nondecreasing'}", "lis", "lis(xs: list[int]) -> int",
        f"Return the length of the longest subsequence of xs (not necessarily contiguous) that is "
        f"{'strictly increasing' if strict else 'non-decreasing'}.",
        f"def lis(xs):\n    import bisect\n    tails = []\n    for x in xs:\n"
        f"        i = bisect.{'bisect_left' if strict else 'bisect_right'}(tails, x)\n"
        "        if i == len(tails):\n            tails.append(x)\n        else:\n            tails[i] = x\n    return len(tails)\n",
        "Keep tails[i] = the smallest possible last element of a qualifying subsequence of length i+1; each x "
        f"replaces the first tail it can follow (found by {'bisect_left' if strict else 'bisect_right'}) or extends the list.",
        lambda r: [_ints(r, 0, 15, 0, 9)], (([],), ([2, 2, 2],)))


def islands(rng: random.Random) -> FunctionSpec:
    diag = rng.random() < 0.5
    steps = "[(1,0),(-1,0),(0,1),(0,-1),(1,1),(1,-1),(-1,1),(-1,-1)]" if diag else "[(1,0),(-1,0),(0,1),(0,-1)]"
    return FunctionSpec(
        f"islands:{'8' if diag else '4'}", "islands", "islands(grid: list[str]) -> int",
        "grid is a list of equal-length strings of '#' (land) and '.' (water). Count the islands: groups of land "
        f"cells connected {'horizontally, vertically or diagonally' if diag else 'horizontally or vertically'}.",
        "def islands(grid):\n    h = len(grid)\n    w = len(grid[0]) if h else 0\n    seen = set()\n    count = 0\n"
        "    for r in range(h):\n        for c in range(w):\n            if grid[r][c] != '#' or (r, c) in seen:\n"
        "                continue\n            count += 1\n            stack = [(r, c)]\n            seen.add((r, c))\n"
        f"            while stack:\n                y, x = stack.pop()\n                for dy, dx in {steps}:\n"
        "                    ny, nx = y + dy, x + dx\n                    if 0 <= ny < h and 0 <= nx < w and grid[ny][nx] == '#' "
        "and (ny, nx) not in seen:\n                        seen.add((ny, nx))\n                        stack.append((ny, nx))\n"
        "    return count\n",
        "Scan the cells; each unvisited land cell starts a new island, which an explicit-stack flood fill marks "
        "completely (no recursion, so large islands cannot overflow the stack).",
        lambda r: [(lambda w: ["".join(r.choice("#..") for _ in range(w)) for _ in range(r.randint(1, 6))])(r.randint(1, 6))],
        (([],), (["."],), (["#"],)))


def stairs(rng: random.Random) -> FunctionSpec:
    steps = sorted(rng.sample([1, 2, 3, 4, 5], rng.randint(2, 3)))
    return FunctionSpec(
        f"stairs:{','.join(map(str, steps))}", "climb", "climb(n: int) -> int",
        f"You climb a staircase of n steps, each move going up by one of {steps} steps. Return the number of "
        "different move sequences that reach exactly step n (1 for n = 0).",
        f"def climb(n):\n    ways = [1] + [0] * n\n    for v in range(1, n + 1):\n"
        f"        ways[v] = sum(ways[v - s] for s in {steps!r} if s <= v)\n    return ways[n]\n",
        "ways[v] counts sequences ending at v: the last move came from v - s for some allowed s, so add those up "
        "from the bottom.",
        lambda r: [r.randint(0, 40)], ((0,), (1,)))


CATALOG: dict[int, tuple[Callable[[random.Random], FunctionSpec], ...]] = {
    1: (sum_divisible, count_letter, affine_map, clamp, count_prefix),
    2: (rotate, dedupe, run_length, title_long_words, chunk, caesar, every_nth, replace_letter, filter_length),
    3: (recurrence, digital_root, balanced, kth_largest, to_base, lcm_gcd, count_divisible),
    4: (pairs_mod, most_frequent, runs, window_sum, subarray_target, two_sum, intervals, matrix),
    5: (edit_distance, coin_change, lis, islands, stairs),
}
