"""The synthetic code family: generation, splits, traces, extraction and sandboxed grading."""
from __future__ import annotations

import json

import pytest

from r1.sandbox import Verdict
from r1.tasks import code, generate_many, get_task, split_of
from r1.tasks.code_catalog import CATALOG
from r1.tasks.prompting import sft_completion


def test_registered_and_follows_the_family_api():
    fam = get_task("code")
    assert fam is code and fam.NAME == "code" and not fam.MATH_LIKE
    assert fam.MAX_DIFFICULTY == 5


@pytest.mark.parametrize("difficulty", range(1, 6))
@pytest.mark.parametrize("split", ["train", "test"])
def test_generate_is_deterministic_and_in_split(difficulty, split):
    a = code.generate(3, split, difficulty)
    b = code.generate(3, split, difficulty)
    assert a == b
    assert split_of("code", a.id) == split
    assert a.meta["difficulty"] == difficulty
    assert len(a.meta["tests"]) >= code.N_RANDOM_TESTS
    assert "```python" in a.prompt and a.meta["call"] in a.prompt


def test_train_and_test_are_disjoint():
    train = {p.id for d in (2, 4) for p in generate_many(code, 40, seed=0, split="train", difficulty=d)}
    test = {p.id for d in (2, 4) for p in generate_many(code, 40, seed=0, split="test", difficulty=d)}
    assert train and test and not train & test


def test_tests_depend_on_the_problem_not_the_seed():
    by_id: dict[str, list] = {}
    for p in generate_many(code, 30, seed=0, split="train", difficulty=2, unique=False):
        by_id.setdefault(p.id, []).append(p.meta["tests"])
    repeated = [ts for ts in by_id.values() if len(ts) > 1]
    assert repeated, "expected some spec drawn twice in 30 seeds"
    assert all(t == ts[0] for ts in repeated for t in ts)


def test_examples_match_the_tests_and_are_json():
    p = code.generate(1, "train", 3)
    tests = {(t["input"], t["output"]) for t in p.meta["tests"]}
    for ex in p.meta["examples"]:
        assert (ex["input"], ex["output"]) in tests
        assert isinstance(json.loads(ex["input"]), list)


def test_every_template_reference_passes_in_the_sandbox():
    # One problem per catalogue template (all 5 levels): the reference must pass its own
    # hidden tests when run exactly as a model's answer would be.
    problems, seen = [], set()
    for d, templates in CATALOG.items():
        for seed in range(400):
            p = code.generate(seed, "train", d)
            if p.meta["template"] not in seen:
                seen.add(p.meta["template"])
                problems.append(p)
            if len(seen) >= sum(len(t) for t in list(CATALOG.values())[:d]):
                break
    assert len(problems) == sum(len(t) for t in CATALOG.values())
    results = code.grade_many([p.answer for p in problems], problems)
    bad = {p.id: r.counts() for p, r in zip(problems, results) if not r.all_passed}
    assert not bad


def test_wrong_and_broken_solutions_fail_with_verdicts():
    p = next(q for q in generate_many(code, 50, seed=0, difficulty=2) if q.meta["template"] == "rotate")
    wrong = "```python\ndef rotate(xs):\n    return xs\n```"
    crash = "```python\ndef rotate(xs):\n    return xs[10 ** 9]\n```"
    hang = "```python\ndef rotate(xs):\n    while True:\n        pass\n```"
    results = code.grade_many([wrong, crash, hang, "no code here", p.answer], [p] * 5)
    assert results[0].counts().get("wrong_answer", 0) > 0
    assert results[1].counts().get("runtime_error", 0) > 0
    assert results[2].cases[0].verdict is Verdict.TIME_LIMIT
    assert results[3] is None
    assert results[4].all_passed
    counts = code.verdict_counts(results)
    assert counts["no_code"] == 1 and counts["passed"] >= len(p.meta["tests"])
    assert not code.grade(wrong, p) and code.grade(p.answer, p)


@pytest.mark.parametrize("text, expected", [
    ("```python\nprint(1)\n```", "print(1)\n"),
    ("first\n```python\nx = 1\n```\nthen\n```py\nx = 2\n```\n", "x = 2\n"),  # the final block
    ("```\nbare = True\n```", "bare = True\n"),
    ("```python\nx = 1\n```\n```json\n{}\n```", "x = 1\n"),  # not a Python block
    ("```python\ndef f():\n    return '```'\n```", "def f():\n    return '```'\n"),  # fence inside a string
    ("```python\nprint('cut off", None),  # unterminated: truncated output cannot pass
    ("no fences at all", None),
    ("```python\n   \n```", None),
    (None, None),
])
def test_extract_code(text, expected):
    assert code.extract_code(text) == expected


def test_trace_is_a_worked_solution_for_sft():
    p = code.generate(5, "train", 4)
    t = code.trace(p)
    assert p.meta["approach"] in t and "example" in t and "Edge case" in t
    target = sft_completion(p, t)
    assert target.rstrip().endswith("```")
    assert code.grade(target.split("</think>", 1)[1], p)


def test_answer_key_groups_identical_programs():
    a = "```python\ndef f(x):\n    return x\n```"
    b = "```python\ndef f(x):\n        return x\n```"
    p = code.generate(0, "train", 1)
    assert code.answer_key(a, p) == code.answer_key(b, p)
    assert code.answer_key("nothing", p) is None


def test_problem_without_tests_is_a_clear_error():
    p = code.generate(0, "train", 1)
    bare = type(p)(task="code", prompt="x", answer="", meta={"call": "f"})
    with pytest.raises(ValueError, match="no tests"):
        code.job_for("def f(): pass", bare)


def test_eval_harness_scores_code_through_the_family_grader():
    # `r1 eval --task code` path: the harness's own loop with a scripted backend; problem i
    # gets its first i % 3 of k=2 samples right (a wrong function otherwise).
    from r1.eval.runner import EvalConfig, load_problems, run_eval

    cfg = EvalConfig(task="code", k=2, limit=4, difficulty=2, split="test")
    problems = load_problems(cfg)
    right = {p.prompt: (i % 3, p.answer) for i, p in enumerate(problems)}

    class Backend:
        def render(self, messages):
            return "".join(m["content"] for m in messages) + "<think>\n"

        def count_tokens(self, text):
            return len(text.split())

        def complete(self, prompts, n, temperature, top_p, max_tokens, seed):
            out = []
            for prompt in prompts:
                c, answer = next(v for q, v in right.items() if q in prompt)
                wrong = "```python\ndef nothing():\n    pass\n```"
                out.append([f"Plan.\n</think>\n\n{answer if j < c else wrong}" for j in range(n)])
            return out

    result = run_eval(Backend(), cfg)
    expected = sum(min(i % 3, 2) / 2 for i in range(len(problems))) / len(problems)
    assert result["metrics"]["pass@1"] == pytest.approx(expected)


def test_grade_all_batches_code_and_agrees_with_grade_one_at_a_time():
    from r1.tasks import grade_all

    probs = [code.generate(s, "train", 1) for s in range(3)] + [get_task("arithmetic").generate(0, "train", 1)]
    wrong = "```python\ndef f(*a):\n    return None\n```"
    answers = [probs[0].answer, wrong, None, probs[3].answer]
    assert grade_all(answers, probs) == [True, False, False, True]
    assert grade_all(answers, probs) == [a is not None and get_task(p.task).grade(a, p) for a, p in zip(answers, probs)]
    with pytest.raises(ValueError, match="3 answers for 4 problems"):
        grade_all(answers[:3], probs)
