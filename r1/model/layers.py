"""Building blocks shared by both model families: RMSNorm, RoPE variants, SwiGLU, masks.

Einsum/shape legend used across r1/model: b batch, s query position, t key position,
h head, d head dim, c kv latent (kv_lora_rank), r rope dim, e expert, D model dim.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from r1.config import ModelConfig

# Key positions of padding slots. Any query position is smaller, so "key_pos <= query_pos"
# masks padding, the causal future and unwritten cache slots with one comparison.
PAD_POS = 2**30


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalize in fp32 and cast back before the gain, as the reference implementations do.
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, dim: int, hidden: int, bias: bool = False):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=bias)
        self.up_proj = nn.Linear(dim, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "gate_up_proj"):  # fused by the engine (r1/engine/fuse.py)
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
            return self.down_proj(F.silu(gate) * up)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


# ---------------------------------------------------------------- RoPE
def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def rope_frequencies(cfg: ModelConfig) -> tuple[torch.Tensor, float]:
    """Inverse frequencies (rope_dim/2,) and the cos/sin amplitude factor for cfg's RoPE type. The
    table is computed on the CPU whatever the default device (a handful of numbers; on the meta
    device torch would run these ops through its Python references, which import torch._dynamo)."""
    dim, base = cfg.rope_dim, cfg.rope_theta
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device="cpu") / dim))
    rs, rt = cfg.rope_scaling or {}, cfg.rope_type
    if rt == "default":
        return inv_freq, 1.0
    factor = float(rs["factor"])
    if rt == "linear":
        return inv_freq / factor, 1.0
    if rt == "llama3":
        # Llama 3.1: long wavelengths are interpolated, short ones kept, a smooth ramp between.
        lo, hi = rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
        old_ctx = rs.get("original_max_position_embeddings", 8192)
        wavelen = 2 * math.pi / inv_freq
        smooth = (old_ctx / wavelen - lo) / (hi - lo)
        scaled = torch.where(wavelen > old_ctx / lo, inv_freq / factor, inv_freq)
        mid = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        is_mid = (wavelen <= old_ctx / lo) & (wavelen >= old_ctx / hi)
        return torch.where(is_mid, mid, scaled), 1.0
    # YaRN (DeepSeek-V3 uses factor 40 over 4K): interpolate low frequencies, keep high ones,
    # linear ramp between the dims that rotate beta_slow..beta_fast times over the old context.
    old_ctx = rs.get("original_max_position_embeddings", cfg.max_position_embeddings)
    beta_fast, beta_slow = rs.get("beta_fast") or 32, rs.get("beta_slow") or 1

    def corr_dim(rot: float) -> float:
        return dim * math.log(old_ctx / (rot * 2 * math.pi)) / (2 * math.log(base))

    low, high = corr_dim(beta_fast), corr_dim(beta_slow)
    if rs.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device="cpu") - low) / (high - low)).clamp(0, 1)
    extrapolate = 1 - ramp  # 1 = keep original frequency
    inv_freq = (inv_freq / factor) * (1 - extrapolate) + inv_freq * extrapolate
    attn_factor = rs.get("attention_factor")
    if attn_factor is None:
        m, m_all = rs.get("mscale"), rs.get("mscale_all_dim")
        attn_factor = _yarn_mscale(factor, m) / _yarn_mscale(factor, m_all) if (m and m_all) else _yarn_mscale(factor)
    return inv_freq, float(attn_factor)


class Rotary(nn.Module):
    """cos/sin tables computed per call from positions (b, s); no max-length table to outgrow."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        inv_freq, self.attn_factor = rope_frequencies(cfg)
        self.register_buffer("inv_freq", inv_freq.to(torch.get_default_device()), persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions[..., None].float() * self.inv_freq  # (b, s, r/2)
        return (freqs.cos() * self.attn_factor).to(dtype), (freqs.sin() * self.attn_factor).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """Rotate x (b, s, h, r) by angles cos/sin (b, s, r/2).

    interleaved=True: DeepSeek's layout, dims (2i, 2i+1) form pair i (complex multiplication in
    the reference). interleaved=False: the HF/Llama half-split layout, dims (i, i + r/2) form pair i.
    Using the wrong one for a checkpoint silently ruins it, so it is a config flag, not a guess.
    """
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


# ---------------------------------------------------------------- masks and positions
def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Left-padded batches: real tokens get positions 0..n-1, padding gets 0 (never attended)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def attention_allowed(key_pos: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
    """(b, 1, s, t) bool: query s may attend key t iff key_pos[t] <= query_pos[s]."""
    return (key_pos[:, None, :] <= query_pos[:, :, None])[:, None]
