"""Task generators: deterministic per seed, disjoint train/test splits, difficulty knobs, traces."""
import dataclasses

import pytest

from r1.tasks import GENERATED, TASKS, generate_many, get_task, split_of
from r1.tasks.base import MAX_DRAWS, Problem, TaskFamily
from r1.tasks.extract import extract_answer
from r1.tasks.prompting import (MATH_INSTRUCTION, r1_zero_prompt, sft_completion, user_message)

FAMILIES = [get_task(name) for name in GENERATED]


def test_registry_lists_every_family_and_they_follow_the_protocol():
    assert set(GENERATED) <= set(TASKS)
    for fam in FAMILIES:
        assert isinstance(fam, TaskFamily), fam.NAME
        assert TASKS[fam.NAME] == fam.__name__
    with pytest.raises(KeyError, match="known tasks"):
        get_task("no-such-task")


@pytest.mark.parametrize("fam", FAMILIES, ids=GENERATED)
def test_deterministic_per_seed(fam):
    for d in range(1, fam.MAX_DIFFICULTY + 1):
        for split in ("train", "test"):
            a = [fam.generate(s, split, d) for s in range(30)]
            b = [fam.generate(s, split, d) for s in reversed(range(30))][::-1]  # order of requests must not matter
            assert a == b
            assert len({p.id for p in a}) > 1, "different seeds should give different problems"


@pytest.mark.parametrize("fam", FAMILIES, ids=GENERATED)
def test_split_assignment_is_a_function_of_content(fam):
    for d in range(1, fam.MAX_DIFFICULTY + 1):
        for split in ("train", "test"):
            for s in range(40):
                p = fam.generate(s, split, d)
                # letters keys its split on the text (held-out words); everyone else on the id
                key = p.id.split("|", 1)[1] if fam.NAME == "letters" else p.id
                # a family may split in another's namespace (mixed_arithmetic in arithmetic's)
                assert split_of(getattr(fam, "SPLIT_NAMESPACE", fam.NAME), key) == split


def test_train_and_test_never_overlap_on_100k_samples():
    # 100k arithmetic problems across both splits and every difficulty, plus every other family.
    train, test = set(), set()
    fam = get_task("arithmetic")
    for s in range(10_000):
        for d in range(1, 6):
            train.add(fam.generate(s, "train", d).prompt)
            test.add(fam.generate(s, "test", d).prompt)
    assert len(train) > 30_000 and len(test) > 30_000  # a real sample, not a handful of repeats
    assert not train & test
    for fam in FAMILIES[1:]:
        levels = range(1, fam.MAX_DIFFICULTY + 1)
        tr = {fam.generate(s, "train", d).prompt for s in range(400) for d in levels}
        te = {fam.generate(s, "test", d).prompt for s in range(400) for d in levels}
        assert tr and te and not tr & te, fam.NAME


def test_mixed_arithmetic_test_problems_are_never_arithmetic_train_problems():
    """The two families share one split: a chat-range test problem (e.g. 47 + 38) is not a train
    problem of the curriculum family, in either order."""
    mixed, arith = get_task("mixed_arithmetic"), get_task("arithmetic")
    test = {p.id for p in (mixed.generate(s, "test") for s in range(4000))}
    train = {arith.generate(s, "train", d).id for s in range(6000) for d in (1, 2)}
    both = {p.id for p in (mixed.generate(s, "train") for s in range(4000))}
    assert len(test) > 1000 and not test & train and not test & both
    assert test & {arith.generate(s, "test", d).id for s in range(6000) for d in (1, 2)}  # it can overlap test


def test_commutative_arithmetic_cannot_leak_across_splits():
    # "a + b" in train and "b + a" in test would be the same problem; the split key is order-free.
    fam = get_task("arithmetic")
    train = [fam.generate(s, "train", 1) for s in range(12_000)]
    test = {fam.generate(s, "test", 1).prompt for s in range(3_000)}
    swapped = {f"What is {p.meta['b']} {'+' if p.meta['op'] == 'add' else '*'} {p.meta['a']}?"
               for p in train if p.meta["op"] in ("add", "mul") and p.meta["a"] != p.meta["b"]}
    assert len(swapped) > 2_000
    assert not swapped & test


def test_letters_test_words_are_unseen_in_training():
    fam = get_task("letters")
    for d in (1, 2):
        train_texts = {fam.generate(s, "train", d).meta["text"] for s in range(3000)}
        test_texts = {fam.generate(s, "test", d).meta["text"] for s in range(300)}
        assert test_texts and not train_texts & test_texts


@pytest.mark.parametrize("fam", FAMILIES, ids=GENERATED)
def test_bad_arguments_are_rejected_with_a_clear_message(fam):
    with pytest.raises(ValueError, match="split"):
        fam.generate(0, "validation")
    with pytest.raises(ValueError, match="difficulty"):
        fam.generate(0, "train", fam.MAX_DIFFICULTY + 1)
    with pytest.raises(ValueError, match="difficulty"):
        fam.generate(0, "train", 0)


