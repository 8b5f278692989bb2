"""Weighted combination of reward functions, for trainers that take a single reward.

R1 stage 2 sums accuracy and language consistency directly; R1-Zero sums accuracy and format.
`None` from a component means "does not apply" and is left out, the way TRL's `nansum` does;
a sample no component applies to gets `None`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from r1.rewards.base import RewardFunc


@dataclass(frozen=True)
class WeightedReward:
    funcs: Sequence[RewardFunc]
    weights: Sequence[float] = field(default_factory=tuple)  # empty: all 1.0

    def __post_init__(self) -> None:
        if not self.funcs:
            raise ValueError("WeightedReward needs at least one reward function")
        if not all(callable(f) for f in self.funcs):
            raise TypeError("every entry of funcs must be callable (prompts, completions, **columns)")
        if not self.weights:
            object.__setattr__(self, "weights", tuple(1.0 for _ in self.funcs))
        if len(self.weights) != len(self.funcs):
            raise ValueError(f"{len(self.weights)} weights for {len(self.funcs)} reward functions; give one weight each")
        object.__setattr__(self, "funcs", tuple(self.funcs))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))

    @property
    def __name__(self) -> str:  # TRL logs rewards by __name__
        return "+".join(f"{w:g}*{getattr(f, '__name__', 'reward')}" for f, w in zip(self.funcs, self.weights))

    def components(self, prompts: list, completions: list, **columns: Any) -> dict[str, list[float | None]]:
        """Each component's rewards, by name, for logging."""
        out = {}
        for f in self.funcs:
            values = f(prompts, completions, **columns)
            if len(values) != len(completions):
                raise ValueError(f"{getattr(f, '__name__', f)} returned {len(values)} rewards for {len(completions)} completions")
            out[getattr(f, "__name__", repr(f))] = values
        return out

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list[float | None]:
        per_func = [f(prompts, completions, **columns) for f in self.funcs]
        for f, values in zip(self.funcs, per_func):
            if len(values) != len(completions):
                raise ValueError(f"{getattr(f, '__name__', f)} returned {len(values)} rewards for {len(completions)} completions")
        out: list[float | None] = []
        for i in range(len(completions)):
            parts = [w * v[i] for w, v in zip(self.weights, per_func) if v[i] is not None]
            out.append(sum(parts) if parts else None)
        return out


def combine(*pairs: tuple[RewardFunc, float]) -> WeightedReward:
    """combine((accuracy_reward, 1.0), (format_reward, 0.5))"""
    return WeightedReward([f for f, _ in pairs], [w for _, w in pairs])
