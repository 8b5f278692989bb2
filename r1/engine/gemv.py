"""Single-row linears for compiled graphs (see r1/engine/compiled.py for why)."""
from __future__ import annotations

import torch


def gemv(x: torch.Tensor, w: torch.Tensor, scales: torch.Tensor | None = None,
         bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., K) one row, w (N, K) float or int8 [scales (N,)] -> (..., N), written as a
    multiply-and-sum over K, which inductor turns into one fused reduction reading w once.
    (Eagerly this would materialize an (N, K) product: only for compiled graphs.)"""
    y = (x.unsqueeze(-2) * w).sum(-1, dtype=torch.float32)  # (..., N)
    if scales is not None:
        y = y * scales.float()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def one_row(x: torch.Tensor) -> bool:
    return x.numel() == x.shape[-1]
