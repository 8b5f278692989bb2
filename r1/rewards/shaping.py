"""Length and repetition shaping: DAPO's soft overlong punishment and an n-gram repetition
penalty. Both are penalties (<= 0) meant to be added to the accuracy reward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from r1.rewards.base import RewardFunc, column, completion_text, named


@dataclass(frozen=True)
class OverlongConfig:
    max_length: int  # L_max: the generation limit, in tokens
    cache_length: int  # L_cache: the soft zone before L_max where the penalty ramps from 0 to -1

    def __post_init__(self) -> None:
        if self.max_length <= 0:
            raise ValueError(f"max_length must be a positive token count, got {self.max_length}")
        if not 0 < self.cache_length <= self.max_length:
            raise ValueError(f"cache_length must be in 1..max_length ({self.max_length}), got {self.cache_length}; "
                             "DAPO used max_length=20480 with cache_length=4096")


def soft_overlong_penalty(length: int, cfg: OverlongConfig) -> float:
    """DAPO eq. (13): 0 up to L_max - L_cache, then a linear ramp to -1 at L_max, -1 beyond."""
    start = cfg.max_length - cfg.cache_length
    if length <= start:
        return 0.0
    if length <= cfg.max_length:
        return (start - length) / cfg.cache_length
    return -1.0


def make_soft_overlong_reward(max_length: int, cache_length: int,
                              length_fn: Callable[[str], int] | None = None) -> RewardFunc:
    """Lengths come from the `completion_ids` column (TRL passes it) or, without it, from
    `length_fn(text)` (e.g. a tokenizer's encode then len)."""
    cfg = OverlongConfig(max_length, cache_length)

    def soft_overlong_reward(prompts: list, completions: list, **columns: Any) -> list[float | None]:
        n = len(completions)
        if columns.get("completion_ids") is not None:
            lengths = [len(ids) for ids in column(columns, "completion_ids", n)]
        elif length_fn is not None:
            lengths = [length_fn(completion_text(c)) for c in completions]
        else:
            raise ValueError("soft_overlong_reward needs token lengths: pass completion_ids=... "
                             "or build it with make_soft_overlong_reward(..., length_fn=lambda s: len(tok.encode(s)))")
        return [soft_overlong_penalty(length, cfg) for length in lengths]
    return named(soft_overlong_reward, "soft_overlong_reward")


def repetition_fraction(text: str, ngram_size: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one: 0 for no repetition, -> 1 for a loop."""
    words = text.lower().split()
    if len(words) < ngram_size:
        return 0.0
    ngrams = [tuple(words[i:i + ngram_size]) for i in range(len(words) - ngram_size + 1)]
    return 1.0 - len(set(ngrams)) / len(ngrams)


def make_repetition_penalty(ngram_size: int = 3, max_penalty: float = -1.0) -> RewardFunc:
    """Penalty proportional to the repeated n-gram share (the repetition penalty of "Demystifying
    Long Chain-of-Thought Reasoning in LLMs", as in open-r1): a degenerate loop gets max_penalty."""
    if ngram_size < 1:
        raise ValueError(f"ngram_size must be >= 1, got {ngram_size}")
    if max_penalty > 0:
        raise ValueError(f"max_penalty must be <= 0 (it is a penalty), got {max_penalty}")

    def repetition_penalty_reward(prompts: list, completions: list, **columns: Any) -> list[float | None]:
        return [repetition_fraction(completion_text(c), ngram_size) * max_penalty for c in completions]
    return named(repetition_penalty_reward, "repetition_penalty_reward")
