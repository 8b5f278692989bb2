"""Reasoning / answer splitting and tool-call parsing, whole and streamed."""
from __future__ import annotations

import random

import pytest

from r1.chat.r1_template import (
    THINK_CLOSE, TOOL_CALL_BEGIN, TOOL_CALL_END, TOOL_CALLS_BEGIN, TOOL_CALLS_END, TOOL_SEP,
)
from r1.chat.reasoning import ReasoningStreamParser, prompt_opens_reasoning, split_reasoning
from r1.chat.tool_calls import ToolCall, ToolCallStreamParser, parse_tool_calls

# (completion, think_in_prompt, expected reasoning, expected content)
CASES = [
    # the current R1 template: <think>\n is in the prompt, the completion only closes it
    ("Let me add 2 and 2.\nThat is 4.\n</think>\n\nThe answer is 4.", True,
     "Let me add 2 and 2.\nThat is 4.", "The answer is 4."),
    # the old template / distilled models: the completion opens the block itself
    ("<think>\nLet me add 2 and 2.\n</think>\n\nThe answer is 4.", False, "Let me add 2 and 2.", "The answer is 4."),
    ("\n\n<think>x</think>y", False, "x", "y"),
    # a model that repeats <think> although the prompt opened it
    ("<think>\nhmm\n</think>\n\nok", True, "hmm", "ok"),
    # truncated: </think> never came, everything is reasoning
    ("I need to think about this for a long", True, "I need to think about this for a long", ""),
    ("<think>\nstill going \n", False, "still going", ""),
    ("<think>\nalmost closed </thi", False, "almost closed </thi", ""),
    # no thinking at all: the answer comes back unchanged, whitespace and all
    ("  Just an answer.\n", False, "", "  Just an answer.\n"),
    ("Hi </think> there", False, "", "Hi </think> there"),
    ("<thinking> is not a tag", False, "", "<thinking> is not a tag"),
    ("", False, "", ""),
    ("", True, "", ""),
    ("\n", True, "", ""),
    # empty reasoning, as R1 writes for trivial prompts
    ("\n\n</think>\n\nHello!", True, "", "Hello!"),
    ("<think>\n\n</think>\n\nHello!", False, "", "Hello!"),
    # only the first </think> closes; later tags are answer text
    ("a</think>b</think>c<think>d", True, "a", "b</think>c<think>d"),
    # near-misses of the closing tag inside the reasoning stay reasoning
    ("a </thin k> b </THINK> c <</think>> d", True, "a </thin k> b </THINK> c <", "> d"),
    ("x<//think>y", True, "x<//think>y", ""),
    # unicode and interior whitespace are preserved
    ("  思考中…\n\n  🙂 \n</think>\n\n  答案 ", True, "思考中…\n\n  🙂", "答案 "),
    ("<think></think>", False, "", ""),
    ("<thi", False, "", "<thi"),
    ("<thi", True, "<thi", ""),
    ("  <think", True, "<think", ""),
]


@pytest.mark.parametrize("text,in_prompt,reasoning,content", CASES)
def test_split_reasoning(text, in_prompt, reasoning, content):
    assert split_reasoning(text, think_in_prompt=in_prompt) == (reasoning, content)


def _stream(pieces: list[str], in_prompt: bool) -> tuple[str, str]:
    """Feed pieces; check after every feed that what was emitted is a prefix of the final result,
    i.e. nothing is ever emitted that later turns out wrong (no partial tag leaks)."""
    text = "".join(pieces)
    final_r, final_c = split_reasoning(text, think_in_prompt=in_prompt)
    p = ReasoningStreamParser(think_in_prompt=in_prompt)
    r, c = "", ""
    for piece in pieces:
        dr, dc = p.feed(piece)
        r, c = r + dr, c + dc
        assert final_r.startswith(r), (pieces, r)
        assert final_c.startswith(c), (pieces, c)
        assert THINK_CLOSE not in r
    dr, dc = p.finish()
    return r + dr, c + dc


@pytest.mark.parametrize("text,in_prompt,reasoning,content", CASES)
def test_stream_every_split_point(text, in_prompt, reasoning, content):
    for i in range(len(text) + 1):
        assert _stream([text[:i], text[i:]], in_prompt) == (reasoning, content), i
    assert _stream(list(text), in_prompt) == (reasoning, content)


def test_stream_random_chunkings():
    rng = random.Random(0)
    alphabet = ["<think>", "</think>", "<", "/", "t", "h", "i", "n", "k", ">", " ", "\n", "a", "é", "🙂"]
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 6))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        for in_prompt in (False, True):
            assert _stream(pieces, in_prompt) == split_reasoning(text, in_prompt), (pieces, in_prompt)


