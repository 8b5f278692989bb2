"""Rule-based rewards, as TRL-style callables `(prompts, completions, **columns) -> list[float | None]`.

    accuracy_reward            the task's grader on the extracted answer (r1.tasks)
    format_reward              R1-Zero <think>/<answer> format, or R1 chat format
    tag_count_reward           partial format credit per tag
    language_consistency_reward share of target-language words in the reasoning (R1 stage 2)
    soft overlong / repetition  DAPO length shaping, n-gram repetition penalty
    WeightedReward / combine   weighted sums

Code execution rewards live in r1.rewards.code (sandboxed).
"""
from r1.rewards.accuracy import accuracy_reward, grade_completion, make_accuracy_reward, problems_from_columns
from r1.rewards.base import RewardFunc, completion_text
from r1.rewards.combine import WeightedReward, combine
from r1.rewards.format import (format_reward, is_chat_format, is_formatted, is_r1_zero_format, make_format_reward,
                               make_tag_count_reward, tag_count, tag_count_reward)
from r1.rewards.language import language_consistency_reward, language_share, make_language_reward
from r1.rewards.shaping import (OverlongConfig, make_repetition_penalty, make_soft_overlong_reward,
                                repetition_fraction, soft_overlong_penalty)

__all__ = [
    "RewardFunc", "completion_text", "accuracy_reward", "make_accuracy_reward", "grade_completion",
    "problems_from_columns", "format_reward", "make_format_reward", "tag_count_reward", "make_tag_count_reward",
    "tag_count", "is_formatted", "is_r1_zero_format", "is_chat_format", "language_consistency_reward",
    "make_language_reward", "language_share", "make_soft_overlong_reward", "soft_overlong_penalty",
    "OverlongConfig", "make_repetition_penalty", "repetition_fraction", "WeightedReward", "combine",
]
