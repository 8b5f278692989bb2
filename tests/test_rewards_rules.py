"""Rule-based rewards in TRL's calling convention."""
import pytest

from r1.rewards import (OverlongConfig, WeightedReward, accuracy_reward, combine, format_reward,
                        language_consistency_reward, make_accuracy_reward, make_format_reward,
                        make_language_reward, make_repetition_penalty, make_soft_overlong_reward,
                        make_tag_count_reward, soft_overlong_penalty, tag_count_reward)
from r1.tasks import get_task

AR = get_task("arithmetic")


def columns(problems):
    cols = [p.to_columns() for p in problems]
    return {k: [c[k] for c in cols] for k in cols[0]}


def test_accuracy_reward_calls_the_task_grader_for_every_family():
    problems = [get_task(n).generate(s, "train", 2) for n in ("arithmetic", "countdown", "equations", "letters", "sorting")
                for s in range(3)]
    right = [f"thinking...</think>\n\\boxed{{{p.answer}}}" for p in problems]
    wrong = ["thinking...</think>\n\\boxed{nope}" for _ in problems]
    prompts = [p.prompt for p in problems]
    assert accuracy_reward(prompts, right, **columns(problems)) == [1.0] * len(problems)
    assert accuracy_reward(prompts, wrong, **columns(problems)) == [0.0] * len(problems)
    # the same from a column of Problem objects, and from TRL's conversational completions
    conv = [[{"role": "assistant", "content": t}] for t in right]
    assert accuracy_reward(prompts, conv, problem=problems) == [1.0] * len(problems)


def test_accuracy_reward_rejects_hacks_and_needs_closed_thinking():
    p = AR.generate(0)
    cols = columns([p] * 5)
    completions = [
        f"I guess \\boxed{{{p.answer}}}",  # answer only inside unfinished reasoning
        "r</think> <answer></answer>",  # empty answer
        f"r</think> \\boxed{{{p.answer}}} \\boxed{{{int(p.answer) + 1}}}",  # two candidates
        f"r</think> <answer>{p.answer}</answer><answer>{p.answer}</answer>",  # two answer blocks
        f"r</think> <answer>{p.answer} or {int(p.answer) + 1}</answer>",
    ]
    assert accuracy_reward([p.prompt] * 5, completions, **cols) == [0.0] * 5
    # without the forced <think> the completion must open its own reasoning
    free = make_accuracy_reward(think_in_prompt=False)
    assert free([p.prompt], [f"<think>r</think><answer>{p.answer}</answer>"], **columns([p])) == [1.0]


def test_accuracy_reward_names_a_missing_column():
    with pytest.raises(KeyError, match="'task'"):
        accuracy_reward(["q"], ["a"], answer=["1"])
    with pytest.raises(ValueError, match="entries"):
        accuracy_reward(["q"], ["a", "b"], task=["arithmetic"], answer=["1"])


def test_r1_zero_format_reward():
    ok = ["reasoning</think> <answer>42</answer>", "r\n</think>\n<answer>\n42\n</answer>\n"]
    bad = ["42", "reasoning</think> 42", "</think><answer>42</answer>", "r</think><answer></answer>",
           "r</think><answer>4</answer><answer>2</answer>", "r</think><answer>42</answer> trailing text",
           "r<think></think><answer>42</answer>", "r</think><answer>42"]
    assert format_reward([""] * 2, ok) == [1.0, 1.0]
    assert format_reward([""] * len(bad), bad) == [0.0] * len(bad)
    unforced = make_format_reward("r1_zero", think_in_prompt=False)
    assert unforced(["", ""], ["<think>r</think><answer>1</answer>", "r</think><answer>1</answer>"]) == [1.0, 0.0]


def test_chat_format_reward():
    f = make_format_reward("chat")
    assert f([""] * 4, ["thinking</think>\n\nThe answer is 4.", "</think>4", "thinking only", "a</think>b</think>c"]) \
        == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="style"):
        make_format_reward("xml")