def test_stream_holds_partial_close_tag():
    p = ReasoningStreamParser(think_in_prompt=True)
    assert p.feed("Thinking hard </thi") == ("Thinking hard", "")  # " </thi" held back
    assert p.in_reasoning
    assert p.feed("nk>\n\nAnswer") == ("", "Answer")
    assert not p.in_reasoning
    assert p.finish() == ("", "")
    with pytest.raises(RuntimeError):
        p.feed("more")


def test_stream_partial_tag_that_is_not_a_tag():
    p = ReasoningStreamParser(think_in_prompt=True)
    assert p.feed("a </th") == ("a", "")
    assert p.feed("ought") == (" </thought", "")


def test_prompt_opens_reasoning():
    assert prompt_opens_reasoning("<｜User｜>hi<｜Assistant｜><think>\n")
    assert not prompt_opens_reasoning("<｜User｜>hi<｜Assistant｜>")
    assert not prompt_opens_reasoning("<think>\nx</think>\n\nok")


def test_split_reasoning_rejects_non_text():
    with pytest.raises(TypeError, match="completion text"):
        split_reasoning(None, True)  # type: ignore[arg-type]


# ----- tool calls

def _call(name: str, args: str) -> str:
    return f"{TOOL_CALL_BEGIN}function{TOOL_SEP}{name}\n```json\n{args}\n```{TOOL_CALL_END}"


def test_parse_tool_calls_vllm_example():
    # the example from vLLM's DeepSeek-V3 tool parser docstring
    one = _call("get_current_weather", '{"location": "Beijing"}')
    text = f"{TOOL_CALLS_BEGIN}{one}\n{one}{TOOL_CALLS_END}"
    content, calls = parse_tool_calls(text)
    assert content == ""
    assert calls == [ToolCall("get_current_weather", '{"location": "Beijing"}')] * 2


def test_parse_tool_calls_with_text_and_multiline_json():
    args = '{\n  "code": "print(`hi`)\\n```",\n  "n": 2\n}'
    text = f"Let me check.{TOOL_CALLS_BEGIN}{_call('run', args)}{_call('other', '{}')}{TOOL_CALLS_END}"
    content, calls = parse_tool_calls(text)
    assert content == "Let me check."
    assert calls == [ToolCall("run", args), ToolCall("other", "{}")]


def test_parse_tool_calls_tolerates_missing_outer_tokens():
    # generation may stop right after the last call, or skip the outer begin token
    assert parse_tool_calls(f"{TOOL_CALLS_BEGIN}{_call('f', '{}')}")[1] == [ToolCall("f", "{}")]
    assert parse_tool_calls(f"x {_call('f', '{}')}\n") == ("x ", [ToolCall("f", "{}")])


@pytest.mark.parametrize("text", [
    "no tools here",
    f"{TOOL_CALLS_BEGIN}{TOOL_CALL_BEGIN}function{TOOL_SEP}f\n```json\n{{\"a\": ",  # truncated
    f"{TOOL_CALLS_BEGIN}{_call('f', '{}')}garbage{TOOL_CALLS_END}",
    f"{TOOL_CALLS_BEGIN}{TOOL_CALLS_END}",  # a block without calls
    f"{TOOL_CALLS_BEGIN}{_call('', '{}')}{TOOL_CALLS_END}",  # no name
    f"{TOOL_CALLS_BEGIN}{_call('f', '{}')}{TOOL_CALLS_END} and then more text",
])
def test_parse_tool_calls_keeps_malformed_text(text):
    assert parse_tool_calls(text) == (text, [])


TOOL_TEXTS = [
    "plain answer",
    "Checking." + TOOL_CALLS_BEGIN + _call("a", '{"x": 1}') + "\n" + _call("b", "[]") + TOOL_CALLS_END,
    f"{TOOL_CALLS_BEGIN}{TOOL_CALL_BEGIN}function{TOOL_SEP}f\n```json\n{{",
    f"<｜tool not a tag {_call('f', '{}')}",
]


@pytest.mark.parametrize("text", TOOL_TEXTS)
def test_tool_call_stream_every_split_point(text):
    expected = parse_tool_calls(text)
    for pieces in [[text[:i], text[i:]] for i in range(len(text) + 1)] + [list(text)]:
        p = ToolCallStreamParser()
        content = ""
        for piece in pieces:
            content += p.feed(piece)
            assert expected[0].startswith(content)  # nothing emitted is ever taken back
        last, calls = p.finish()
        assert (content + last, calls) == expected, pieces
