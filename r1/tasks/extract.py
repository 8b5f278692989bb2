"""Find the final answer in a completion, the same way for rewards and for evaluation.

Two output formats are understood:
- R1-Zero: `<think> reasoning </think> <answer> answer </answer>`; the answer is the text
  inside the one `<answer>` block.
- R1 chat: `reasoning </think> final response`; the answer is the text after `</think>`.
Inside that region a `\\boxed{...}` is preferred (R1's math instruction asks for it).

Extraction is strict on purpose: an answer that is empty, sits in several `<answer>` blocks or
several different `\\boxed{}` is no answer at all (a policy trained with RL learns to list
candidates if that ever pays). The reasoning is never searched for an answer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.S)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")


@dataclass(frozen=True)
class Parsed:
    reasoning: str | None  # text between <think> and </think>; None when thinking never closed
    response: str  # everything after </think> (or the whole text when there is no think block)
    answer: str | None  # the extracted final answer, None when there is none (or several)


def split_think(text: str, think_in_prompt: bool = True) -> tuple[str | None, str]:
    """(reasoning, response). With `think_in_prompt` the prompt already ended in `<think>`
    (R1's usage rule forces generation to start in thinking), so the completion holds only
    the rest of the thought and `</think>`."""
    body = text
    if not think_in_prompt:
        stripped = body.lstrip()
        if not stripped.startswith(THINK_OPEN):
            return None, body
        body = stripped[len(THINK_OPEN):]
    if THINK_CLOSE not in body:
        return None, ""
    reasoning, _, response = body.partition(THINK_CLOSE)
    return reasoning.strip(), response


def boxed_contents(text: str) -> list[str]:
    """Contents of every `\\boxed{...}` in order, with nested braces balanced."""
    out: list[str] = []
    for m in _BOXED.finditer(text):
        i = m.end()
        if i >= len(text) or text[i] != "{":
            continue
        depth, j = 0, i
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    out.append(text[i + 1:j])
                    break
            j += 1
    return out


def answer_in(region: str) -> str | None:
    """The answer in a response region: the single distinct \\boxed{} if any, else the text."""
    boxes = [b.strip() for b in boxed_contents(region)]
    if boxes:
        distinct = {re.sub(r"\s+", "", b) for b in boxes}
        if len(distinct) != 1 or not boxes[0]:
            return None
        return boxes[0]
    answer = region.strip()
    return answer or None


def extract_answer(text: str, think_in_prompt: bool = True) -> str | None:
    return parse_completion(text, think_in_prompt).answer


def parse_completion(text: str, think_in_prompt: bool = True) -> Parsed:
    reasoning, response = split_think(text, think_in_prompt)
    if reasoning is None and think_in_prompt:
        # Thinking never closed (truncated, or the model ignored the format): no answer.
        return Parsed(None, response, None)
    blocks = _ANSWER_BLOCK.findall(response)
    if blocks:
        if len(blocks) != 1:
            return Parsed(reasoning, response, None)
        return Parsed(reasoning, response, answer_in(blocks[0]))
    if ANSWER_OPEN in response:  # an <answer> that never closed
        return Parsed(reasoning, response, None)
    return Parsed(reasoning, response, answer_in(response))
