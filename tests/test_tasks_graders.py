"""Graders: equivalent answers accepted, wrong answers and reward hacks rejected."""
from fractions import Fraction

import pytest

from r1.tasks import get_task
from r1.tasks.base import Problem
from r1.tasks.extract import boxed_contents, extract_answer, parse_completion
from r1.tasks.numbers import parse_number, single_number

arithmetic = get_task("arithmetic")
countdown = get_task("countdown")
equations = get_task("equations")
letters = get_task("letters")
sorting = get_task("sorting")


def arith(answer: str) -> Problem:
    return Problem("arithmetic", "What is 1000 + 234?", answer, {"op": "add", "a": 1000, "b": 234})


# ---- numbers ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("0.5", Fraction(1, 2)), ("1/2", Fraction(1, 2)), ("\\frac{1}{2}", Fraction(1, 2)), ("\\dfrac12", Fraction(1, 2)),
    ("-\\frac{3}{4}", Fraction(-3, 4)), ("\\frac{-3}{4}", Fraction(-3, 4)), ("$-0.75$", Fraction(-3, 4)),
    ("1,234", 1234), ("1,234,567.5", Fraction(2469135, 2)), ("1\\,234", 1234), ("1\u202f234", 1234),
    ("  42 ", 42), ("42.", 42), ("42.000", 42), ("(-3)", -3), ("\u2212" + "3", -3),
    (".5", Fraction(1, 2)), ("\\text{42}", 42),
])
def test_parse_number_accepts_equivalent_forms(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["", "1,2", "1,23", "12,3456", "3 or 4", "3, 4", "1/0", "\\frac{1}{0}", "x",
                                  "2+2", "1e3", "0x10", "NaN", "inf"])
def test_parse_number_rejects_non_numbers(text):
    assert parse_number(text) is None


def test_single_number_reads_one_number_from_a_sentence_but_not_several():
    assert single_number("The answer is 1,234.") == 1234
    assert single_number("So there are 3 r's.") == 3
    assert single_number("It is 3 or 4") is None  # two candidates
    assert single_number("3, 4") is None
    assert single_number("1,2") is None
    assert single_number("5-3 = 2") is None  # working, not an answer
    assert single_number("no number here") is None
    assert single_number("7 and again 7") == 7  # repeating the same value is one answer


# ---- extraction ---------------------------------------------------------------------------

def test_extracts_from_answer_tags_and_after_think():
    assert extract_answer("reasoning</think> <answer>42</answer>") == "42"
    assert extract_answer("<think>r</think><answer> 42 </answer>", think_in_prompt=False) == "42"
    assert extract_answer("reasoning</think>\n\nThe answer is \\boxed{42}.") == "42"
    assert extract_answer("reasoning</think>\n42") == "42"
    # \boxed preferred inside the answer region; nested braces survive
    assert extract_answer("r</think><answer>so \\boxed{\\frac{1}{2}}</answer>") == "\\frac{1}{2}"
    assert boxed_contents("\\boxed{a{b}c} and \\boxed {d}") == ["a{b}c", "d"]


@pytest.mark.parametrize("text", [
    "reasoning</think> <answer></answer>",  # empty answer
    "reasoning</think> <answer>   </answer>",
    "reasoning</think> <answer>3</answer> <answer>4</answer>",  # two answers
    "reasoning</think> \\boxed{3} or maybe \\boxed{4}",  # two different boxed candidates
    "reasoning</think> \\boxed{}",
    "reasoning with \\boxed{42} but thinking never ends",  # the reasoning is not an answer
    "reasoning</think> <answer>42",  # unclosed answer tag
    "reasoning</think>   ",
])
def test_extraction_rejects_missing_empty_and_multiple_answers(text):
    assert extract_answer(text) is None


def test_parse_completion_splits_reasoning_and_response():
    p = parse_completion("I think.\n</think>\nDone: \\boxed{7}")
    assert p.reasoning == "I think." and p.answer == "7" and "Done" in p.response
    same_box_twice = extract_answer("r</think>\\boxed{7}, i.e. \\boxed{ 7 }")
    assert same_box_twice == "7"


# ---- arithmetic / equations / letters ------------------------------------------------------

@pytest.mark.parametrize("ans", ["1234", "1,234", " 1234 ", "1234.0", "$1234$", "\\boxed{1234}"[7:-1],
                                 "The answer is 1,234.", "1\\,234"])
def test_arithmetic_accepts_equivalent_answers(ans):
    assert arithmetic.grade(ans, arith("1234"))


@pytest.mark.parametrize("ans", ["1235", "", "1234 or 1235", "1233, 1234", "1000 + 234 = 1234", "12345",
                                 "1,2,3,4", "print(1000 + 234)"])
def test_arithmetic_rejects_wrong_and_hedged_answers(ans):
    assert not arithmetic.grade(ans, arith("1234"))


def test_equations_accept_fractions_decimals_and_x_equals():
    p = Problem("equations", "Solve for x: 2x = 1", "1/2", {"equation": "2x = 1"})
    for ans in ["1/2", "0.5", "\\frac{1}{2}", "x = 0.5", "x=\\frac{1}{2}", "$x = 1/2$", ".5"]:
        assert equations.grade(ans, p), ans
    for ans in ["2", "0.49", "x = 1/2 or x = 2", "x = 1, 2", ""]:
        assert not equations.grade(ans, p), ans
    assert equations.answer_key("0.5", p) == equations.answer_key("x = \\frac{1}{2}", p) == "1/2"


