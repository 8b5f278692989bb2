"""AdamW with decoupled weight decay on matrices only, and a warmup + decay LR schedule whose
state is plain numbers (so it checkpoints through JSON)."""
from __future__ import annotations

import math

import torch
from torch import nn

from r1.train.config import OptimConfig


class LRSchedule:
    """Multiplier of the base lr at scheduler step s: linear warmup over warmup_steps, then
    cosine / linear decay to min_lr_ratio at total_steps (constant: stays at 1).
    A class, not a lambda: LambdaLR saves a callable object's __dict__ in its state_dict."""

    def __init__(self, warmup_steps: int, total_steps: int, schedule: str = "cosine", min_lr_ratio: float = 0.1):
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.schedule, self.min_lr_ratio = schedule, min_lr_ratio

    def __call__(self, s: int) -> float:
        if self.warmup_steps and s < self.warmup_steps:
            return (s + 1) / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        frac = min(1.0, (s - self.warmup_steps) / span)
        decay = 0.5 * (1 + math.cos(math.pi * frac)) if self.schedule == "cosine" else 1 - frac
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * decay


def build_optimizer(model: nn.Module, cfg: OptimConfig, total_steps: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters; weight decay on >= 2-D weights only (decaying norm
    gains and biases toward 0 only hurts). `foreach=False` keeps the update bitwise identical
    between runs that split the same work differently."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            eps=cfg.eps, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, LRSchedule(cfg.warmup_steps, total_steps, cfg.schedule, cfg.min_lr_ratio))
    return opt, sched
