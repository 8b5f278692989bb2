"""Training data from the families: curriculum, RL records, SFT records, pretraining text."""
import pytest

from r1.rewards import accuracy_reward, make_format_reward
from r1.tasks.datasets import Curriculum, pretraining_text, rl_records, sft_records
from r1.tasks.prompting import MATH_INSTRUCTION


def test_curriculum_rises_and_keeps_a_harder_split_out():
    c = Curriculum(start=1, end=3, held_out=4)
    assert [c.difficulty_at(x) for x in (0.0, 0.2, 0.34, 0.5, 0.7, 0.99, 1.0)] == [1, 1, 2, 2, 3, 3, 3]
    with pytest.raises(ValueError, match="held out"):
        Curriculum(start=1, end=4, held_out=4)
    with pytest.raises(ValueError, match="progress"):
        c.difficulty_at(1.5)
    recs = rl_records("arithmetic", 30, curriculum=c)
    assert [r["difficulty"] for r in recs] == sorted(r["difficulty"] for r in recs)
    assert {r["difficulty"] for r in recs} == {1, 2, 3}


@pytest.mark.parametrize("style", ["chat", "r1_zero"])
def test_sft_records_are_rewarded_as_correct_and_well_formed(style):
    for task in ("arithmetic", "countdown", "equations", "letters", "sorting"):
        recs = sft_records(task, 6, seed=3, difficulty=2, style=style)
        cols = {k: [r[k] for r in recs] for k in ("task", "answer", "meta", "question")}
        completions = [r["completion"] for r in recs]
        prompts = [r["prompt"] for r in recs]
        assert accuracy_reward(prompts, completions, **cols) == [1.0] * 6, task
        assert make_format_reward(style)(prompts, completions) == [1.0] * 6, task


def test_rl_records_carry_prompt_and_grading_columns():
    r = rl_records("equations", 2, seed=1, split="test", difficulty=4)[0]
    assert r["prompt"].endswith(MATH_INSTRUCTION) and r["task"] == "equations" and r["meta"]["equation"]
    z = rl_records("equations", 1, style="r1_zero")[0]
    assert z["prompt"].startswith("A conversation between User and Assistant")
    with pytest.raises(ValueError, match="difficulties"):
        rl_records("arithmetic", 2, curriculum=Curriculum(start=5, end=6, held_out=7))


def test_pretraining_text_uses_only_the_train_split():
    texts = list(pretraining_text(["arithmetic", "letters"], 20, seed=0))
    assert len(texts) == 40 and all(t.startswith("Question: ") and "\nAnswer: " in t for t in texts)
    from r1.tasks import get_task
    test_prompts = {get_task("arithmetic").generate(s, "test", d).prompt for s in range(200) for d in (1, 2, 3)}
    assert not any(t.split("\n")[0][len("Question: "):] in test_prompts for t in texts)
