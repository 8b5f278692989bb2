"""HF `config.json` <-> ModelConfig. The key differences between families live in tables."""
from __future__ import annotations

from r1.config import ConfigError, ModelConfig

# HF model_type -> our arch, and back with the `architectures` entry transformers expects.
MODEL_TYPES = {"deepseek_v3": "deepseek_v3", "llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
ARCHITECTURES = {
    "deepseek_v3": "DeepseekV3ForCausalLM",
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
# HF keys whose name differs from ours: hf_key -> our field
RENAMED = {"num_local_experts": "n_routed_experts"}
# keys that exist only to say something we derive; not kept in `extra`
DERIVED = {"model_type", "architectures", "transformers_version", "torch_dtype", "dtype", "rope_parameters",
           "rope_scaling", "qk_head_dim", "use_cache", "initializer_range", "attention_dropout", "num_experts",
           "use_sliding_window", "sliding_window", "max_window_layers", "layer_types", "mlp_bias",
           "pretraining_tp", "output_router_logits", "router_aux_loss_coef", "aux_loss_alpha", "seq_aux",
           "topk_method", "moe_layer_freq", "ep_size", "quantization_config", "head_dim"}

_FIELDS = {f for f in ModelConfig.__dataclass_fields__ if f != "extra"}


def _rope_from_hf(d: dict) -> tuple[float, dict | None]:
    """Accepts both the classic `rope_scaling` + `rope_theta` and the newer `rope_parameters`."""
    theta = d.get("rope_theta", 10000.0)
    rs = d.get("rope_scaling")
    rp = d.get("rope_parameters")
    if rp:
        rp = dict(rp)
        theta = rp.pop("rope_theta", theta)
        rs = rp if rp.get("rope_type", rp.get("type", "default")) != "default" else None
    if rs:
        rs = dict(rs)
        rt = rs.pop("type", None)
        rs.setdefault("rope_type", rt or "default")
        if rs["rope_type"] == "default":
            rs = None
    return float(theta), rs


def config_from_hf(d: dict, source: str = "config.json") -> ModelConfig:
    mt = d.get("model_type")
    if mt not in MODEL_TYPES:
        raise ConfigError(f"{source}: model_type={mt!r} is not supported; r1 loads {sorted(MODEL_TYPES)}")
    kw: dict = {"arch": MODEL_TYPES[mt]}
    extra = {}
    for k, v in d.items():
        k2 = RENAMED.get(k, k)
        if k2 in _FIELDS:
            kw[k2] = v
        elif k not in DERIVED:
            extra[k] = v
    kw["rope_theta"], kw["rope_scaling"] = _rope_from_hf(d)
    if kw["arch"] == "deepseek_v3":
        kw["q_lora_rank"] = d.get("q_lora_rank") or 0
        kw.setdefault("num_key_value_heads", d.get("num_attention_heads"))
        if d.get("topk_method", "noaux_tc") not in ("noaux_tc", "greedy", "group_limited_greedy"):
            raise ConfigError(f"{source}: topk_method={d['topk_method']!r} is not supported")
    else:
        kw["head_dim"] = d.get("head_dim") or 0
        kw["qk_norm"] = kw["arch"] == "qwen3"
        if kw["arch"] == "qwen2":
            kw["attention_bias"] = True
    kw["extra"] = extra
    try:
        return ModelConfig(**kw)
    except TypeError as e:
        raise ConfigError(f"{source}: {e}") from None
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def config_to_hf(c: ModelConfig) -> dict:
    d = {"model_type": c.arch, "architectures": [ARCHITECTURES[c.arch]]}
    common = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta",
              "tie_word_embeddings", "hidden_act", "bos_token_id", "eos_token_id", "pad_token_id"]
    for k in common:
        d[k] = getattr(c, k)
    d["rope_scaling"] = dict(c.rope_scaling) if c.rope_scaling else None
    if c.is_deepseek:
        for k in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "rope_interleave",
                  "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "moe_intermediate_size",
                  "n_group", "topk_group", "scoring_func", "routed_scaling_factor", "norm_topk_prob",
                  "first_k_dense_replace", "num_nextn_predict_layers", "attention_bias"):
            d[k] = getattr(c, k)
        d["q_lora_rank"] = c.q_lora_rank or None
        d["topk_method"] = "noaux_tc"
    else:
        d["head_dim"] = c.head_dim
        if c.arch == "llama":
            d["attention_bias"] = c.attention_bias
    d.update(c.extra)
    return d
