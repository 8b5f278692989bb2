"""Sampling metrics as the R1 paper reports them.

pass@1 (R1 §3, "Evaluation Setup"): sample k responses per question at temperature > 0 and
average their correctness, pass@1 = (1/k) Σ p_i -- more stable than one greedy answer.
cons@k: majority vote over the k extracted answers; the question counts as solved when the
most common answer is correct.
pass@k: the unbiased estimator of Chen et al. 2021 (Codex), 1 - C(n-c, k) / C(n, k) for n
samples with c correct, computed as a product so it never forms huge binomials.
"""
from __future__ import annotations

import math
from typing import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:  # every size-k subset contains a correct sample
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i)
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def pass_at_k_exact(n: int, c: int, k: int) -> float:
    """The closed form with exact binomials, kept as the reference the product is checked against."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_vote(keys: Sequence[str | None]) -> tuple[str | None, int | None]:
    """(winning key, index of its first sample). Samples without an answer (None) do not vote.
    Ties go to the answer that appeared first, so the result depends only on the samples and
    their order, never on hashing or dict iteration quirks."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, i)
    if not counts:
        return None, None
    best = max(counts.values())
    winner = min((k for k, v in counts.items() if v == best), key=lambda k: first[k])
    return winner, first[winner]


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def stderr(values: Sequence[float]) -> float | None:
    """Standard error of the mean over problems (sample std / sqrt(n))."""
    n = len(values)
    if n < 2:
        return None
    m = sum(values) / n
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n)


def k_ladder(k: int) -> list[int]:
    """1, 2, 4, ... up to k, plus k itself: the pass@j values worth reporting for k samples."""
    out, j = [], 1
    while j < k:
        out.append(j)
        j *= 2
    out.append(k)
    return out