def test_letters_accepts_digits_and_words():
    p = letters.generate(0)
    p = Problem("letters", "How many r in strawberry?", "3", {"text": "strawberry", "letter": "r"})
    for ans in ["3", "three", "Three.", "There are 3 r's in strawberry.", "\\text{3}"]:
        assert letters.grade(ans, p), ans
    for ans in ["2", "2 or 3", "two", ""]:
        assert not letters.grade(ans, p), ans


# ---- countdown -----------------------------------------------------------------------------

CD = Problem("countdown", "Reach 56 with [3, 5, 7]", "(3 + 5) * 7", {"numbers": [3, 5, 7], "target": 56})


@pytest.mark.parametrize("ans", ["(3 + 5) * 7", "7*(5+3)", "(5+3)*7", "7 × (3 + 5)", "7 \\times (3+5)",
                                 "[3+5]*7", "(3+5)*7 = 56", "56 = 7*(3+5)", "  ( 3+5 ) *7  ."])
def test_countdown_accepts_any_valid_expression(ans):
    assert countdown.grade(ans, CD), ans


def test_countdown_uses_exact_fractions():
    p = Problem("countdown", "q", "x", {"numbers": [2, 2, 7], "target": 7})
    assert countdown.grade("7 / 2 * 2", p)  # 7/2 is exact, not rounded
    assert not countdown.grade("7 / 2 * 2 * 2", p)  # a third 2 is not given
    p = Problem("countdown", "q", "x", {"numbers": [1, 3, 4, 6], "target": 24})
    assert countdown.grade("6 / (1 - 3/4)", p)  # needs a fractional intermediate
    assert not countdown.grade("6 / (1 - 3/3)", p)  # 3 only given once (and would divide by zero)


@pytest.mark.parametrize("ans,why", [
    ("", "empty"),
    ("56", "uses a number not given"),
    ("8 * 7", "8 is not given"),
    ("(3 + 5) * 7 * 1", "1 is not given"),
    ("(3 + 3) * 7", "3 used twice"),
    ("35 + 21", "numbers not given"),
    ("3 + 5 + 7", "wrong value"),
    ("(3 + 5) * 7 or 3 * 5 * 7", "two candidates"),
    ("3 + 5 = 8, 8 * 7 = 56", "chain of steps"),
    ("__import__('os').system('echo 56')", "code"),
    ("eval('56')", "code"),
    ("print((3+5)*7)", "code"),
    ("(lambda: 56)()", "code"),
    ("7 ** 2 + 7", "power not allowed"),
    ("-(-56)", "unary minus / not given"),
    ("5 / 0 + 56", "division by zero"),
    ("(" * 200 + "3" + ")" * 200, "nesting / length"),
    ("(3 + 5) * 7 = 55", "claims another target"),
    ("3.0 + 5", "decimals are not the given numbers"),
])
def test_countdown_rejects_wrong_answers_and_hacks(ans, why):
    assert not countdown.grade(ans, CD), why


def test_countdown_never_calls_eval(monkeypatch):
    import builtins

    def boom(*a, **k):
        raise AssertionError("eval must not be used")
    monkeypatch.setattr(builtins, "eval", boom)
    monkeypatch.setattr(builtins, "exec", boom)
    assert countdown.grade("(3 + 5) * 7", CD)
    assert not countdown.grade("__import__('os')", CD)


def test_countdown_votes_all_valid_expressions_together():
    assert countdown.answer_key("(3+5)*7", CD) == countdown.answer_key("7*(5+3)", CD)
    assert countdown.answer_key("3+5+7", CD) != countdown.answer_key("7*(5+3)", CD)
    assert countdown.answer_key("import os", CD) is None


# ---- sorting -------------------------------------------------------------------------------

def test_sorting_accepts_list_spellings_and_rejects_wrong_orders():
    p = Problem("sorting", "Sort", "2, 10, 33.5", {"kind": "numbers", "items": ["10", "2", "33.5"], "descending": False})
    for ans in ["2, 10, 33.5", "2,10,33.50", "[2, 10, 33.5]", "2 < 10 < 33.5", "2 10 33.5", "2, 10, and 33.5"]:
        assert sorting.grade(ans, p), ans
    for ans in ["10, 2, 33.5", "2, 10", "2, 10, 33.5, 40", "2, 10, 33.5 or 33.5, 10, 2", "", "2, 10, 33"]:
        assert not sorting.grade(ans, p), ans
    w = Problem("sorting", "Sort", "apple, Banana, cherry", {"kind": "words", "items": []})
    assert sorting.grade("Apple, banana, 'cherry'", w)
    assert not sorting.grade("banana, apple, cherry", w)


# ---- math (JSONL, math-verify) -------------------------------------------------------------

def test_math_grader_uses_math_verify_equivalence():
    math = get_task("math")

    def p(a):
        return Problem("math", "q", a, {"math_like": True})
    assert math.grade("0.5", p("\\frac{1}{2}"))
    assert math.grade("\\frac{1}{2}", p("0.5"))
    assert math.grade("1,234", p("1234"))
    assert math.grade("\\frac{\\sqrt 3}2", p("\\frac{\\sqrt{3}}{2}"))
    assert math.grade("x = 4", p("4"))
    assert math.grade("B", p("\\text{(B)}"))
    assert not math.grade("(C)", p("\\text{(B)}"))
    assert not math.grade("5", p("4"))
    assert not math.grade("", p("4"))
    # several candidates are not an answer, even when one of them is right
    assert not math.grade("3 or 4", p("4"))
    assert not math.grade("4 or 3", p("4"))
    assert not math.grade("3; 4", p("4"))
    assert not math.grade("3, 4, 5", p("4"))
    assert not math.grade("3 \\lor 4", p("4"))
    assert math.answer_key("0.5", p("1")) == math.answer_key("\\frac{1}{2}", p("1"))
