"""The GRPO math, as pure tensor functions: group advantages, per-token log-probs, the clipped
surrogate with the k3 KL, and the four length normalizations TRL offers.

Notation (DeepSeek-R1 paper, eq. 1-3; DeepSeekMath eq. 3): for a prompt q, G completions o_i
are sampled from the old policy; each gets a reward r_i and the group-relative advantage
A_i = (r_i - mean(r)) / std(r) (eq. 3). Each completion token t contributes

    min(rho_it * A_i, clip(rho_it, 1 - eps_low, 1 + eps_high) * A_i) - beta * D_KL,it     (eq. 1)

with rho_it = pi_theta(o_it | q, o_i<t) / pi_old(o_it | ...), and the KL to the frozen
reference estimated per token by the non-negative, unbiased k3 estimator (eq. 2)

    D_KL,it = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1.

The loss is the negated objective. How the per-token terms are averaged is `loss_type`, with the
definitions of TRL's GRPOTrainer so results carry over:

    grpo     mean over each sequence's tokens, then over sequences (the paper's 1/|o_i|; biased
             towards short correct and long wrong answers, Dr. GRPO §3.1)
    bnpo     sum over the tokens of the local (micro-)batch / number of those tokens
    dr_grpo  sum / (batch rows * max_completion_length): a constant, no length bias (Dr. GRPO)
    dapo     sum / number of completion tokens in the *global* generation batch (DAPO §3.3,
             token-level policy gradient loss); the caller passes that count

Shapes: b completions (rows), c completion positions (columns), V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("group", "batch", "none")
# TRL adds this to the std before dividing, so a group with (near-)equal rewards gets advantage ~0
# instead of a division by zero.
STD_EPS = 1e-4


# ------------------------------------------------------------------------------ advantages
def nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sample std (Bessel-corrected, as TRL's nanstd and torch.std) ignoring NaN; NaN below 2 values."""
    if dim is None:
        x, dim = x.reshape(-1), 0
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    count = (~torch.isnan(x)).sum(dim)
    var = torch.nansum((x - mean) ** 2, dim) / (count - 1).clamp(min=1)
    return torch.where(count > 1, var.sqrt(), torch.full_like(var, float("nan")))


@dataclass
class Advantages:
    advantages: torch.Tensor  # (N,) one per completion, 0 where no reward applied
    group_std_zero: torch.Tensor  # (N // G,) bool: the group's rewards were all equal (no signal)


