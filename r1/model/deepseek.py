"""DeepSeek-V3: Multi-head Latent Attention, DeepSeekMoE and Multi-Token Prediction.

Equation numbers refer to the DeepSeek-V3 technical report (arXiv:2412.19437). Shape legend
(see layers.py): b batch, s query pos, t key pos, h head, d head dim, c kv latent, r rope dim,
e expert, n tokens (b*s flattened), D model dim.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from r1.config import ModelConfig
from r1.model.base import AttnContext, CausalLM, DecoderLayer
from r1.model.layers import MLP, RMSNorm, apply_rope, attention_allowed

MLA_IMPLS = ("auto", "naive", "absorb")


# The latent norms (q_a_layernorm, kv_a_layernorm) use RMSNorm's default epsilon whatever the config's
# rms_norm_eps, as DeepSeek's reference inference/model.py and transformers' DeepseekV3Attention
# build them; only the decoder-layer and final norms take rms_norm_eps. (Real V3/R1 configs say 1e-6
# anyway; a config saying 1e-5 moved the logits by ~5e-5: tests/test_model_parity.py.)
LATENT_NORM_EPS = 1e-6

class MLA(nn.Module):
    """Multi-head Latent Attention (eqs. 1-11).

    Keys and values are generated from a per-token latent c_KV (kv_lora_rank dims) plus one
    shared roped key k_R (qk_rope_head_dim dims); only those two are cached. Two equivalent
    ways to attend over the cache:
      naive:  expand the latent through kv_b_proj into per-head K/V, then standard attention.
      absorb: fold kv_b_proj's key half into the query and its value half into the output, so
              attention runs directly against the latent (DeepSeek's `attn_impl="absorb"`).
    Absorbed decode reads c + r numbers per cached token instead of h * (d_qk + d_v).
    """

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.impl = "auto"
        self.n_heads = H = cfg.num_attention_heads
        self.dn, self.dr, self.dv, self.c = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank
        self.interleaved = cfg.rope_interleave
        self.scale = cfg.softmax_scale
        D, dqk = cfg.hidden_size, cfg.qk_head_dim
        if cfg.q_lora_rank:
            self.q_a_proj = nn.Linear(D, cfg.q_lora_rank, bias=cfg.attention_bias)
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, LATENT_NORM_EPS)
            self.q_b_proj = nn.Linear(cfg.q_lora_rank, H * dqk, bias=False)
        else:
            self.q_proj = nn.Linear(D, H * dqk, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(D, self.c + self.dr, bias=cfg.attention_bias)
        self.kv_a_layernorm = RMSNorm(self.c, LATENT_NORM_EPS)
        self.kv_b_proj = nn.Linear(self.c, H * (self.dn + self.dv), bias=False)
        self.o_proj = nn.Linear(H * self.dv, D, bias=cfg.attention_bias)

    def forward(self, x: torch.Tensor, ctx: AttnContext) -> torch.Tensor:
        b, s, _ = x.shape
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if hasattr(self, "q_a_proj") else self.q_proj(x)
        q_nope, q_pe = q.view(b, s, self.n_heads, self.dn + self.dr).split([self.dn, self.dr], dim=-1)
        q_pe = apply_rope(q_pe, ctx.cos, ctx.sin, self.interleaved)  # (b, s, h, r)
        latent, k_pe = self.kv_a_proj_with_mqa(x).split([self.c, self.dr], dim=-1)
        latent = self.kv_a_layernorm(latent)  # (b, s, c)
        k_pe = apply_rope(k_pe[:, :, None, :], ctx.cos, ctx.sin, self.interleaved)[:, :, 0]  # (b, s, r)
        if ctx.cache is not None:
            latent, k_pe = ctx.cache.write(self.layer, latent=latent, k_pe=k_pe)  # (b, t, c), (b, t, r)
        impl = self.impl
        if impl == "auto":  # absorbed pays off when few queries read many cached tokens (decode)
            impl = "absorb" if (ctx.cache is not None and s == 1) else "naive"
        o = self._naive(q_nope, q_pe, latent, k_pe, ctx.mask) if impl == "naive" else \
            self._absorb(q_nope, q_pe, latent, k_pe, ctx.mask)
        return self.o_proj(o.reshape(b, s, self.n_heads * self.dv))

    def _naive(self, q_nope, q_pe, latent, k_pe, mask) -> torch.Tensor:
        b, t, _ = latent.shape
        k_nope, v = self.kv_b_proj(latent).view(b, t, self.n_heads, self.dn + self.dv).split([self.dn, self.dv], -1)
        k = torch.cat([k_nope, k_pe[:, :, None, :].expand(-1, -1, self.n_heads, -1)], dim=-1)  # (b, t, h, dqk)
        q = torch.cat([q_nope, q_pe], dim=-1)  # (b, s, h, dqk)
        # SDPA's fused (flash) kernels need one head size for q, k and v; MLA has dv < dqk, which
        # sends it to the unfused math path (2-3x slower fwd+bwd on CPU). Zero columns change
        # neither q.k (the scale is explicit) nor the first dv output columns.
        d = max(q.shape[-1], self.dv)
        q, k, v = (F.pad(x, (0, d - x.shape[-1])) if x.shape[-1] < d else x for x in (q, k, v))
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=mask, scale=self.scale)  # (b, h, s, d)
        return o.transpose(1, 2)[..., : self.dv]  # (b, s, h, dv)

    def _absorb(self, q_nope, q_pe, latent, k_pe, mask) -> torch.Tensor:
        w = self.kv_b_proj.weight.view(self.n_heads, self.dn + self.dv, self.c)
        w_k, w_v = w[:, : self.dn], w[:, self.dn :]  # (h, dn, c), (h, dv, c)
        q_lat = torch.einsum("bshd,hdc->bshc", q_nope, w_k)
        scores = (torch.einsum("bshc,btc->bsht", q_lat, latent)
                  + torch.einsum("bshr,btr->bsht", q_pe, k_pe)) * self.scale
        scores = scores.masked_fill(~mask.transpose(1, 2), float("-inf"))  # mask (b, 1, s, t) -> (b, s, 1, t)
        p = scores.float().softmax(dim=-1).to(latent.dtype)
        o_lat = torch.einsum("bsht,btc->bshc", p, latent)
        return torch.einsum("bshc,hdc->bshd", o_lat, w_v)


class Gate(nn.Module):
    """Router (eqs. 12-16): sigmoid affinities, bias-adjusted top-k with group-limited routing.

    The bias `e_score_correction_bias` only decides *which* experts are chosen; the gating
    weights come from the unbiased scores (auxiliary-loss-free balancing, §2.1.2).
    Experts of groups that were not selected are masked with -inf, as DeepSeek's reference
    `Gate` does (and transformers >= 5 does). Masking with 0 -- what older transformers did --
    lets a masked expert win whenever all biased scores of the selected groups are negative.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.top_k, self.n_group, self.topk_group = cfg.num_experts_per_tok, cfg.n_group, cfg.topk_group
        self.scoring, self.norm_topk_prob, self.scale = cfg.scoring_func, cfg.norm_topk_prob, cfg.routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size))
        # A buffer, not a parameter: it moves by the balancing rule, not by gradients; kept fp32.
        self.register_buffer("e_score_correction_bias", torch.zeros(cfg.n_routed_experts))

    def forward(self, x: torch.Tensor, mask_value: float = float("-inf")) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (n, D) -> gating weights (n, k), expert indices (n, k), scores (n, e)."""
        logits = F.linear(x.float(), self.weight.float())
        scores = logits.sigmoid() if self.scoring == "sigmoid" else logits.softmax(dim=-1)
        choice = scores + self.e_score_correction_bias.float() if self.scoring == "sigmoid" else scores
        if self.n_group > 1:
            n, e = choice.shape
            grouped = choice.view(n, self.n_group, e // self.n_group)
            if self.scoring == "sigmoid":  # V3: a group's score is the sum of its top-2 experts
                group_scores = grouped.topk(min(2, grouped.shape[-1]), dim=-1)[0].sum(-1)
            else:
                group_scores = grouped.amax(dim=-1)
            keep = group_scores.topk(self.topk_group, dim=-1)[1]  # (n, topk_group)
            group_mask = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, keep, True)
            choice = grouped.masked_fill(~group_mask[:, :, None], mask_value).view(n, e)
        idx = choice.topk(self.top_k, dim=-1)[1]
        w = scores.gather(1, idx)
        if self.norm_topk_prob and self.top_k > 1:
            w = w / (w.sum(dim=-1, keepdim=True) + 1e-20)
        return (w * self.scale).to(x.dtype), idx, scores


class MoE(nn.Module):
    """DeepSeekMoE: shared experts see every token, routed experts the tokens routed to them."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_experts = cfg.n_routed_experts
        self.gate = Gate(cfg)
        self.experts = nn.ModuleList(MLP(cfg.hidden_size, cfg.moe_intermediate_size) for _ in range(self.n_experts))
        self.shared_experts = (MLP(cfg.hidden_size, cfg.moe_intermediate_size * cfg.n_shared_experts)
                               if cfg.n_shared_experts else None)
        # Tokens per expert in the last forward (e,): read by load balancing and its logs.
        self.register_buffer("last_expert_load", torch.zeros(self.n_experts, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return self.forward_all_experts(x)
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (n, D)
        w, idx, _ = self.gate(x)
        n, k = idx.shape
        flat = idx.flatten()
        order = flat.argsort()  # group (token, slot) pairs by expert
        counts = torch.bincount(flat, minlength=self.n_experts)
        token_of = order // k
        w_sorted = w.flatten()[order]
        out = torch.zeros_like(x)
        start = 0
        for e, c in enumerate(counts.tolist()):
            if c:
                sel = token_of[start : start + c]
                out.index_add_(0, sel, self.experts[e](x[sel]) * w_sorted[start : start + c, None])
                start += c
        self.last_expert_load = counts.detach()
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        return out.view(shape)

    def gate_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (n, D) -> (combine (n, e): each expert's gate weight for each token, 0 where it was not
        routed; idx (n, k): the routed experts). For the paths that run every expert."""
        w, idx, _ = self.gate(x)
        combine = torch.zeros(x.shape[0], self.n_experts, dtype=w.dtype, device=x.device).scatter_add(1, idx, w)
        return combine, idx

    def forward_all_experts(self, x: torch.Tensor) -> torch.Tensor:
        """The same function with static shapes, for compiled graphs (r1/engine/compiled.py): every
        expert runs on every token and is weighted by its gate weight, 0 where it was not routed
        (0 * a finite output adds exactly nothing). It costs n_experts / top_k times the routed
        FLOPs, so the engine compiles only models with few small experts."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (n, D)
        combine, _ = self.gate_weights(x)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            out = out + expert(x) * combine[:, e, None]
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        return out.view(shape)


class MTPLayer(DecoderLayer):
    """One Multi-Token Prediction module (eqs. 21-23): combines the previous depth's hidden state
    at position i with the embedding of token i+k, runs one transformer block, and predicts
    token i+k+1 through the shared output head. The concatenation order [emb; hidden] follows
    the published checkpoints' `eh_proj` (as vLLM loads them)."""

    def __init__(self, cfg: ModelConfig, layer: int):
        mlp = MoE(cfg) if cfg.is_moe_layer(layer) else MLP(cfg.hidden_size, cfg.intermediate_size)
        super().__init__(MLA(cfg, layer), mlp, cfg.hidden_size, cfg.rms_norm_eps)
        self.enorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.hnorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.eh_proj = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size, bias=False)
        self.shared_head = nn.Module()
        self.shared_head.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def step(self, h_prev: torch.Tensor, emb_next: torch.Tensor, ctx: AttnContext) -> torch.Tensor:
        x = self.eh_proj(torch.cat([self.enorm(emb_next), self.hnorm(h_prev)], dim=-1))
        return DecoderLayer.forward(self, x, ctx)


class DeepseekV3ForCausalLM(CausalLM):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.mtp = nn.ModuleList(MTPLayer(cfg, cfg.num_hidden_layers + k) for k in range(cfg.num_nextn_predict_layers))

    def make_attention(self, i: int) -> nn.Module:
        return MLA(self.config, i)

    def make_mlp(self, i: int) -> nn.Module:
        cfg = self.config
        return MoE(cfg) if cfg.is_moe_layer(i) else MLP(cfg.hidden_size, cfg.intermediate_size)

    def set_mla_impl(self, impl: str) -> None:
        if impl not in MLA_IMPLS:
            raise ValueError(f"mla impl {impl!r}: choose one of {MLA_IMPLS}")
        for m in self.modules():
            if isinstance(m, MLA):
                m.impl = impl

    def mtp_forward(self, hidden: torch.Tensor, next_ids: torch.Tensor, positions: torch.Tensor, cache=None,
                    logits_at: torch.Tensor | None = None, depth: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference-time MTP (drafting): hidden (b, s, D) of the main model at `positions`, and
        next_ids (b, s), the token that follows each of those positions. Returns the logits
        (for the token after next) and the MTP hidden states. The MTP layer keeps its own KV
        under its layer index (num_hidden_layers + depth) in the same cache."""
        layer = self.mtp[depth]
        ctx, _ = self.context(next_ids, positions, None, cache)
        h = layer.step(hidden, self.model.embed_tokens(next_ids), ctx)
        if cache is not None:
            cache.commit()
        return self.head(h, logits_at=logits_at, norm=layer.shared_head.norm), h

    def mtp_logits(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> list[torch.Tensor]:
        """Training-time MTP: hidden (b, s, D) from forward(return_hidden=True), input_ids (b, s).

        Returns one logits tensor per depth k = 1..K, of shape (b, s - k, vocab), where row i
        predicts token i + k + 1 (so the last row of each has no target inside the sequence).
        """
        out, h = [], hidden
        b = input_ids.shape[0]
        for k, layer in enumerate(self.mtp, start=1):
            s = input_ids.shape[1] - k
            if s <= 0:
                break
            h = h[:, :s]
            emb = self.model.embed_tokens(input_ids[:, k:])  # token i + k for position i
            pos = torch.arange(s, device=input_ids.device).expand(b, s)
            cos, sin = self.rotary(pos, emb.dtype)
            ctx = AttnContext(cos, sin, attention_allowed(pos, pos), None)
            h = layer.step(h, emb, ctx)
            out.append(self.lm_head(layer.shared_head.norm(h)))
        return out