def test_difficulty_makes_problems_harder():
    ar = get_task("arithmetic")
    assert max(len(ar.generate(s, "train", 1).answer) for s in range(50)) <= 4
    assert min(len(ar.generate(s, "train", 5).answer.lstrip("-")) for s in range(50)) >= 5
    cd = get_task("countdown")
    assert [len(cd.generate(0, "train", d).meta["numbers"]) for d in range(1, 6)] == [3, 4, 5, 6, 7]
    so = get_task("sorting")
    assert {so.generate(s, "train", 1).meta["kind"] for s in range(50)} == {"numbers"}
    assert "people" in {so.generate(s, "train", 5).meta["kind"] for s in range(100)}
    eq = get_task("equations")
    assert all("/" not in eq.generate(s, "train", 1).answer for s in range(100))
    assert any("/" in eq.generate(s, "train", 4).answer for s in range(100))


@pytest.mark.parametrize("fam", FAMILIES, ids=GENERATED)
def test_reference_answers_grade_correct_and_traces_reach_them(fam):
    for d in range(1, fam.MAX_DIFFICULTY + 1):
        for s in range(40):
            p = fam.generate(s, "train", d)
            assert isinstance(p, Problem) and p.task == fam.NAME
            assert fam.grade(p.answer, p), (p, "reference answer must pass its own grader")
            t = fam.trace(p)
            assert len(t.splitlines()) >= 2
            # the trace's last line states the answer (order-insensitive check for lists)
            last = t.strip().splitlines()[-1]
            assert all(part.strip() in last for part in p.answer.split(",")), (t, p.answer)


@pytest.mark.parametrize("style", ["chat", "r1_zero"])
@pytest.mark.parametrize("fam", FAMILIES, ids=GENERATED)
def test_sft_completion_is_graded_correct_through_the_extractor(fam, style):
    for s in range(10):
        p = fam.generate(s, "train", min(3, fam.MAX_DIFFICULTY))
        text = sft_completion(p, fam.trace(p), style=style)
        ans = extract_answer(text, think_in_prompt=True)
        assert ans is not None and fam.grade(ans, p), text


def test_prompts_follow_r1_usage_rules():
    ar, so = get_task("arithmetic").generate(0), get_task("sorting").generate(0)
    assert user_message(ar).endswith(MATH_INSTRUCTION)
    assert MATH_INSTRUCTION not in user_message(so)  # not math-like: no \boxed instruction
    z = r1_zero_prompt(ar)
    assert z.startswith("A conversation between User and Assistant") and z.endswith("Assistant: <think>")
    assert ar.prompt.rstrip("?") in z


def test_generate_many_is_unique_and_deterministic():
    fam = get_task("countdown")
    a = generate_many(fam, 50, seed=7, split="test", difficulty=2)
    assert len(a) == 50 and len({p.id for p in a}) == 50
    assert a == generate_many(fam, 50, seed=7, split="test", difficulty=2)
    # a tiny space returns what exists instead of looping forever
    few = generate_many(get_task("letters"), 500, seed=0, split="test", difficulty=1)
    assert 0 < len(few) < 500
    assert MAX_DRAWS >= 1000


def test_problem_validates_its_fields():
    with pytest.raises(ValueError, match="task"):
        Problem(task="", prompt="q", answer="1")
    with pytest.raises(ValueError, match="prompt"):
        Problem(task="t", prompt=" ", answer="1")
    with pytest.raises(TypeError, match="canonical text"):
        Problem(task="t", prompt="q", answer=1)
    p = Problem(task="arithmetic", prompt="What is 1 + 1?", answer="2", meta={"op": "add"}, id="x")
    assert Problem.from_columns(**p.to_columns()) == p


def test_mixed_arithmetic_covers_the_chat_range_and_its_traces_follow_the_operands():
    fam = get_task("mixed_arithmetic")
    ps = [fam.generate(s, "train") for s in range(3000)]
    subs = [p for p in ps if p.meta["op"] == "sub"]
    muls = [p for p in ps if p.meta["op"] == "mul"]
    assert any(int(p.answer) < 0 for p in subs) and any(int(p.answer) >= 0 for p in subs)
    assert {len(str(p.meta["a"])) for p in subs} == {1, 2, 3}
    assert all(min(p.meta["a"], p.meta["b"]) < 10 for p in muls)
    assert any(max(p.meta["a"], p.meta["b"]) >= 100 for p in muls) and any(p.meta["a"] < 10 for p in muls)
    p128 = next(p for p in muls if p.meta["a"] >= 100 and "0" not in str(p.meta["a"]))
    t = fam.trace(p128)
    assert f"I need to multiply {p128.meta['a']} by {p128.meta['b']}" in t and len(t.splitlines()) >= 6
    for p in ps[:300]:
        assert fam.operands_followed(fam.trace(p), p), fam.trace(p)
    wrong = dataclasses.replace(p128, meta={**p128.meta, "a": 12})
    assert not fam.operands_followed(fam.trace(p128), wrong)
