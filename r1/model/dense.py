"""Dense GQA transformers: the Llama / Qwen2 / Qwen3 bases of the R1-Distill models."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from r1.config import ModelConfig
from r1.model.base import AttnContext, CausalLM
from r1.model.layers import MLP, RMSNorm, apply_rope


class GQAAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_heads, self.n_kv, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.scale = cfg.softmax_scale
        D, H, KV, d = cfg.hidden_size, self.n_heads, self.n_kv, self.head_dim
        self.q_proj = nn.Linear(D, H * d, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(D, KV * d, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(D, KV * d, bias=cfg.attention_bias)
        # Llama's attention_bias covers o_proj too; Qwen2 biases only q/k/v.
        self.o_proj = nn.Linear(H * d, D, bias=cfg.attention_bias and cfg.arch == "llama")
        self.qk_norm = cfg.qk_norm
        if cfg.qk_norm:  # Qwen3: RMSNorm over each head's dims before RoPE
            self.q_norm = RMSNorm(d, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(d, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, ctx: AttnContext) -> torch.Tensor:
        b, s, _ = x.shape
        if hasattr(self, "qkv_proj"):  # fused by the engine (r1/engine/fuse.py): one matmul, not three
            q, k, v = self.qkv_proj(x).split([self.n_heads * self.head_dim, self.n_kv * self.head_dim,
                                              self.n_kv * self.head_dim], dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(b, s, self.n_heads, self.head_dim)  # (b, s, h, d)
        k = k.view(b, s, self.n_kv, self.head_dim)  # (b, s, kv, d)
        v = v.view(b, s, self.n_kv, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rope(q, ctx.cos, ctx.sin, interleaved=False)
        k = apply_rope(k, ctx.cos, ctx.sin, interleaved=False)
        if ctx.cache is not None:
            # the engine's paged decode steps may attend in place over the cache (no gathered copy)
            attend = getattr(ctx.cache, "attend", None)
            o = attend(self.layer, q, k, v, self.scale) if attend is not None else None  # (b, s, h, d)
            if o is not None:
                return self.o_proj(o.reshape(b, s, -1))
            k, v = ctx.cache.write(self.layer, k=k, v=v)  # (b, t, kv, d)
        o = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=ctx.mask,
            scale=self.scale, enable_gqa=self.n_heads != self.n_kv)  # (b, h, s, d)
        return self.o_proj(o.transpose(1, 2).reshape(b, s, -1))


class DenseForCausalLM(CausalLM):
    def make_attention(self, i: int) -> nn.Module:
        return GQAAttention(self.config, i)

    def make_mlp(self, i: int) -> nn.Module:
        return MLP(self.config.hidden_size, self.config.intermediate_size)