def group_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str = "group") -> Advantages:
    """rewards (N,) ordered group by group (G consecutive completions of one prompt); NaN marks a
    completion no reward function applied to: it is left out of its group's baseline and gets
    advantage 0 (TRL's rule for unscorable samples).

    scale_rewards: "group" divides by the group's std (R1 eq. 3), "batch" by the std of the whole
    batch (more robust, PPO-Lite), "none" only centers (Dr. GRPO: std scaling biases towards too
    easy and too hard questions).
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards={scale_rewards!r}: choose one of {SCALE_REWARDS}")
    n = rewards.numel()
    if num_generations < 1 or n % num_generations:
        raise ValueError(f"{n} rewards do not split into groups of num_generations={num_generations}")
    grouped = rewards.float().view(-1, num_generations)  # (groups, G)
    mean = torch.nanmean(grouped, dim=1, keepdim=True)
    group_std = nanstd(grouped, dim=1) if num_generations > 1 else torch.zeros(grouped.shape[0])
    # all-equal rewards (std 0) or a single scorable sample (std NaN) both carry no signal
    zero = torch.nan_to_num(group_std, nan=0.0).abs() < 1e-8
    adv = grouped - mean
    if scale_rewards == "group":
        adv = adv / (group_std[:, None] + STD_EPS)
    elif scale_rewards == "batch":
        adv = adv / (nanstd(rewards.float()) + STD_EPS)
    return Advantages(torch.nan_to_num(adv.reshape(-1), nan=0.0), zero)


# ------------------------------------------------------------------------------ log-probs
def token_logps(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                with_entropy: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """logits (b, c, V) predicting targets (b, c) -> log pi(target) (b, c), fp32; with_entropy
    also returns each position's entropy (b, c), detached (for logging), from the same softmax.

    The logits are divided by the sampling temperature first: the completions were drawn from
    softmax(logits / T), so that is the policy whose ratio and KL the objective is about (TRL
    does the same)."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)  # (b, c, V)
    picked = torch.gather(logp_all, -1, targets[..., None]).squeeze(-1)
    if not with_entropy:
        return picked
    with torch.no_grad():
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    return picked, entropy


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-position entropy (nats) of softmax(logits / T): (b, c, V) -> (b, c). For logging."""
    with torch.no_grad():
        logp = torch.log_softmax(logits.float() / temperature, dim=-1)
        return -(logp.exp() * logp).sum(-1)


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """R1 eq. 2 per token: exp(ref - logp) - (ref - logp) - 1 >= 0, unbiased for KL(pi || ref)."""
    d = ref_logps - logps
    return torch.exp(d) - d - 1


# ------------------------------------------------------------------------------ the loss
@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar to backpropagate (already scaled for gradient accumulation)
    # Token-level sums over the masked tokens of this micro-batch, so callers can aggregate
    # exactly across micro-batches and ranks: divide by `tokens` after summing.
    tokens: float
    clip_low: float  # ratio below 1 - eps_low where A < 0 (the clip is active)
    clip_high: float  # ratio above 1 + eps_high where A > 0
    kl: float  # k3 summed (0 when beta == 0)


def grpo_loss(logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
              loss_type: str = "dapo", old_logps: torch.Tensor | None = None, epsilon: float = 0.2,
              epsilon_high: float | None = None, beta: float = 0.0, ref_logps: torch.Tensor | None = None,
              max_completion_length: int | None = None, num_items_in_batch: float | None = None,
              grad_accum_steps: int = 1) -> LossOutput:
    """The negated GRPO objective (eq. 1) on one micro-batch.

    logps (b, c) with grad: the current policy's log-probs of the completion tokens.
    advantages (b,) or (b, c); mask (b, c): 1 on completion tokens that count (prompt, padding
    and, with mask_truncated_completions, truncated rows are 0).
    old_logps: pi_old for mu > 1 (from the policy before this generation batch's first update);
    None means this is the first update, where pi_old = pi_theta and the ratio is exactly 1 --
    the gradient is then the plain policy gradient A * grad log pi.
    epsilon_high: clip-higher (DAPO §3.1); None = epsilon (symmetric PPO clip).
    num_items_in_batch: for "dapo", the completion tokens of the whole generation batch across
    ranks divided by the number of ranks (DDP averages gradients over ranks, so the sum over all
    ranks' micro-batches ends up divided by the global token count).
    grad_accum_steps: the micro-batches one optimizer step sums over; grpo/bnpo/dr_grpo losses
    are per micro-batch averages, so each is divided by it (as TRL does).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r}: choose one of {LOSS_TYPES}")
    if beta and ref_logps is None:
        raise ValueError("beta > 0 needs ref_logps (the frozen reference policy's log-probs)")
    mask = mask.to(logps.dtype)
    eps_low, eps_high = epsilon, epsilon if epsilon_high is None else epsilon_high
    adv = advantages[:, None] if advantages.dim() == 1 else advantages  # (b, 1) or (b, c)
    old = logps.detach() if old_logps is None else old_logps
    ratio = torch.exp(logps - old)  # (b, c); exactly 1 with value-equal old, gradient d(logp)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = None
    if beta:
        kl = k3_kl(logps, ref_logps)
        per_token = per_token + beta * kl

    if loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean() / grad_accum_steps
    elif loss_type == "bnpo":
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1.0) / grad_accum_steps
    elif loss_type == "dr_grpo":
        if not max_completion_length:
            raise ValueError("loss_type='dr_grpo' normalizes by max_completion_length; pass it")
        loss = (per_token * mask).sum() / (per_token.shape[0] * max_completion_length) / grad_accum_steps
    else:  # dapo
        if num_items_in_batch is None:
            raise ValueError("loss_type='dapo' normalizes by the generation batch's token count; "
                             "pass num_items_in_batch")
        loss = (per_token * mask).sum() / max(float(num_items_in_batch), 1.0)

    with torch.no_grad():
        low = ((ratio < 1 - eps_low) & (adv < 0)).to(mask.dtype)
        high = ((ratio > 1 + eps_high) & (adv > 0)).to(mask.dtype)
        return LossOutput(loss, float(mask.sum()), float((low * mask).sum()), float((high * mask).sum()),
                          float((kl * mask).sum()) if kl is not None else 0.0)


def dynamic_sampling_keep(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """DAPO §3.2 dynamic sampling: which groups to keep -- those whose rewards are not all equal
    (all-correct or all-wrong groups have zero advantage and only dilute the batch). (groups,) bool."""
    return ~group_advantages(rewards, num_generations, "none").group_std_zero
