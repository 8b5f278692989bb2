"""ModelConfig: one flat dataclass for the DeepSeek-V3 family and the dense R1-Distill bases.

Field names follow the Hugging Face `config.json` spellings so a config round-trips without a
translation table for the common keys; the few keys that differ between families (e.g.
`q_lora_rank: null` meaning "no query compression") are normalized in `from_hf`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1.errors import R1Error

ARCHS = ("deepseek_v3", "llama", "qwen2", "qwen3")
ROPE_TYPES = ("default", "linear", "yarn", "llama3")


class ConfigError(R1Error, ValueError):
    pass


# Ranges that every published model sits well inside (DeepSeek-V3: 61 layers, 256 experts, hidden
# 7168, vocabulary 129280; Llama-3.1-405B: 126 layers, hidden 16384); the upper ends stop a hostile
# config from making r1 allocate without bound before any tensor is read.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "vocab_size": (1, 1 << 24), "hidden_size": (1, 1 << 17), "intermediate_size": (0, 1 << 20),
    "num_hidden_layers": (1, 4096), "num_attention_heads": (1, 4096), "num_key_value_heads": (1, 4096),
    "head_dim": (0, 1 << 14), "max_position_embeddings": (1, 1 << 26), "q_lora_rank": (0, 1 << 17),
    "kv_lora_rank": (0, 1 << 17), "qk_nope_head_dim": (0, 1 << 14), "qk_rope_head_dim": (0, 1 << 14),
    "v_head_dim": (0, 1 << 14), "n_routed_experts": (0, 1 << 16), "n_shared_experts": (0, 1 << 10),
    "num_experts_per_tok": (0, 1 << 16), "moe_intermediate_size": (0, 1 << 20), "n_group": (1, 1 << 16),
    "topk_group": (1, 1 << 16), "first_k_dense_replace": (0, 4096), "num_nextn_predict_layers": (0, 64),
}
_FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "rms_norm_eps": (0.0, 1.0), "rope_theta": (0.0, 1e12), "routed_scaling_factor": (0.0, 1e6),
}
_BOOLS = ("tie_word_embeddings", "attention_bias", "qk_norm", "rope_interleave", "norm_topk_prob")


@dataclass
class ModelConfig:
    arch: str = "llama"
    vocab_size: int = 32000
    hidden_size: int = 256
    intermediate_size: int = 512
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    head_dim: int = 0  # dense: 0 = hidden_size // num_attention_heads
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    # Normalized to {"rope_type": one of ROPE_TYPES, ...type-specific keys}; None = default RoPE.
    rope_scaling: dict | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Qwen2: bias on q/k/v projections
    qk_norm: bool = False  # Qwen3: per-head RMSNorm on q and k before RoPE
    hidden_act: str = "silu"
    # --- Multi-head Latent Attention (DeepSeek-V3 §2.1.1) ---
    q_lora_rank: int = 0  # 0 = no query compression (q_proj), else q_a_proj -> norm -> q_b_proj
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    rope_interleave: bool = True  # DeepSeek checkpoints store rope dims as interleaved pairs
    # --- DeepSeekMoE (§2.1.2) ---
    n_routed_experts: int = 0
    n_shared_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    n_group: int = 1
    topk_group: int = 1
    scoring_func: str = "sigmoid"  # V3: sigmoid; V2: softmax
    routed_scaling_factor: float = 1.0
    norm_topk_prob: bool = True
    first_k_dense_replace: int = 0
    # --- Multi-Token Prediction (§2.2) ---
    num_nextn_predict_layers: int = 0
    # --- special tokens (informational; the tokenizer is authoritative) ---
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # unknown HF keys, kept for round trips

    def __post_init__(self) -> None:
        self._check_types_and_ranges()
        if self.arch not in ARCHS:
            raise ConfigError(f"arch={self.arch!r} is not supported; choose one of {ARCHS}")
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.rope_scaling is not None:
            rt = self.rope_scaling.get("rope_type", self.rope_scaling.get("type", "default"))
            if rt not in ROPE_TYPES:
                raise ConfigError(f"rope_scaling.rope_type={rt!r} is not supported; choose one of {ROPE_TYPES}")
            if rt != "default" and "factor" not in self.rope_scaling:
                raise ConfigError(f"rope_scaling of type {rt!r} needs a 'factor'")
        if self.is_deepseek:
            for name in ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"):
                if getattr(self, name) <= 0:
                    raise ConfigError(f"DeepSeek-V3 (MLA) needs {name} > 0, got {getattr(self, name)}")
            if self.qk_rope_head_dim % 2:
                raise ConfigError(f"qk_rope_head_dim must be even for RoPE, got {self.qk_rope_head_dim}")
            if self.n_routed_experts:
                if not 0 < self.num_experts_per_tok <= self.n_routed_experts:
                    raise ConfigError(
                        f"num_experts_per_tok={self.num_experts_per_tok} must be in 1..n_routed_experts={self.n_routed_experts}")
                if self.n_routed_experts % self.n_group:
                    raise ConfigError(f"n_routed_experts={self.n_routed_experts} must divide into n_group={self.n_group} groups")
                if not 0 < self.topk_group <= self.n_group:
                    raise ConfigError(f"topk_group={self.topk_group} must be in 1..n_group={self.n_group}")
                per_group = self.n_routed_experts // self.n_group
                if self.n_group > 1 and self.topk_group * per_group < self.num_experts_per_tok:
                    raise ConfigError(
                        f"topk_group={self.topk_group} groups of {per_group} experts cannot supply num_experts_per_tok="
                        f"{self.num_experts_per_tok} experts; raise topk_group or lower num_experts_per_tok")
                if self.moe_intermediate_size <= 0:
                    raise ConfigError("an MoE model needs moe_intermediate_size > 0")
                if self.scoring_func not in ("sigmoid", "softmax"):
                    raise ConfigError(f"scoring_func={self.scoring_func!r}: choose 'sigmoid' or 'softmax'")
        else:
            if self.num_attention_heads % self.num_key_value_heads:
                raise ConfigError(
                    f"num_attention_heads={self.num_attention_heads} must be a multiple of num_key_value_heads={self.num_key_value_heads}")
            if self.head_dim == 0:
                if self.hidden_size % self.num_attention_heads:
                    raise ConfigError("hidden_size must divide by num_attention_heads, or set head_dim explicitly")
                self.head_dim = self.hidden_size // self.num_attention_heads
            if self.num_nextn_predict_layers:
                raise ConfigError("MTP (num_nextn_predict_layers) is only defined for the deepseek_v3 arch")

    def _check_types_and_ranges(self) -> None:
        """Every number is of its field's type and in a range a model can have, before anything is
        built from it: a hostile config.json or GGUF header gets one ConfigError naming the key,
        not a ZeroDivisionError, a NaN model or a 10^9-layer allocation."""
        for name, (lo, hi) in _INT_RANGES.items():
            v = getattr(self, name)
            if v is None and name == "q_lora_rank":
                self.q_lora_rank = v = 0  # HF configs write null for "no query compression"
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{name} must be an integer, got {v!r}")
            if not lo <= v <= hi:
                raise ConfigError(f"{name}={v} is out of range: expected {lo}..{hi}")
        for name, (lo, hi) in _FLOAT_RANGES.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo < v <= hi:
                raise ConfigError(f"{name} must be a finite number in ({lo}, {hi}], got {v!r}")
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.rope_scaling is not None:
            if not isinstance(self.rope_scaling, dict):
                raise ConfigError(f"rope_scaling must be an object or null, got {self.rope_scaling!r}")
            for key, v in self.rope_scaling.items():
                if key in ("rope_type", "type"):
                    continue
                if isinstance(v, bool) or (isinstance(v, (int, float)) and not math.isfinite(v)):
                    raise ConfigError(f"rope_scaling.{key} must be a finite number, got {v!r}")
            factor = self.rope_scaling.get("factor")
            if factor is not None and (not isinstance(factor, (int, float)) or factor <= 0):
                raise ConfigError(f"rope_scaling.factor must be a positive number, got {factor!r}")

    # --- derived ---
    @property
    def is_deepseek(self) -> bool:
        return self.arch == "deepseek_v3"

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def rope_dim(self) -> int:
        return self.qk_rope_head_dim if self.is_deepseek else self.head_dim

    @property
    def rope_type(self) -> str:
        if not self.rope_scaling:
            return "default"
        return self.rope_scaling.get("rope_type", self.rope_scaling.get("type", "default"))

    @property
    def softmax_scale(self) -> float:
        """1/sqrt(d), times YaRN's mscale^2 correction (DeepSeek-V3 `MLA.__init__`)."""
        d = self.qk_head_dim if self.is_deepseek else self.head_dim
        scale = d ** -0.5
        if self.rope_type == "yarn":
            mscale_all_dim = self.rope_scaling.get("mscale_all_dim", 0)
            factor = self.rope_scaling["factor"]
            if mscale_all_dim and factor > 1:
                m = 0.1 * mscale_all_dim * math.log(factor) + 1.0
                scale *= m * m
        return scale

    def is_moe_layer(self, i: int) -> bool:
        return self.is_deepseek and self.n_routed_experts > 0 and i >= self.first_k_dense_replace

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)

    # --- HF config.json ---
    @classmethod
    def from_hf(cls, d: dict, source: str = "config.json") -> "ModelConfig":
        from r1.formats.hf_config import config_from_hf

        return config_from_hf(d, source)

    def to_hf(self) -> dict:
        from r1.formats.hf_config import config_to_hf

        return config_to_hf(self)

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        p = Path(path)
        if p.is_dir():
            p = p / "config.json"
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: no config.json found") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}: not valid JSON ({e})") from None
        except RecursionError:
            raise ConfigError(f"{p}: nested too deeply to be a model config") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{p}: must hold a JSON object of config keys, got a {type(d).__name__}")
        return cls.from_hf(d, str(p))


