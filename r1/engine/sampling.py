"""Sampling parameters and the logits -> token step, applied to a whole batch at once."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

# DeepSeek's usage recommendation for R1: temperature 0.5-0.7 (0.6), top-p 0.95.
R1_TEMPERATURE, R1_TOP_P = 0.6, 0.95


@dataclass
class SamplingParams:
    temperature: float = R1_TEMPERATURE  # 0 = greedy
    top_p: float = R1_TOP_P
    top_k: int = 0  # 0 = off
    min_p: float = 0.0
    max_tokens: int = 256
    seed: int | None = None  # per request: same seed, same output, whatever else is in the batch
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if not (self.temperature >= 0):
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = disabled), got {self.top_k}")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must be in [0, 1), got {self.min_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def filter_logits(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, top-p, min-p (the order transformers applies them); (b, V) fp32."""
    logits = logits.float() / p.temperature
    if p.top_k and p.top_k < logits.shape[-1]:
        kth = logits.topk(p.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if p.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens before it already cover top_p (the first always stays)
        drop_sorted = (probs.cumsum(-1) - probs) > p.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    if p.min_p > 0:
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < p.min_p * probs.amax(-1, keepdim=True), float("-inf"))
    return logits


def sample(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]) -> torch.Tensor:
    """logits (b, V) -> next tokens (b,). Rows may have different params and generators."""
    out = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    for i, (p, g) in enumerate(zip(params, generators)):
        row = logits[i : i + 1]
        if p.greedy:
            out[i] = row.argmax(-1)[0]
        else:
            probs = filter_logits(row, p).softmax(-1)
            out[i] = torch.multinomial(probs, 1, generator=g)[0, 0]
    return out
