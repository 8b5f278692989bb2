"""GGUF checkpoints (llama.cpp / Ollama files) -> ModelConfig + HF-named state dict.

Three things differ from an HF checkpoint, each handled by data below:

1. Names: llama.cpp's `blk.N.attn_q.weight` is HF's `model.layers.N.self_attn.q_proj.weight`
   (`GLOBAL_TENSORS`, `LAYER_TENSORS`).
2. Q/K rows: llama.cpp's converter permutes the rows of q_proj/k_proj for the `llama` arch so that
   its "normal" (interleaved pairs) RoPE kernel computes what HF's rotate-half RoPE computes. We undo
   it. qwen2/qwen3 run llama.cpp's NEOX (half-split) RoPE, which *is* HF's layout, so their rows are
   stored as-is (`ArchSpec.permute_qk`).
3. Hyperparameters live in `{arch}.*` metadata keys (`CONFIG_KEYS`); llama3-style RoPE scaling is not
   stored as numbers but baked into a `rope_freqs.weight` tensor of per-frequency divisors, which we
   turn back into HF's `rope_scaling` dict.

Every tensor is checked against the shape the config implies before it is returned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from gguf import GGUFValueType

from r1.config import ConfigError, ModelConfig
from r1.formats.gguf_file import GGUFError, GGUFFile, RawTensor, TensorInfo

__all__ = ["GGUFError", "GGUFFile", "RawTensor", "TensorInfo", "config_from_gguf", "load_gguf", "load_gguf_raw",
           "open_gguf", "tensor_plan"]

# --- tensor names: GGUF -> (HF name, torch shape in symbolic dims) -------------------------------
# Symbolic dims are resolved from the config by `_dims`.
GLOBAL_TENSORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "token_embd.weight": ("model.embed_tokens.weight", ("vocab", "hidden")),
    "output_norm.weight": ("model.norm.weight", ("hidden",)),
    "output.weight": ("lm_head.weight", ("vocab", "hidden")),  # absent when tied to the embedding
}
LAYER_TENSORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "attn_norm.weight": ("input_layernorm.weight", ("hidden",)),
    "attn_q.weight": ("self_attn.q_proj.weight", ("q_dim", "hidden")),
    "attn_k.weight": ("self_attn.k_proj.weight", ("kv_dim", "hidden")),
    "attn_v.weight": ("self_attn.v_proj.weight", ("kv_dim", "hidden")),
    "attn_output.weight": ("self_attn.o_proj.weight", ("hidden", "q_dim")),
    "attn_q.bias": ("self_attn.q_proj.bias", ("q_dim",)),
    "attn_k.bias": ("self_attn.k_proj.bias", ("kv_dim",)),
    "attn_v.bias": ("self_attn.v_proj.bias", ("kv_dim",)),
    "attn_q_norm.weight": ("self_attn.q_norm.weight", ("head_dim",)),
    "attn_k_norm.weight": ("self_attn.k_norm.weight", ("head_dim",)),
    "ffn_norm.weight": ("post_attention_layernorm.weight", ("hidden",)),
    "ffn_gate.weight": ("mlp.gate_proj.weight", ("inter", "hidden")),
    "ffn_up.weight": ("mlp.up_proj.weight", ("inter", "hidden")),
    "ffn_down.weight": ("mlp.down_proj.weight", ("hidden", "inter")),
}
_BASE_LAYER = ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
               "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight")
_QKV_BIAS = ("attn_q.bias", "attn_k.bias", "attn_v.bias")
_QK_NORM = ("attn_q_norm.weight", "attn_k_norm.weight")
# Tensors llama.cpp writes that carry no weights of ours: consumed into the config, not returned.
CONFIG_TENSORS = ("rope_freqs.weight",)


@dataclass(frozen=True)
class ArchSpec:
    layer_tensors: tuple[str, ...]
    permute_qk: bool  # llama.cpp permuted q/k rows into interleaved-RoPE order (see module docstring)
    attention_bias: bool = False
    qk_norm: bool = False


ARCHS: dict[str, ArchSpec] = {
    "llama": ArchSpec(_BASE_LAYER, permute_qk=True),
    "qwen2": ArchSpec(_BASE_LAYER + _QKV_BIAS, permute_qk=False, attention_bias=True),
    "qwen3": ArchSpec(_BASE_LAYER + _QK_NORM, permute_qk=False, qk_norm=True),
}
# Which permuted tensor is split into how many heads (the kv tensors were permuted per kv head).
PERMUTED_ROWS = {"attn_q.weight": "num_attention_heads", "attn_k.weight": "num_key_value_heads",
                 "attn_q.bias": "num_attention_heads", "attn_k.bias": "num_key_value_heads"}

# --- hyperparameters: "{arch}.<suffix>" -> (ModelConfig field, required) ----------------------------
CONFIG_KEYS: dict[str, tuple[str, bool]] = {
    "embedding_length": ("hidden_size", True),
    "block_count": ("num_hidden_layers", True),
    "feed_forward_length": ("intermediate_size", True),
    "attention.head_count": ("num_attention_heads", True),
    "attention.head_count_kv": ("num_key_value_heads", False),  # absent = no GQA
    "attention.key_length": ("head_dim", False),  # absent = hidden_size / heads
    "attention.layer_norm_rms_epsilon": ("rms_norm_eps", True),
    "context_length": ("max_position_embeddings", True),
    "rope.freq_base": ("rope_theta", False),  # absent = llama.cpp's default 10000
    "vocab_size": ("vocab_size", False),  # absent = length of the token list
}
TOKEN_ID_KEYS = {"bos_token_id": "tokenizer.ggml.bos_token_id", "eos_token_id": "tokenizer.ggml.eos_token_id",
                 "pad_token_id": "tokenizer.ggml.padding_token_id"}
# "{arch}.rope.scaling.<suffix>" -> key in HF's rope_scaling dict
ROPE_SCALING_KEYS = {"factor": "factor", "original_context_length": "original_max_position_embeddings",
                     "yarn_beta_fast": "beta_fast", "yarn_beta_slow": "beta_slow"}
# llama3 RoPE constants that `rope_freqs.weight` is checked against (Llama 3.1 and 3.2 both use these;
# llama.cpp's converter reads original_max_position_embeddings from the top level and falls back to 8192).
LLAMA3_ROPE_DEFAULTS = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def open_gguf(path_or_file: str | Path | GGUFFile) -> GGUFFile:
    return path_or_file if isinstance(path_or_file, GGUFFile) else GGUFFile(path_or_file)


def _arch(f: GGUFFile) -> str:
    arch = f.get("general.architecture")
    if not isinstance(arch, str):
        raise GGUFError(f"{f.path}: metadata 'general.architecture' is missing or not a string")
    if arch not in ARCHS:
        raise GGUFError(f"{f.path}: general.architecture={arch!r} is not supported; r1 loads GGUF architectures "
                        f"{sorted(ARCHS)}")
    return arch


def _scalar(f: GGUFFile, key: str, kind: type) -> Any:
    v = f.get(key)
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise GGUFError(f"{f.path}: metadata {key!r}: expected one integer, found {type(v).__name__} {v!r:.60}")
    if kind is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise GGUFError(f"{f.path}: metadata {key!r}: expected a number, found {type(v).__name__} {v!r:.60}")
        if f.value_types.get(key) == GGUFValueType.FLOAT32:
            # Stored as float32: 1e-5 reads back as 9.99999974e-06. The shortest decimal that round-trips
            # through float32 is what the original config said.
            v = float(str(np.float32(v)))
        v = float(v)
    if kind is str and not isinstance(v, str):
        raise GGUFError(f"{f.path}: metadata {key!r}: expected a string, found {type(v).__name__}")
    return v


_FIELD_KIND = {"rms_norm_eps": float, "rope_theta": float}


def config_from_gguf(path_or_file: str | Path | GGUFFile) -> ModelConfig:
    f = open_gguf(path_or_file)
    try:
        return _config(f)
    finally:
        if f is not path_or_file:
            f.close()


def _config(f: GGUFFile) -> ModelConfig:
    arch = _arch(f)
    spec = ARCHS[arch]
    kw: dict[str, Any] = {"arch": arch, "attention_bias": spec.attention_bias, "qk_norm": spec.qk_norm}
    for suffix, (field_name, required) in CONFIG_KEYS.items():
        key = f"{arch}.{suffix}"
        if key not in f.metadata:
            if required:
                raise GGUFError(f"{f.path}: metadata {key!r} is missing")
            continue
        kw[field_name] = _scalar(f, key, _FIELD_KIND.get(field_name, int))
    kw.setdefault("num_key_value_heads", kw["num_attention_heads"])
    if "vocab_size" not in kw:
        tokens = f.get("tokenizer.ggml.tokens")
        if isinstance(tokens, list):
            kw["vocab_size"] = len(tokens)
        elif "token_embd.weight" in f.tensors:  # a file without a tokenizer: the embedding is all we have
            kw["vocab_size"] = f.tensors["token_embd.weight"].shape[0]
        else:
            raise GGUFError(f"{f.path}: cannot tell the vocabulary size: no {arch}.vocab_size, token list or token_embd")
    for field_name, key in TOKEN_ID_KEYS.items():
        if key in f.metadata:
            kw[field_name] = _scalar(f, key, int)
    kw["tie_word_embeddings"] = "output.weight" not in f.tensors
    head_dim = kw.get("head_dim") or (kw["hidden_size"] // max(kw["num_attention_heads"], 1))
    rope_dim_key = f"{arch}.rope.dimension_count"
    if rope_dim_key in f.metadata and _scalar(f, rope_dim_key, int) != head_dim:
        # Partial rotary (rope on a prefix of each head) is not something the dense model implements.
        raise GGUFError(f"{f.path}: metadata {rope_dim_key!r}={f.get(rope_dim_key)} differs from head_dim={head_dim}; "
                        f"partial rotary embeddings are not supported")
    value_key = f"{arch}.attention.value_length"
    if value_key in f.metadata and _scalar(f, value_key, int) != head_dim:
        raise GGUFError(f"{f.path}: metadata {value_key!r}={f.get(value_key)} differs from head_dim={head_dim}; "
                        f"a dense model with different key and value head sizes is not supported")
    kw["rope_scaling"] = _rope_scaling(f, arch, head_dim, kw.get("rope_theta", 10000.0))
    # `extra` stays empty: it is copied into config.json on conversion, and GGUF keys do not belong there
    try:
        return ModelConfig(**kw)
    except ConfigError as e:
        raise GGUFError(f"{f.path}: {e}") from None


def _rope_scaling(f: GGUFFile, arch: str, head_dim: int, theta: float) -> dict | None:
    prefix = f"{arch}.rope.scaling."
    rtype = f.get(prefix + "type")
    if rtype is None and f"{arch}.rope.scale_linear" in f.metadata:  # the pre-2024 spelling
        return {"rope_type": "linear", "factor": _scalar(f, f"{arch}.rope.scale_linear", float)}
    if "rope_freqs.weight" in f.tensors:
        if rtype not in (None, "none"):
            raise GGUFError(f"{f.path}: both rope_freqs.weight and {prefix}type={rtype!r}; cannot tell which applies")
        return _llama3_rope_from_freqs(f, head_dim, theta)
    if rtype in (None, "none"):
        return None
    if rtype not in ("linear", "yarn"):
        raise GGUFError(f"{f.path}: metadata {prefix}type={rtype!r} is not supported (linear, yarn)")
    out: dict[str, Any] = {"rope_type": rtype}
    for suffix, hf_key in ROPE_SCALING_KEYS.items():
        if prefix + suffix in f.metadata:
            kind = int if hf_key == "original_max_position_embeddings" else float
            out[hf_key] = _scalar(f, prefix + suffix, kind)
    if "factor" not in out:
        raise GGUFError(f"{f.path}: metadata {prefix}factor is missing for rope scaling type {rtype!r}")
    return out


def llama3_rope_factors(head_dim: int, theta: float, factor: float, low_freq_factor: float,
                        high_freq_factor: float, original_max_position_embeddings: int) -> np.ndarray:
    """The per-frequency divisors llama.cpp stores as `rope_freqs.weight` (Llama 3.1 RoPE scaling)."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    wavelen = 2 * math.pi / inv_freq
    smooth = (original_max_position_embeddings / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    out = 1.0 / ((1 - smooth) / factor + smooth)
    out = np.where(wavelen < original_max_position_embeddings / high_freq_factor, 1.0, out)
    out = np.where(wavelen > original_max_position_embeddings / low_freq_factor, factor, out)
    return out


def _llama3_rope_from_freqs(f: GGUFFile, head_dim: int, theta: float) -> dict | None:
    stored = f.numpy("rope_freqs.weight").astype(np.float64).reshape(-1)
    if stored.shape != (head_dim // 2,):
        raise GGUFError(f"{f.path}: tensor 'rope_freqs.weight': shape {stored.shape}, expected ({head_dim // 2},)")
    factor = float(str(np.float32(stored.max())))  # the low-frequency end is divided by the full factor
    if factor == 1.0:
        return None  # all ones: no scaling
    cand = {"rope_type": "llama3", "factor": factor, **LLAMA3_ROPE_DEFAULTS}
    want = llama3_rope_factors(head_dim, theta, factor, cand["low_freq_factor"], cand["high_freq_factor"],
                               cand["original_max_position_embeddings"])
    if not np.allclose(stored, want, rtol=1e-4, atol=1e-6):
        raise GGUFError(f"{f.path}: tensor 'rope_freqs.weight' does not match llama3 RoPE scaling with factor={factor} "
                        f"and {LLAMA3_ROPE_DEFAULTS}; these rope factors are not supported")
    return cand


# --- tensors ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedTensor:
    gguf_name: str
    hf_name: str
    shape: tuple[int, ...]  # torch shape the config implies
    permute_heads: int  # > 0: undo llama.cpp's Q/K row permutation with this many heads


def _dims(c: ModelConfig) -> dict[str, int]:
    return {"vocab": c.vocab_size, "hidden": c.hidden_size, "inter": c.intermediate_size, "head_dim": c.head_dim,
            "q_dim": c.num_attention_heads * c.head_dim, "kv_dim": c.num_key_value_heads * c.head_dim}


def tensor_plan(f: GGUFFile, config: ModelConfig) -> list[PlannedTensor]:
    """What each tensor in the file becomes. Missing or unexpected tensors are errors, not skips."""
    spec = ARCHS[config.arch]
    dims = _dims(config)
    wanted: dict[str, tuple[str, tuple[str, ...]]] = {
        k: v for k, v in GLOBAL_TENSORS.items() if k != "output.weight" or not config.tie_word_embeddings}
    for i in range(config.num_hidden_layers):
        for suffix in spec.layer_tensors:
            hf_suffix, sym = LAYER_TENSORS[suffix]
            wanted[f"blk.{i}.{suffix}"] = (f"model.layers.{i}.{hf_suffix}", sym)
    missing = [n for n in wanted if n not in f.tensors]
    if missing:
        raise GGUFError(f"{f.path}: {len(missing)} tensor(s) the {config.arch} config needs are missing, "
                        f"e.g. {missing[:4]}")
    unexpected = [n for n in f.tensors if n not in wanted and n not in CONFIG_TENSORS]
    if unexpected:
        raise GGUFError(f"{f.path}: tensor(s) an r1 {config.arch} model has no place for: {unexpected[:4]} "
                        f"(a different variant of the architecture?)")
    plan = []
    for gguf_name, (hf_name, sym) in wanted.items():
        heads = 0
        suffix = gguf_name.split(".", 2)[-1] if gguf_name.startswith("blk.") else gguf_name
        if spec.permute_qk and suffix in PERMUTED_ROWS:
            heads = getattr(config, PERMUTED_ROWS[suffix])
        plan.append(PlannedTensor(gguf_name, hf_name, tuple(dims[s] for s in sym), heads))
    return plan


def unpermute_rows(n_rows: int, n_heads: int) -> np.ndarray:
    """Row index that undoes llama.cpp's `permute` (convert_hf_to_gguf.py, LlamaModel.permute).

    The converter does w.reshape(n_heads, 2, d/2, ...).swapaxes(1, 2): within each head, HF's row order
    [x_0..x_{d/2-1}, y_0..y_{d/2-1}] (rotate-half pairs i and i+d/2) becomes [x_0, y_0, x_1, y_1, ...]
    (adjacent pairs). Stored row h*d + 2i + j holds HF row h*d + j*d/2 + i; we gather with that map.
    """
    d = n_rows // n_heads
    if n_rows % n_heads or d % 2:
        raise ValueError(f"cannot split {n_rows} rows into {n_heads} heads of even size")
    # (H, d/2, 2) grid of stored rows, swapped to (H, 2, d/2): HF row (h, j, i) <- stored row (h, i, j)
    return np.arange(n_rows).reshape(n_heads, d // 2, 2).swapaxes(1, 2).reshape(-1)


def _check_shape(f: GGUFFile, p: PlannedTensor, info: TensorInfo) -> None:
    if info.shape != p.shape:
        raise GGUFError(f"{f.path}: tensor {p.gguf_name!r} ({p.hf_name}): shape {list(info.shape)}, but the config "
                        f"implies {list(p.shape)}")


def _load(path: str | Path | GGUFFile, fetch: Callable[[GGUFFile, PlannedTensor], Any]) -> tuple[ModelConfig, dict]:
    f = open_gguf(path)
    try:
        config = _config(f)
        out = {}
        for p in tensor_plan(f, config):
            _check_shape(f, p, f.info(p.gguf_name))
            out[p.hf_name] = fetch(f, p)
        return config, out
    finally:
        if f is not path:  # we opened it, so we close it
            f.close()


def load_gguf(path: str | Path | GGUFFile, dtype: torch.dtype = torch.float32) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Config and dequantized weights under HF names (model.layers.N.self_attn.q_proj.weight, ...)."""

    def fetch(f: GGUFFile, p: PlannedTensor) -> torch.Tensor:
        t = f.tensor(p.gguf_name, dtype)
        if p.permute_heads:
            t = t[torch.from_numpy(unpermute_rows(t.shape[0], p.permute_heads))]
        if tuple(t.shape) != p.shape:
            raise GGUFError(f"{f.path}: tensor {p.gguf_name!r}: loaded as {tuple(t.shape)}, expected {p.shape}")
        return t.contiguous()

    return _load(path, fetch)


def load_gguf_raw(path: str | Path | GGUFFile) -> tuple[ModelConfig, dict[str, RawTensor]]:
    """Config and the still-quantized blocks under HF names, Q/K rows already un-permuted.

    Row permutation commutes with quantization because blocks run along a row (ne[0]), so gathering whole
    rows of blocks is exact. The arrays are copies where rows were permuted, else views into the file.
    """

    def fetch(f: GGUFFile, p: PlannedTensor) -> RawTensor:
        r = f.raw(p.gguf_name)
        if p.permute_heads:
            r = RawTensor(r.name, r.ggml_type, r.shape, r.data[unpermute_rows(r.data.shape[0], p.permute_heads)])
        return r

    return _load(path, fetch)
