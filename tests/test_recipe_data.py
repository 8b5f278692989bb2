"""Data of the recipe: paraphrased questions keep their grader, the base corpus mixes reasoned and
direct transcripts as configured, rejection sampling drops samples for the first rule they break."""
from __future__ import annotations

import pytest

from r1.tasks import get_task
from r1.tasks.datasets import base_corpus, rl_records
from r1.tasks.phrasing import TEMPLATES, num_phrasings, rephrase
from r1.train.rejection import RejectionConfig, verdict


@pytest.mark.parametrize("task", sorted(TEMPLATES))
def test_every_phrasing_keeps_answer_and_split(task):
    fam = get_task(task)
    for seed in range(6):
        p = fam.generate(seed, "test", 1)
        for v in range(num_phrasings(task)):
            q = rephrase(p, v)
            assert q.answer == p.answer and q.meta == p.meta and q.id == p.id
            assert fam.grade(p.answer, q)
            if task == "arithmetic":
                assert str(p.meta["a"]) in q.prompt and str(p.meta["b"]) in q.prompt
    with pytest.raises(ValueError, match="phrasings 0.."):
        rephrase(fam.generate(0, "train", 1), 99)


def test_rl_records_phrasing_and_instruction_shares():
    recs = rl_records("arithmetic", 200, p_canonical=0.0, instruction_share=0.0)
    assert not any(r["prompt"].startswith("What is") and "?" in r["prompt"] and r["prompt"] == r["question"]
                   and r["prompt"].endswith("?") and "\\boxed" in r["prompt"] for r in recs)
    assert all("\\boxed" not in r["prompt"] for r in recs)
    canon = rl_records("arithmetic", 50)
    assert all(r["prompt"].startswith("What is") and "\\boxed" in r["prompt"] for r in canon)


def test_base_corpus_worked_share():
    docs = list(base_corpus(["arithmetic"], 400, seed=3, worked_share=0.35))
    reasoned = sum("<think>\n</think>" not in d for d in docs)
    assert 0.28 < reasoned / len(docs) < 0.42
    assert all(d.rstrip().endswith("</answer>") and "Assistant: <think>" in d for d in docs)
    assert all("<think>\n</think>" in d for d in base_corpus(["letters"], 20, worked_share=0.0))


def _sample(**kw):
    s = {"finish_reason": "stop", "correct": True, "formatted": True, "language_consistent": True,
         "text": "add the ones, then the tens\n</think>\n\n42"}
    s.update(kw)
    return s


def test_rejection_verdicts_in_order():
    cfg = RejectionConfig(model="m", keep_per_prompt=1)
    assert verdict(_sample(finish_reason="length", correct=False), set(), 0, cfg) == "truncated"
    assert verdict(_sample(correct=False, formatted=False), set(), 0, cfg) == "wrong"
    assert verdict(_sample(formatted=False), set(), 0, cfg) == "format"
    assert verdict(_sample(language_consistent=False), set(), 0, cfg) == "language"
    loop = " ".join(["carry the one"] * 20)
    assert verdict(_sample(text=f"{loop}\n</think>\n\n42"), set(), 0, cfg) == "repetitive"
    assert verdict(_sample(), {"add the ones, then the tens"}, 0, cfg) == "duplicate"
    assert verdict(_sample(), set(), 1, cfg) == "surplus"
    assert verdict(_sample(), set(), 0, cfg) is None
