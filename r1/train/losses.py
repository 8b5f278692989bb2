"""Training objectives of DeepSeek-V3 pretraining (arXiv:2412.19437), as sums over tokens so that a
step's loss does not depend on how its batch is split over micro-batches and ranks:

  next-token cross-entropy                      L_Main
  multi-token prediction (eqs. 24-25)           L_MTP = lambda / D * sum_k L_MTP^k
  complementary sequence-wise balance loss      L_Bal = alpha * sum_i f_i P_i per sequence (eqs. 17-20)
  classic auxiliary balance loss (option)       the same product over the whole batch, larger alpha
  auxiliary-loss-free balancing (§2.1.2)        after each step b_i -= gamma * sign(load_i - mean load)

Router statistics come from forward hooks on the model's `Gate` modules (owned by a
`RouterStats` object, no global state), so the model code stays inference-shaped.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from r1.model.deepseek import Gate
from r1.train.config import TrainConfigError
from r1.train.data import IGNORE, Batch
from r1.train.dist import DistInfo, all_reduce_sum

BALANCE_MODES = ("bias", "aux", "none")


@dataclass
class LossConfig:
    mtp_weight: float = 0.3  # lambda: V3 used 0.3 for the first 10T tokens, then 0.1
    balance: str = "bias"  # bias: aux-loss-free bias updates (+ seq-wise loss); aux: classic loss; none
    bias_update_speed: float = 0.001  # gamma (V3: 0.001, then 0 for the last 500B tokens)
    seq_aux_alpha: float = 1e-4  # alpha of the sequence-wise loss used with bias balancing (V3: 1e-4)
    aux_alpha: float = 1e-2  # alpha of the classic batch-wise loss (balance=aux)

    def __post_init__(self) -> None:
        if self.balance not in BALANCE_MODES:
            raise TrainConfigError(f"loss.balance={self.balance!r}: choose one of {BALANCE_MODES}")
        for name in ("mtp_weight", "bias_update_speed", "seq_aux_alpha", "aux_alpha"):
            if getattr(self, name) < 0:
                raise TrainConfigError(f"loss.{name} must be >= 0, got {getattr(self, name)}")


def token_ce_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum (not mean) of cross-entropy over labelled positions; logits (b, s, V), labels (b, s)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE, reduction="sum")


def mtp_labels(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Targets of MTP depth k: row i predicts token i + k + 1, which is labels[i + k]."""
    return labels[:, k:]


class RouterStats:
    """Forward hooks on every Gate: keeps this micro-batch's routing (for the balance losses) and
    accumulates each gate's expert loads over a step (for bias updates and imbalance logs)."""

    def __init__(self, model: nn.Module):
        self.gates: dict[str, Gate] = {n: m for n, m in model.named_modules() if isinstance(m, Gate)}
        self.routing: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # (gate, scores (n, e), idx (n, k))
        self.loads = {n: torch.zeros(g.weight.shape[0], dtype=torch.float64, device=g.weight.device)
                      for n, g in self.gates.items()}
        self.recording = True
        # (b, s) 1 = real token, set by the trainer around each forward: padding is routed like any
        # token, but must not count as load (it would steer the biases toward serving padding).
        self.token_mask: torch.Tensor | None = None
        self._handles = [g.register_forward_hook(self._hook(n)) for n, g in self.gates.items()]

    def _hook(self, name: str):
        def hook(module: nn.Module, args, output) -> None:
            if not (self.recording and module.training):
                return
            _, idx, scores = output
            self.routing.append((name, scores, idx))
            weights = None
            if self.token_mask is not None:
                b = self.token_mask.shape[0]
                weights = routing_mask(self.token_mask, idx.shape[0] // b).reshape(-1, 1).expand_as(idx).flatten()
            self.loads[name] += torch.bincount(idx.flatten(), weights=None if weights is None else weights.double(),
                                               minlength=scores.shape[-1]).to(torch.float64)
        return hook

    def __bool__(self) -> bool:
        return bool(self.gates)

    def clear_routing(self) -> None:
        self.routing.clear()

    def reset_loads(self) -> None:
        for v in self.loads.values():
            v.zero_()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def routing_mask(attention_mask: torch.Tensor, s: int) -> torch.Tensor:
    """Which of a gate's s positions per row are real tokens. The main layers route all
    positions; MTP depth k routes positions i < s_full - k, each combining hidden i with token
    i + k, which (right padding) is real exactly when token i + k is: the last s columns."""
    return attention_mask[:, attention_mask.shape[1] - s:]


def balance_loss_sum(routing: list[tuple[str, torch.Tensor, torch.Tensor]], batch: Batch, per_sequence: bool
                     ) -> tuple[torch.Tensor, int]:
    """sum over MoE gates of sum_i f_i * P_i (eqs. 17-20), per sequence (summed over the batch's
    sequences) or over the whole micro-batch; returns (sum, number of terms summed per gate).
    f_i = N_r / (K_r T) * #tokens routed to i, P_i = mean over tokens of the normalized scores.
    Padding tokens do not count."""
    b = batch.input_ids.shape[0]
    total = batch.input_ids.new_zeros((), dtype=torch.float32)
    for _, scores, idx in routing:
        n, e = scores.shape
        kk = idx.shape[1]
        s = n // b  # the MTP layers route s - depth positions per row
        sc = scores.float().view(b, s, e)
        sc = sc / sc.sum(-1, keepdim=True)  # s'_{i,t}
        hits = torch.zeros(b, s, e, device=sc.device).scatter_(2, idx.view(b, s, kk), 1.0)
        m = (routing_mask(batch.attention_mask, s).float() if batch.attention_mask is not None
             else torch.ones(b, s, device=sc.device))[..., None]
        if per_sequence:
            T = m.sum(1).clamp(min=1)  # (b, 1)
            f = (hits * m).sum(1) * e / (kk * T)  # (b, e)
            P = (sc * m).sum(1) / T
            total = total + (f * P).sum()
        else:
            T = m.sum().clamp(min=1)
            f = (hits * m).sum((0, 1)) * e / (kk * T)
            P = (sc * m).sum((0, 1)) / T
            total = total + (f * P).sum()
    return total, (b if per_sequence else 1)


@torch.no_grad()
def update_expert_bias(stats: RouterStats, gamma: float, dist: DistInfo) -> dict[str, float]:
    """Aux-loss-free balancing: each expert's routing bias moves by gamma toward balance
    (down when overloaded, up when underloaded), from the step's global loads (all ranks).
    Returns per-gate imbalance (max load / mean load) of the step, measured before the update."""
    out = {}
    for name, gate in stats.gates.items():
        load = all_reduce_sum(stats.loads[name].clone(), dist)
        mean = load.mean()
        if mean <= 0:
            continue
        out[name] = float(load.max() / mean)
        if gamma > 0:
            gate.e_score_correction_bias += gamma * torch.sign(mean - load).to(gate.e_score_correction_bias.dtype)
    return out


def gate_label(name: str) -> str:
    """'model.layers.3.mlp.gate' -> 'layer3', 'mtp.0.mlp.gate' -> 'mtp0' (metric names)."""
    parts = name.split(".")
    if parts[0] == "mtp":
        return f"mtp{parts[1]}"
    if "layers" in parts:
        return f"layer{parts[parts.index('layers') + 1]}"
    return name
