"""The chat training data and its eval: multi-turn records, the no-thinking mode, off-domain turns."""
import random

import pytest

from r1.chat.r1_template import THINK_CLOSE
from r1.eval.runner import EvalConfig, render_prompt, run_eval
from r1.serve.prompting import render_chat
from r1.tasks import get_task
from r1.tasks.base import split_of
from r1.tasks.conversation import ChatMix, conversation_records, in_conversation
from r1.train.sft import render_example
from serve_helpers import r1_tokenizer
from test_eval_harness import ScriptedBackend

chitchat = get_task("chitchat")


def test_conversation_records_mix_turns_modes_and_chitchat_from_the_train_split():
    recs = conversation_records(400, seed=3)
    assert {len(r["messages"]) for r in recs} == {2, 4, 6}
    no_think = [r for r in recs if not r["thinking"]]
    assert 0.04 < len(no_think) / len(recs) < 0.2
    assert 0.1 < sum(r["task"] == "chitchat" for r in recs) / len(recs) < 0.35
    for r in recs:
        for m in r["messages"][1:-1:2]:  # earlier assistant turns: the short reply only, no reasoning
            assert m["role"] == "assistant" and THINK_CLOSE not in m["content"]
        last = r["messages"][-1]["content"]
        if r["task"] == "mixed_arithmetic":
            assert split_of("arithmetic", r["problem_id"]) == "train"
            assert (THINK_CLOSE in last) == r["thinking"] and last.endswith(f"\\boxed{{{r['answer']}}}.")
    assert conversation_records(50, seed=3) == recs[:50]  # deterministic per seed


def test_no_thinking_records_train_on_the_prompt_the_server_renders():
    """SFT's no-thinking prompt is byte for byte what `thinking: disabled` renders, so the mode the
    model learns is the mode the API switch asks for."""
    tok = r1_tokenizer()
    rec = next(r for r in conversation_records(200, seed=1) if not r["thinking"] and len(r["messages"]) > 2)
    (ids, mask), = render_example(tok, rec)
    prompt_ids = [i for i, m in zip(ids, mask) if not m]
    served = render_chat(tok, rec["messages"][:-1], thinking=False)
    assert prompt_ids == served.ids
    assert tok.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=True) == rec["messages"][-1]["content"]
    thinking = dict(rec, thinking=True)  # the same record in thinking mode keeps the think block open
    (ids2, mask2), = render_example(tok, thinking)
    assert [i for i, m in zip(ids2, mask2) if not m] == render_chat(tok, rec["messages"][:-1]).ids


def test_chitchat_is_graded_on_words_and_splits_by_line():
    p = chitchat.generate(0, "test")
    assert chitchat.grade("Hello! Ask me an arithmetic question.", p)
    for bad in ("662", "-5", "", "ok"):
        assert not chitchat.grade(bad, p), bad
    tr = {chitchat.generate(s, "train").id for s in range(2000)}
    te = {chitchat.generate(s, "test").id for s in range(2000)}
    assert len(te) >= 10 and not tr & te


def _chat_problems(n=6):
    rng = random.Random(0)
    fam = get_task("mixed_arithmetic")
    return [in_conversation(fam.generate(s, "test"), rng, 3, s) for s in range(n)]


def test_a_chat_eval_renders_the_history_and_grades_the_last_turn():
    probs = _chat_problems()
    backend = ScriptedBackend(probs, lambda p, j: "x</think>\n\\boxed{" + p.answer + "}")
    cfg = EvalConfig(task="mixed_arithmetic", k=1, limit=len(probs), temperature=0.0)
    prompt = render_prompt(probs[0], cfg, backend)
    hist = probs[0].meta["history"]
    assert len(hist) == 4 and all(m["content"] in prompt for m in hist)
    assert prompt.index(hist[-1]["content"]) < prompt.index(probs[0].prompt)
    assert "Please reason step by step" not in prompt.split(hist[-1]["content"])[-1]  # asked as people do
    assert run_eval(backend, cfg, problems=probs)["metrics"]["pass@1"] == 1.0


@pytest.mark.parametrize("misread", [False, True])
def test_reasoning_about_other_numbers_is_counted_apart(misread):
    probs = _chat_problems()

    def script(p, j):
        a, b = (p.meta["a"] // 10 + 1, p.meta["b"] * 10 + 3) if misread else (p.meta["a"], p.meta["b"])
        return f"I need to work out {a} and {b}.\n</think>\n\\boxed{{{p.answer}}}"
    m = run_eval(ScriptedBackend(probs, script), EvalConfig(task="mixed_arithmetic", k=1, limit=6),
                 problems=probs)["metrics"]
    assert m["misread_rate"] == (1.0 if misread else 0.0)


def test_the_no_thinking_eval_closes_the_block_and_catches_a_leak():
    import dataclasses

    fam = get_task("mixed_arithmetic")
    probs = [dataclasses.replace(p, meta={**p.meta, "thinking": False}) for p in
             (fam.generate(s, "test") for s in range(4))]
    tpl_backend = ScriptedBackend(probs, lambda p, j: "", gen_prompt="<|assistant|><think>\n")
    cfg = EvalConfig(task="mixed_arithmetic", k=1, limit=4)
    assert render_prompt(probs[0], cfg, tpl_backend).endswith("<think>\n</think>\n\n")
    direct = lambda p, j: f"The answer is \\boxed{{{p.answer}}}."  # noqa: E731
    leaky = lambda p, j: f"I add.\n</think>\n\nThe answer is \\boxed{{{p.answer}}}."  # noqa: E731
    ok = run_eval(ScriptedBackend(probs, direct, "<|assistant|><think>\n"), cfg, problems=probs)["metrics"]
    bad = run_eval(ScriptedBackend(probs, leaky, "<|assistant|><think>\n"), cfg, problems=probs)["metrics"]
    assert ok["pass@1"] == 1.0 and ok["leak_rate"] == 0.0
    assert bad["leak_rate"] == 1.0


def test_chat_mix_validates_its_shares():
    with pytest.raises(ValueError, match="p_no_think"):
        ChatMix(p_no_think=1.5)
    with pytest.raises(KeyError, match="unknown task"):
        ChatMix(tasks=("arithmetc",))
