"""The decoder skeleton both families share: embed -> N x (attn + ffn, pre-norm) -> norm -> head.

Families differ only in their attention and feed-forward modules, which subclasses build in
`make_attention(i)` / `make_mlp(i)`. Parameter names follow the HF checkpoints
(`model.layers.N.self_attn.q_proj.weight`, ...) so the name maps to HF are nearly identity.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import nn

from r1.config import ModelConfig
from r1.model.cache import KVCache
from r1.model.layers import PAD_POS, RMSNorm, Rotary, attention_allowed, positions_from_mask


@dataclass
class AttnContext:
    """What every attention layer of one forward pass needs besides its input."""
    cos: torch.Tensor  # (b, s, r/2)
    sin: torch.Tensor  # (b, s, r/2)
    mask: torch.Tensor  # (b, 1, s, t) bool, True = may attend
    cache: KVCache | None
    # (n,) flat indices into (b*s) of the real tokens when the batch is padded, else None: the
    # feed-forward half of each layer runs on those only (see DecoderLayer)
    tokens: torch.Tensor | None = None


class DecoderLayer(nn.Module):
    def __init__(self, attn: nn.Module, mlp: nn.Module, dim: int, eps: float):
        super().__init__()
        self.input_layernorm = RMSNorm(dim, eps)
        self.self_attn = attn
        self.post_attention_layernorm = RMSNorm(dim, eps)
        self.mlp = mlp

    def forward(self, x: torch.Tensor, ctx: AttnContext) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), ctx)
        if ctx.tokens is None:
            return x + self.mlp(self.post_attention_layernorm(x))
        # Padded batch: the feed-forward (two thirds of a dense layer's matmuls, and the MoE
        # routing) runs on the real tokens only. Attention keeps the padded (b, s) layout; a
        # padding position's hidden state is never read by a real token (it is masked as a key)
        # and its output is not used, so skipping its feed-forward changes no real output.
        flat = x.reshape(-1, x.shape[-1])  # (b*s, D)
        h = flat.index_select(0, ctx.tokens)  # (n, D)
        return flat.index_add(0, ctx.tokens, self.mlp(self.post_attention_layernorm(h))).view(x.shape)


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig, layers: list[nn.Module]):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(layers)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class CausalLM(nn.Module, abc.ABC):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        layers = [DecoderLayer(self.make_attention(i), self.make_mlp(i), cfg.hidden_size, cfg.rms_norm_eps)
                  for i in range(cfg.num_hidden_layers)]
        self.model = Backbone(cfg, layers)
        self.rotary = Rotary(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    # The model's float dtype and device, read off the final norm: every model has one, and it stays
    # float when the embedding is quantized (r1/engine/gguf_linear.py's GGUFEmbedding has no .weight).
    @property
    def dtype(self) -> torch.dtype:
        return self.model.norm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.norm.weight.device

    @abc.abstractmethod
    def make_attention(self, i: int) -> nn.Module:
        """The attention module of layer i (called during __init__, before self.model exists)."""

    @abc.abstractmethod
    def make_mlp(self, i: int) -> nn.Module:
        """The feed-forward module of layer i."""

    def context(self, input_ids: torch.Tensor, positions: torch.Tensor | None,
                attention_mask: torch.Tensor | None, cache: KVCache | None,
                ffn_real_only: bool = False) -> tuple[AttnContext, torch.Tensor]:
        b, s = input_ids.shape
        if positions is None:
            if attention_mask is not None:
                positions = positions_from_mask(attention_mask)
            else:
                start = cache.length if cache is not None else 0
                positions = torch.arange(start, start + s, device=input_ids.device).expand(b, s)
        new_key_pos = positions if attention_mask is None else positions.masked_fill(attention_mask == 0, PAD_POS)
        key_pos = cache.begin(positions, new_key_pos) if cache is not None else new_key_pos
        cos, sin = self.rotary(positions, self.dtype)
        tokens = None
        if ffn_real_only and attention_mask is not None and not bool(attention_mask.all()):
            tokens = attention_mask.reshape(-1).nonzero().squeeze(1)
        return AttnContext(cos, sin, attention_allowed(key_pos, positions), cache, tokens), positions

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, cache: KVCache | None = None,
                last_only: bool = False, return_hidden: bool = False, logits_at: torch.Tensor | None = None,
                logits_flat: torch.Tensor | None = None, ffn_real_only: bool = False):
        """input_ids (b, s) -> logits (b, s, vocab); (b, 1, vocab) with last_only, or with
        logits_at (b,) / (b, m) the logits of chosen positions per row (the head is the costliest
        matmul of a small model, so prefill only pays for the rows that are sampled), or with
        logits_flat (n,) -- flat indices into (b*s) -- the logits at those positions, (n, vocab).
        ffn_real_only: with an attention_mask that has padding, run each layer's feed-forward on
        the real tokens only (DecoderLayer). Off by default: the pretraining balance losses read
        every position's routing in (b, s) layout.

        positions (b, s) default to 0.. (or continue the cache); attention_mask (b, s) marks
        real tokens of a left-padded batch. return_hidden also returns the final hidden states
        before the norm (b, s, D), which the MTP modules consume.
        """
        ctx, _ = self.context(input_ids, positions, attention_mask, cache, ffn_real_only)
        h = self.model.embed_tokens(input_ids)
        for layer in self.model.layers:
            h = layer(h, ctx)
        if cache is not None:
            cache.commit()
        logits = self.head(h, last_only, logits_at, logits_flat=logits_flat)
        return (logits, h) if return_hidden else logits

    def head(self, h: torch.Tensor, last_only: bool = False, logits_at: torch.Tensor | None = None,
             norm: nn.Module | None = None, logits_flat: torch.Tensor | None = None) -> torch.Tensor:
        """Final norm + output projection, only at the positions that need logits.
        logits_at: (b,) one position per row -> (b, 1, V); (b, m) several -> (b, m, V).
        logits_flat: (n,) flat indices into (b*s) -> (n, V)."""
        if logits_flat is not None:
            h = h.reshape(-1, h.shape[-1]).index_select(0, logits_flat)
        elif logits_at is not None:
            idx = logits_at if logits_at.dim() == 2 else logits_at[:, None]
            h = torch.gather(h, 1, idx[..., None].expand(-1, -1, h.shape[-1]))
        elif last_only:
            h = h[:, -1:]
        return self.lm_head((norm or self.model.norm)(h))

    def init_weights(self, std: float = 0.02, generator: torch.Generator | None = None) -> None:
        """Fresh weights for training from scratch: N(0, std) matrices, unit norms, zero biases."""
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, 0.0, std, generator=generator)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.ones_(p)
