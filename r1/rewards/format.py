"""Format rewards: the output follows the template, and partial credit per tag.

Two formats (see r1.tasks.extract):
- "r1_zero": `<think> reasoning </think> <answer> answer </answer>` and nothing else (the
  R1-Zero format reward, paper §2.2.2);
- "chat": `reasoning </think> response` (R1's chat template opens `<think>` in the prompt).
"""
from __future__ import annotations

import re
from typing import Any

from r1.rewards.base import RewardFunc, completion_text, named
from r1.tasks.extract import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN

STYLES = ("r1_zero", "chat")
_R1_ZERO = re.compile(r"^\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*$", re.S)
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)


def _full(text: str, think_in_prompt: bool) -> str:
    # With thinking forced by the prompt the completion lacks the opening tag; judge the text
    # the model is responsible for as if the tag were there.
    return THINK_OPEN + text if think_in_prompt else text


def is_r1_zero_format(text: str, think_in_prompt: bool = True) -> bool:
    full = _full(text, think_in_prompt)
    if any(full.count(tag) != 1 for tag in TAGS):
        return False
    m = _R1_ZERO.match(full)
    return bool(m and m.group(1).strip() and m.group(2).strip())


def is_chat_format(text: str, think_in_prompt: bool = True) -> bool:
    full = _full(text, think_in_prompt)
    if full.count(THINK_OPEN) != 1 or full.count(THINK_CLOSE) != 1:
        return False
    head, _, response = full.partition(THINK_CLOSE)
    if not head.lstrip().startswith(THINK_OPEN):
        return False
    return bool(head.lstrip()[len(THINK_OPEN):].strip()) and bool(response.strip())


def is_formatted(text: str, style: str, think_in_prompt: bool = True) -> bool:
    if style not in STYLES:
        raise ValueError(f"format style must be one of {STYLES}, got {style!r}")
    return is_r1_zero_format(text, think_in_prompt) if style == "r1_zero" else is_chat_format(text, think_in_prompt)


def make_format_reward(style: str = "r1_zero", think_in_prompt: bool = True) -> RewardFunc:
    if style not in STYLES:
        raise ValueError(f"format style must be one of {STYLES}, got {style!r}")

    def format_reward(prompts: list, completions: list, **columns: Any) -> list[float | None]:
        return [1.0 if is_formatted(completion_text(c), style, think_in_prompt) else 0.0 for c in completions]
    return named(format_reward, "format_reward")


def tag_count(text: str, style: str = "r1_zero", think_in_prompt: bool = True) -> float:
    """0.25 (r1_zero) or 0.5 (chat) per required tag that appears exactly once, so a policy
    that has not yet found the whole format still gets a gradient towards it."""
    full = _full(text, think_in_prompt)
    tags = TAGS if style == "r1_zero" else (THINK_OPEN, THINK_CLOSE)
    return sum(1.0 / len(tags) for tag in tags if full.count(tag) == 1)


def make_tag_count_reward(style: str = "r1_zero", think_in_prompt: bool = True) -> RewardFunc:
    if style not in STYLES:
        raise ValueError(f"format style must be one of {STYLES}, got {style!r}")

    def tag_count_reward(prompts: list, completions: list, **columns: Any) -> list[float | None]:
        return [tag_count(completion_text(c), style, think_in_prompt) for c in completions]
    return named(tag_count_reward, "tag_count_reward")


format_reward = make_format_reward()
tag_count_reward = make_tag_count_reward()