# ---------------------------------------------------------------- presets
_V3 = dict(
    arch="deepseek_v3", vocab_size=129280, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
    num_hidden_layers=61, num_attention_heads=128, num_key_value_heads=128, q_lora_rank=1536, kv_lora_rank=512,
    qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, n_routed_experts=256, n_shared_experts=1,
    num_experts_per_tok=8, n_group=8, topk_group=4, routed_scaling_factor=2.5, first_k_dense_replace=3,
    num_nextn_predict_layers=1, max_position_embeddings=163840, rope_theta=10000.0, rms_norm_eps=1e-6,
    rope_scaling={"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096, "beta_fast": 32,
                  "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    bos_token_id=0, eos_token_id=1)
_QWEN25 = dict(arch="qwen2", max_position_embeddings=131072, rope_theta=10000.0, rms_norm_eps=1e-6,
               bos_token_id=151646, eos_token_id=151643)
_LLAMA31 = dict(arch="llama", vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
                rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8192}, bos_token_id=128000, eos_token_id=128001)
_TINY_DS = dict(
    arch="deepseek_v3", vocab_size=512, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=0, kv_lora_rank=32,
    qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8, n_shared_experts=1,
    num_experts_per_tok=2, n_group=2, topk_group=1, routed_scaling_factor=1.0, first_k_dense_replace=1,
    num_nextn_predict_layers=1, max_position_embeddings=1024)
_TINY_DENSE = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=1024)

