"""MTP speculative decoding (DeepSeek-V3 §2.2 / §5.4.3): the MTP module drafts the token after
next; the main model verifies it in the same pass that computes the current token.

Verification is speculative sampling (Leviathan et al. 2023, Chen et al. 2023): accept the draft
d with probability min(1, p(d)/q(d)), else sample from the residual max(0, p - q). The output then
has exactly the target distribution p. Greedy decoding is the special case where p and q are
one-hot, so a draft is accepted iff it equals the argmax: token-identical to plain greedy.
"""
from __future__ import annotations

import torch

from r1.engine.sampling import SamplingParams, filter_logits, inverse_cdf, uniforms


def target_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """(V,) logits -> the distribution a token is actually drawn from under params."""
    if params.greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return filter_logits(logits[None], params).softmax(-1)[0]


def draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    """One sample from probs (V,) by inverse CDF (see sampling.sample); one-hot gives its token."""
    return int(inverse_cdf(probs[None], uniforms([generator], probs.device))[0])


def verify(p: torch.Tensor, q: torch.Tensor, draft: int, generator: torch.Generator | None) -> tuple[int, bool]:
    """(token, accepted): the draft when accepted, else a sample from the residual distribution."""
    ratio = float(p[draft] / q[draft]) if q[draft] > 0 else 0.0
    u = float(torch.rand((), generator=generator))
    if u < ratio:  # strict: a zero-probability draft is never accepted, a ratio >= 1 always
        return draft, True
    residual = (p - q).clamp(min=0)
    if residual.sum() <= 0:
        residual = p
    return draw(residual / residual.sum(), generator), False