def test_tag_count_gives_partial_credit():
    texts = ["r</think><answer>1</answer>", "r</think><answer>1", "r", "r</think></think><answer>1</answer>"]
    assert tag_count_reward([""] * 4, texts) == [1.0, 0.75, 0.25, 0.75]  # <think> counted from the prompt
    chat = make_tag_count_reward("chat", think_in_prompt=False)
    assert chat([""] * 2, ["<think>r</think>x", "r"]) == [1.0, 0.0]


def test_language_consistency_is_the_share_of_target_language_words():
    texts = ["Let me add the numbers carefully.</think>7",
             "Let me 计算 this 数字</think>7",  # 3 English words, 4 Chinese characters
             "1 + 2 = 3</think>3",  # no words at all: nothing mixed
             "我们来计算</think>5"]
    got = language_consistency_reward([""] * 4, texts)
    assert got[0] == 1.0 and got[1] == pytest.approx(3 / 7) and got[2] == 1.0 and got[3] == 0.0
    zh = make_language_reward("zh")
    assert zh([""], ["我们来计算</think>5"]) == [1.0]
    # the answer after </think> is not part of the reasoning
    assert language_consistency_reward([""], ["Add them.</think>答案是 7"]) == [1.0]
    with pytest.raises(ValueError, match="language"):
        make_language_reward("klingon")


def test_soft_overlong_punishment_follows_dapo():
    cfg = OverlongConfig(max_length=100, cache_length=20)
    assert [soft_overlong_penalty(n, cfg) for n in (0, 80, 90, 100, 101)] == [0.0, 0.0, -0.5, -1.0, -1.0]
    r = make_soft_overlong_reward(100, 20)
    assert r(["", ""], ["a", "b"], completion_ids=[[0] * 50, [0] * 95]) == [0.0, -0.75]
    by_words = make_soft_overlong_reward(10, 5, length_fn=lambda s: len(s.split()))
    assert by_words([""], ["w " * 8]) == [-0.6]
    with pytest.raises(ValueError, match="completion_ids"):
        r([""], ["a"])
    with pytest.raises(ValueError, match="cache_length"):
        OverlongConfig(100, 200)


def test_repetition_penalty():
    rep = make_repetition_penalty(ngram_size=2, max_penalty=-1.0)
    loop = "the cat " * 50
    fresh = "one two three four five six seven"
    out = rep(["", ""], [loop, fresh])
    assert out[0] < -0.9 and out[1] == 0.0
    with pytest.raises(ValueError):
        make_repetition_penalty(max_penalty=0.5)


def test_weighted_combination_and_none_handling():
    def half(prompts, completions, **kw):
        return [0.5] * len(completions)

    def sometimes(prompts, completions, **kw):
        return [None, 1.0]

    def never(prompts, completions, **kw):
        return [None, None]

    w = combine((half, 2.0), (sometimes, 3.0))
    assert w(["", ""], ["a", "b"]) == [1.0, 4.0]  # None is left out, not counted as 0
    assert WeightedReward([never])(["", ""], ["a", "b"]) == [None, None]
    assert WeightedReward([half, sometimes]).weights == (1.0, 1.0)
    assert w.__name__ == "2*half+3*sometimes"
    assert w.components(["", ""], ["a", "b"]) == {"half": [0.5, 0.5], "sometimes": [None, 1.0]}
    with pytest.raises(ValueError, match="weights"):
        WeightedReward([half], [1.0, 2.0])
    # the R1-Zero reward: accuracy + format
    p = AR.generate(3)
    r1_zero = combine((accuracy_reward, 1.0), (format_reward, 1.0))
    texts = [f"r</think> <answer>{p.answer}</answer>", f"r</think> {p.answer}", "r</think> <answer>0</answer>"]
    assert r1_zero([p.prompt] * 3, texts, **columns([p] * 3)) == [2.0, 1.0, 1.0]


def test_reward_functions_have_trl_names():
    assert accuracy_reward.__name__ == "accuracy_reward"
    assert make_format_reward("chat").__name__ == "format_reward"
    assert make_soft_overlong_reward(10, 5).__name__ == "soft_overlong_reward"