# name -> ModelConfig keyword arguments. The R1-Distill figures are those of the published configs.
PRESETS: dict[str, dict] = {
    "deepseek-v3": _V3,
    "deepseek-r1": _V3,  # R1 is trained on the V3 architecture, unchanged
    "r1-distill-qwen-1.5b": dict(_QWEN25, vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                                 num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2),
    "r1-distill-qwen-7b": dict(_QWEN25, vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                               num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4),
    "r1-distill-qwen-14b": dict(_QWEN25, vocab_size=152064, hidden_size=5120, intermediate_size=13824,
                                num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8,
                                rope_theta=1e6, rms_norm_eps=1e-5),
    "r1-distill-qwen-32b": dict(_QWEN25, vocab_size=152064, hidden_size=5120, intermediate_size=27648,
                                num_hidden_layers=64, num_attention_heads=40, num_key_value_heads=8,
                                rope_theta=1e6, rms_norm_eps=1e-5),
    "r1-distill-llama-8b": dict(_LLAMA31, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                num_attention_heads=32, num_key_value_heads=8),
    "r1-distill-llama-70b": dict(_LLAMA31, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                                 num_attention_heads=64, num_key_value_heads=8),
    "r1-0528-qwen3-8b": dict(arch="qwen3", vocab_size=151936, hidden_size=4096, intermediate_size=12288,
                             num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                             qk_norm=True, rope_theta=1e6, rms_norm_eps=1e-6, max_position_embeddings=131072,
                             rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
                             bos_token_id=151643, eos_token_id=151645),
    "tiny-deepseek": _TINY_DS,
    "tiny-llama": dict(_TINY_DENSE, arch="llama"),
    "tiny-qwen2": dict(_TINY_DENSE, arch="qwen2", attention_bias=True, tie_word_embeddings=True),
    "tiny-qwen3": dict(_TINY_DENSE, arch="qwen3", qk_norm=True, head_dim=32),
}


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    kw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in PRESETS[name].items()}
    kw.update(overrides)
    return ModelConfig(**kw)


