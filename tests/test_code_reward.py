"""The code rewards: fraction passed and binary, TRL calling convention, truncation."""
from __future__ import annotations

import pytest

from r1.rewards.code import code_binary_reward, code_reward, make_code_reward, response_of
from r1.tasks import code, generate_many
from r1.tasks.base import Problem


@pytest.fixture(scope="module")
def rotate_problem() -> Problem:
    return next(p for p in generate_many(code, 60, seed=0, difficulty=2) if p.meta["template"] == "rotate")


def _completion(body: str) -> str:
    # R1 chat format with the prompt ending in "<think>\n": reasoning, </think>, answer.
    return f"Let me think about rotating.\n</think>\n\nHere is my solution.\n{body}"


def test_fraction_and_binary(rotate_problem):
    p = rotate_problem
    right = _completion(p.answer)
    # Right only where rotating changes nothing (empty, one element): passes some tests.
    partial = _completion("```python\ndef rotate(xs):\n    return list(xs)\n```")
    nothing = _completion("I could not solve it.")
    cols = {"problem": [p, p, p]}
    frac = code_reward(["q"] * 3, [right, partial, nothing], **cols)
    binary = code_binary_reward(["q"] * 3, [right, partial, nothing], **cols)
    assert frac[0] == 1.0 and binary[0] == 1.0
    assert 0.0 < frac[1] < 1.0 and binary[1] == 0.0
    assert frac[2] == 0.0 and binary[2] == 0.0


def test_truncated_completions_get_nothing(rotate_problem):
    p = rotate_problem
    unclosed_think = "I am still thinking ```python\n" + code.extract_code(p.answer) + "```"
    cut_block = _completion(p.answer[: len(p.answer) - 4])  # the closing fence was cut off
    assert code_reward(["q", "q"], [unclosed_think, cut_block], problem=[p, p]) == [0.0, 0.0]


def test_code_only_in_reasoning_does_not_count(rotate_problem):
    p = rotate_problem
    text = f"Draft:\n{p.answer}\n</think>\n\nI will not show code."
    assert code_reward(["q"], [text], problem=[p]) == [0.0]


def test_final_block_is_the_one_graded(rotate_problem):
    p = rotate_problem
    wrong_then_right = _completion("```python\ndef rotate(xs):\n    return []\n```\nOops, fixed:\n" + p.answer)
    right_then_wrong = _completion(p.answer + "\nActually:\n```python\ndef rotate(xs):\n    return []\n```")
    assert code_binary_reward(["q", "q"], [wrong_then_right, right_then_wrong], problem=[p, p]) == [1.0, 0.0]


def test_columns_and_conversational_completions(rotate_problem):
    p = rotate_problem
    cols = {k: [v] for k, v in p.to_columns().items()}
    conv = [[{"role": "assistant", "content": _completion(p.answer)}]]
    assert code_reward(["q"], conv, **cols) == [1.0]


def test_other_tasks_are_not_applicable(rotate_problem):
    other = Problem(task="arithmetic", prompt="1+1?", answer="2")
    out = code_reward(["q", "q"], [_completion(rotate_problem.answer), "2"], problem=[rotate_problem, other])
    assert out == [1.0, None]


def test_r1_zero_format_and_names(rotate_problem):
    p = rotate_problem
    zero = make_code_reward(think_in_prompt=False)
    text = f"<think> plan </think> <answer>\n{p.answer}\n</answer>"
    assert zero(["q"], [text], problem=[p]) == [1.0]
    assert code_reward.__name__ == "code_reward" and code_binary_reward.__name__ == "code_binary_reward"
    assert response_of("no think close", think_in_prompt=True) is None


def test_sandbox_failure_is_not_a_zero(rotate_problem, tmp_path):
    # A sandbox that cannot work (its temp root vanished) must not hand out 0.0 rewards
    # that would look like a wrong program.
    from r1.sandbox import Sandbox, SandboxConfig
    from r1.sandbox.pool import PoolConfig, SandboxPool

    gone = tmp_path / "gone"
    gone.mkdir()
    pool = SandboxPool(Sandbox(SandboxConfig(tmp_root=str(gone))), PoolConfig(workers=1))
    pool.sandbox.isolation  # probe while the directory still exists
    gone.rmdir()
    reward = make_code_reward(pool=pool)
    with pytest.warns(RuntimeWarning, match="sandbox failed"):
        assert reward(["q"], [_completion(rotate_problem.answer)], problem=[rotate_problem]) == [None]