# ---------------------------------------------------------------- accounting
@dataclass
class ParamReport:
    total: int  # main model (embedding and head included), MTP excluded
    activated: int  # per token: shared parts + top-k of each MoE layer's routed experts
    embedding: int  # input embedding + output head (once if tied)
    mtp_unique: int  # MTP modules without the embedding/head they share with the main model
    mtp_activated: int
    kv_elems_per_token_layer: int  # what this model caches per token and layer
    kv_elems_naive_per_token_layer: int  # full multi-head K/V with the same heads (no MLA, no GQA)
    num_layers: int

    @property
    def kv_ratio(self) -> float:
        return self.kv_elems_naive_per_token_layer / self.kv_elems_per_token_layer

    def kv_bytes_per_token(self, bytes_per_elem: float = 2.0) -> float:
        return self.kv_elems_per_token_layer * self.num_layers * bytes_per_elem


def count_params(cfg: ModelConfig) -> ParamReport:
    """Counted from the module tree built on the meta device: no memory, no hard-coded figures."""
    from r1.model import build_model

    model = build_model(cfg, device="meta")
    total = routed = mtp = mtp_routed = 0
    for name, p in model.named_parameters():  # tied weights are yielded once
        n = p.numel()
        is_routed = ".mlp.experts." in name
        if name.startswith("mtp."):
            mtp += n
            mtp_routed += n if is_routed else 0
        else:
            total += n
            routed += n if is_routed else 0
    frac = cfg.num_experts_per_tok / cfg.n_routed_experts if cfg.n_routed_experts else 0.0
    embedding = model.model.embed_tokens.weight.numel() + (0 if cfg.tie_word_embeddings else model.lm_head.weight.numel())
    if cfg.is_deepseek:
        kv = cfg.kv_lora_rank + cfg.qk_rope_head_dim
        naive = cfg.num_attention_heads * (cfg.qk_head_dim + cfg.v_head_dim)
    else:
        kv = 2 * cfg.num_key_value_heads * cfg.head_dim
        naive = 2 * cfg.num_attention_heads * cfg.head_dim
    return ParamReport(total=total, activated=round(total - routed + routed * frac), embedding=embedding,
                       mtp_unique=mtp, mtp_activated=round(mtp - mtp_routed + mtp_routed * frac),
                       kv_elems_per_token_layer=kv, kv_elems_naive_per_token_layer=naive,
                       num_layers=cfg.num_hidden_layers)
